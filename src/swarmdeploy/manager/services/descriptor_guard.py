"""Bounds on task descriptors before they are parsed (issue 9, item 7).

Parsers amplify: measured with PyYAML's C loader, 1 MiB of YAML flow mappings (``{},``)
becomes 259 MiB and 4.3 s of CPU holding the GIL; 64 MiB of JSON ``[],`` becomes 1.5 GiB and
8 s. The archive has its own channel (multipart), so the descriptor is bounded apart from it:

* **shape**: a cheap byte count (C speed, no parsing) of the characters that open a list or
  mapping entry (``,`` ``[`` ``{``, and for YAML ``- `` and ``:``) must stay within
  ``max_elements`` -- a long inline archive string has none of them;
* **YAML size**: YAML bodies at most ``max_yaml_bytes`` (a 64 MiB string costs YAML 4x);
  larger archives go as JSON or, better, multipart (``swarmdeploy tasks create --archive``);
* **one parse at a time**: parses run in a worker thread, at most ``concurrency`` at once,
  so concurrent bodies cannot multiply the peak.

Over a bound the answer is 413 ``body_too_large`` naming the bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import TypeVar

from swarmdeploy.manager.errors import TooLarge

T = TypeVar("T")

_JSON_MARKS = (b",", b"[", b"{")
_YAML_MARKS = (*_JSON_MARKS, b"- ", b":")


def element_marks(body: bytes, *, yaml: bool) -> int:
    """An upper bound of the entries ``body`` can make (a count of opening characters)."""
    return sum(body.count(mark) for mark in (_YAML_MARKS if yaml else _JSON_MARKS))


@dataclasses.dataclass
class DescriptorGuard:
    """The bounds of one app (from the settings) and its parse gate."""

    max_yaml_bytes: int
    max_elements: int
    concurrency: int = 1
    _gate: asyncio.Semaphore | None = dataclasses.field(default=None, repr=False)

    def check(self, body: bytes, *, yaml: bool, what: str = "the task descriptor") -> None:
        """Raise :class:`TooLarge` if ``body`` exceeds a bound."""
        if yaml and len(body) > self.max_yaml_bytes:
            raise TooLarge(
                f"{what} is YAML of {len(body)} bytes; YAML is limited to "
                f"{self.max_yaml_bytes} bytes: send JSON, or the archive apart "
                "(multipart: swarmdeploy tasks create --archive)"
            )
        marks = element_marks(body, yaml=yaml)
        if marks > self.max_elements:
            raise TooLarge(
                f"{what} has up to {marks} list or mapping entries; at most "
                f"{self.max_elements} are accepted"
            )

    async def parse(self, parse: Callable[[bytes], T], body: bytes) -> T:
        """``parse(body)`` in a worker thread, at most ``concurrency`` at once."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.concurrency)
        async with self._gate:
            return await asyncio.to_thread(parse, body)
