"""Simulated agents for load-testing a manager (``swarmdeploy simulate``, ``docs/performance.md``).

Many agents in one asyncio process, each with its own CurveZMQ keys and real registration,
speaking the real protocol over the real agent transport and verifying what it receives like
a device does, but unpacking and running nothing: :mod:`.agent` (one agent), :mod:`.transfer`
(its chunked pull), :mod:`.state` (shared settings and progress), :mod:`.fleet` (trust check,
tokens, registration of many), :mod:`.display` (live progress) and :mod:`.main` (the command).
``python -m bench fleet`` runs on the same agents.
"""
