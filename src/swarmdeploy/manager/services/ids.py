"""Readable unique task ids: ``adjective-noun-xxxx`` (like the original's ``brave-fox``).

2,500 word pairs times 65,536 suffixes: collisions are rare, and the task service retries
with a fresh id when storage reports one.
"""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "agile able bold brave bright calm clever cosmic crisp daring eager early fair fast fierce "
    "fond gentle glad golden grand happy hardy honest jolly keen kind lively lucky merry mighty "
    "modest neat nimble noble proud quick quiet rapid ready sharp shiny smart solid steady "
    "sunny swift tidy vivid warm wise"
).split()
NOUNS = (
    "badger bear beaver bison cat cobra condor crane deer dingo dolphin eagle falcon ferret "
    "finch fox gecko heron ibex jaguar koala lemur lion lynx marten moose newt otter owl panda "
    "parrot pelican puffin quail raven robin salmon seal shark sparrow stork swan tiger toucan "
    "turtle walrus whale wolf wombat zebra"
).split()


def readable_id() -> str:
    """A fresh id such as ``swift-otter-3f9a`` (valid as a task id and as a file name)."""
    return f"{secrets.choice(ADJECTIVES)}-{secrets.choice(NOUNS)}-{secrets.token_hex(2)}"
