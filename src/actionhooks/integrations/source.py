"""What a broker consumer (``integrations/<broker>/consumer.py``) gives the ingest pipeline (``consume/base.py``)
and takes from it: the messages it fetched, the rejections to dead-letter, and the dead letters' headers.

It lives beside the integrations so that a broker's folder imports nothing of the pipeline that runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import msgspec

IDLE_S = 1.0  # longest a fetch waits for a first message (so a stop request is seen within about a second)
ERRORS_HEADER_MAX = (
    16_000  # bytes of the JSON error list in a dead letter's header (the count is always there)
)


class Incoming(NamedTuple):
    """One broker message: its body, its content type ("" when it has none) and the broker's own handle."""

    body: bytes
    content_type: str
    handle: Any


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What is wrong: ``index`` is the item's position in the message (absent for whole-message problems)."""

    error: str
    index: int | None = None
    field: str | None = None


class Rejection(NamedTuple):
    """A message's failed part: ``body`` is what goes to dead letters, ``stored`` how many of its items were
    valid (and appended)."""

    message: Incoming
    body: bytes
    problems: list[Problem]
    stored: int


def dead_letter_headers(rejection: Rejection, source: str) -> dict[str, str]:
    """Headers of a dead letter (ASCII): ``actionhooks-errors`` the JSON list of problems (``index``, ``error``,
    ``field``; cut to about 16 KB), ``actionhooks-error-count``, ``actionhooks-stored-items`` (valid items of the
    message that were appended), ``actionhooks-source`` (queue, topic or subject it came from)."""
    problems = [msgspec.to_builtins(p) for p in rejection.problems]
    text = json.dumps(problems, separators=(",", ":"))
    while len(text) > ERRORS_HEADER_MAX and len(problems) > 1:
        problems = problems[: len(problems) // 2]
        text = json.dumps(problems, separators=(",", ":"))
    return {
        "actionhooks-errors": text,
        "actionhooks-error-count": str(len(rejection.problems)),
        "actionhooks-stored-items": str(rejection.stored),
        "actionhooks-source": source,
    }


class Source(Protocol):
    """A broker's side of a consumer run (``integrations/<broker>/consumer.py``)."""

    name: str  # where messages come from, for logs and the ``actionhooks-source`` header
    dead_letters: bool  # a dead-letter destination is configured

    async def open(self) -> None: ...
    async def fetch(self) -> list[Incoming]:
        """The next batch (as many messages as are there, up to the batch size); [] after about ``IDLE_S``."""
        ...

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        """Publish the rejections and return once the broker confirmed all; raise ``ConsumeError`` else."""
        ...

    async def ack(self, messages: Sequence[Incoming]) -> None:
        """Acknowledge the batch (every message fetched since the last ack)."""
        ...

    async def close(self) -> None: ...
