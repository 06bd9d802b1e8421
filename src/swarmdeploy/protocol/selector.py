"""Target selectors: which devices a task, a standing release or a targets query addresses
(``docs/selectors.md``). Pure parsing and matching; no I/O.

A selector has four parts; a target matches when all three conditions hold:

1. *any-of*: its id is in ``ids`` or it carries one of ``tags`` -- DESIGN.md's original
   meaning of ``deploy.target: {ids, tags}``; when both are empty this condition holds for
   every target (a selector of only all-of or negated terms);
2. *all-of*: it carries every tag of ``all_tags``;
3. *negation*: it carries none of ``not_tags`` and its id is not in ``not_ids``.

The text form, used by ``GET /targets?select=``, the CLI and ``deploy.target.select``, is a
list of terms separated by commas or spaces: ``camera`` (any-of tag), ``id:cam-7`` (id),
``+outdoor`` (all-of tag), ``!lab`` (negated tag), ``!id:cam-3`` (negated id). Example:
``camera,gateway,+outdoor,!lab``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from swarmdeploy.protocol.errors import DescriptorError

#: Most terms in one selector (each list counts).
MAX_TERMS = 100_000
#: Longest selector text accepted.
MAX_TEXT_CHARS = 1_000_000
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z")
_SPLIT_RE = re.compile(r"[,\s]+")


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector (see the module docstring). Each tuple is sorted and unique."""

    ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    all_tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    not_ids: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        ids: Iterable[str] = (),
        tags: Iterable[str] = (),
        all_tags: Iterable[str] = (),
        not_tags: Iterable[str] = (),
        not_ids: Iterable[str] = (),
    ) -> Selector:
        """A selector of these parts, sorted and de-duplicated (names are not checked)."""
        return cls(
            tuple(sorted(set(ids))),
            tuple(sorted(set(tags))),
            tuple(sorted(set(all_tags))),
            tuple(sorted(set(not_tags))),
            tuple(sorted(set(not_ids))),
        )

    @property
    def empty(self) -> bool:
        """Whether no term is given at all."""
        return not (self.ids or self.tags or self.all_tags or self.not_tags or self.not_ids)

    @property
    def positive(self) -> bool:
        """Whether some term admits targets (ids, tags or all-of tags): a selector of only
        negations would address the whole fleet, which a task must say explicitly."""
        return bool(self.ids or self.tags or self.all_tags)

    @property
    def plain(self) -> bool:
        """Whether it has only the original any-of parts (ids and tags)."""
        return not (self.all_tags or self.not_tags or self.not_ids)

    def matches(self, target_id: str, tags: Collection[str]) -> bool:
        """Whether the target with this id and these tags is selected. An empty selector
        selects nobody (a manifest without a selector addresses no device)."""
        if self.empty:
            return False
        have = set(tags)
        if (self.ids or self.tags) and target_id not in self.ids and have.isdisjoint(self.tags):
            return False
        if not have.issuperset(self.all_tags):
            return False
        return target_id not in self.not_ids and have.isdisjoint(self.not_tags)

    def to_text(self) -> str:
        """The text form (terms in a fixed order); ``parse_selector`` gives it back."""
        terms = [f"id:{i}" for i in self.ids]
        terms += list(self.tags)
        terms += [f"+{t}" for t in self.all_tags]
        terms += [f"!{t}" for t in self.not_tags]
        terms += [f"!id:{i}" for i in self.not_ids]
        return ",".join(terms)


def check_name(value: str, what: str, path: str) -> None:
    """Refuse a target id or tag outside ``[A-Za-z0-9][A-Za-z0-9._:@-]*`` (at most 128)."""
    if not _NAME_RE.match(value):
        raise DescriptorError(f"invalid {what} {value!r}: use letters, digits and ._:@-", path)


def parse_selector(text: str, path: str = "$.select") -> Selector:
    """Parse the text form; :class:`DescriptorError` naming the bad term (``path`` is where
    the text came from). An empty text gives the empty selector."""
    if len(text) > MAX_TEXT_CHARS:
        raise DescriptorError(f"a selector must be at most {MAX_TEXT_CHARS} characters", path)
    parts: dict[str, list[str]] = {"ids": [], "tags": [], "all": [], "not": [], "not_ids": []}
    terms = [t for t in _SPLIT_RE.split(text.strip()) if t]
    if len(terms) > MAX_TERMS:
        raise DescriptorError(f"a selector has at most {MAX_TERMS} terms", path)
    for term in terms:
        kind, name = _term(term)
        check_name(name, "id" if kind in ("ids", "not_ids") else "tag", f"{path}: {term!r}")
        parts[kind].append(name)
    return Selector.of(parts["ids"], parts["tags"], parts["all"], parts["not"], parts["not_ids"])


def _term(term: str) -> tuple[str, str]:
    if term.startswith("!id:"):
        return "not_ids", term[4:]
    if term.startswith("!"):
        return "not", term[1:]
    if term.startswith("+"):
        return "all", term[1:]
    if term.startswith("id:"):
        return "ids", term[3:]
    return "tags", term
