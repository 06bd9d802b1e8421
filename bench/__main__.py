"""Dispatch ``python -m bench [NAME [ARGS...]]`` to ``bench.bench_NAME.main(ARGS)``.

Without a name every ``bench_*.py`` module runs with its defaults; ``--list`` lists them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def _names() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    """Run one benchmark (or all of them); returns the exit status."""
    if argv[:1] == ["--list"]:
        print("\n".join(_names()))
        return 0
    if argv and argv[0] not in _names():
        print(f"unknown benchmark {argv[0]!r}; known: {', '.join(_names())}", file=sys.stderr)
        return 2
    selected = [(argv[0], argv[1:])] if argv else [(name, []) for name in _names()]
    status = 0
    for name, args in selected:
        module = importlib.import_module(f"bench.bench_{name}")
        status = max(status, int(module.main(args)))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
