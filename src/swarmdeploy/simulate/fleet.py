"""A simulated fleet against one manager: the steps of ``swarmdeploy simulate``.

In order, each step failing with :class:`~swarmdeploy.simulate.state.SimError` and a message
naming the problem:

1. :func:`trusted_anchors` -- the manager's CA (``GET /rpc/server_info``, public) must be one
   the ``--trust-anchor`` file accepts, before any token is spent (as the real agent checks);
2. :func:`obtain_tokens` -- one-time tokens: read from ``--tokens-file`` (tokens of an existing
   set, whose plaintext the manager showed once), or a new token set ``NAME`` created with an
   admin API key (``POST /token_sets``);
3. :meth:`SimFleet.register` -- every agent registers (``POST /rpc/targets``), a few at a time;
4. :meth:`SimFleet.start` -- every agent connects over CurveZMQ and serves the link until
   :meth:`SimFleet.close`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from swarmdeploy.agent.trust import adopt_manager_ca
from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.crypto.rejections import VerificationError
from swarmdeploy.simulate.agent import SimAgent
from swarmdeploy.simulate.state import Progress, SimError, SimSettings

#: Registrations in flight at once.
REGISTER_CONCURRENCY = 32


def _detail(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(doc, dict):
        return str(doc.get("detail") or doc.get("message") or doc)[:200]
    return str(doc)[:200]


async def trusted_anchors(http: httpx.AsyncClient, anchors: AnchorSet) -> AnchorSet:
    """The anchors to verify tasks with: ``anchors`` plus the manager's CA when a pin of
    ``anchors`` names it. :class:`SimError` when the CA is not trusted (no token is spent)."""
    try:
        resp = await http.get("/rpc/server_info")
    except httpx.HTTPError as exc:
        raise SimError(f"cannot reach the manager at {http.base_url}: {exc}") from None
    if resp.status_code != 200:
        raise SimError(f"GET /rpc/server_info answered {resp.status_code}: {_detail(resp)}")
    try:
        info = resp.json()
        ca_key = base64.b64decode(info["caPublicKey"], validate=True)
        return adopt_manager_ca(anchors, ca_key, str(info.get("caCertificate", "")))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SimError(f"invalid server info from the manager: {exc}") from None
    except VerificationError as exc:
        raise SimError(
            f"the manager's CA does not match --trust-anchor ({exc.code}: {exc.message});"
            " is this the right manager? No token was used."
        ) from None


def read_tokens(path: Path, count: int) -> list[str]:
    """``count`` tokens from ``path`` (one per line; blank lines and ``#`` comments are
    skipped). :class:`SimError` when the file is unreadable or holds too few."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SimError(f"--tokens-file {path}: {exc}") from None
    tokens = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if len(tokens) < count:
        raise SimError(
            f"--tokens-file {path} holds {len(tokens)} tokens; {count} agents need one each"
        )
    return tokens[:count]


async def create_token_set(http: httpx.AsyncClient, name: str, count: int) -> list[str]:
    """Create the token set ``name`` with ``count`` tokens (needs an admin API key on
    ``http``) and return the plaintext tokens."""
    resp = await http.post("/token_sets", params={"name": name, "total": count})
    if resp.status_code == 409:
        raise SimError(
            f"token set {name!r} exists and its tokens were shown only once: pass them with"
            " --tokens-file FILE, or choose a new --token-set name"
        )
    if resp.status_code in (401, 403):
        raise SimError(
            f"creating token set {name!r} was refused ({resp.status_code}): the --api-key"
            f" must be an admin key ({_detail(resp)})"
        )
    if resp.status_code not in (200, 201):
        raise SimError(f"creating token set {name!r} failed: {resp.status_code} {_detail(resp)}")
    tokens = list(resp.json()["tokens"])
    if len(tokens) != count:
        raise SimError(f"token set {name!r} came with {len(tokens)} tokens, not {count}")
    return tokens


class SimFleet:
    """``count`` simulated agents ``<prefix>0001`` ... sharing ``settings`` and one
    :class:`Progress`."""

    def __init__(self, settings: SimSettings, count: int, id_prefix: str) -> None:
        self.settings = settings
        self.progress = Progress(count)
        width = max(4, len(str(count)))
        self.agents = [SimAgent(f"{id_prefix}{i:0{width}d}", settings, self.progress)
                       for i in range(1, count + 1)]  # fmt: skip
        self.registered = 0
        self.rate_limited = 0

    async def register(
        self, http: httpx.AsyncClient, tokens: Sequence[str], timeout_s: float
    ) -> None:
        """Register every agent with its token, :data:`REGISTER_CONCURRENCY` at a time;
        the first refusal raises :class:`SimError` (the others are cancelled)."""
        deadline = time.monotonic() + timeout_s
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def one(agent: SimAgent, token: str) -> None:
            async with gate:
                try:
                    self.rate_limited += await agent.register(http, token, deadline)
                except httpx.HTTPError as exc:
                    raise SimError(f"{agent.target_id}: registration failed: {exc}") from None
            self.registered += 1

        try:
            async with asyncio.TaskGroup() as group:
                for agent, token in zip(self.agents, tokens, strict=True):
                    group.create_task(one(agent, token))
        except ExceptionGroup as exc:
            first = exc.exceptions[0]
            raise first if isinstance(first, SimError) else exc from None

    async def start(self, manager_host: str) -> None:
        """Connect every agent (each then serves its link in its own asyncio task)."""
        for agent in self.agents:
            await agent.start(manager_host)

    async def close(self) -> None:
        """Say ``bye`` and close every link."""
        await asyncio.gather(*(a.close(bye=True) for a in self.agents))
