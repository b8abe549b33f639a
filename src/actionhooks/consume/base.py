"""Broker ingest, the part every consumer shares: a batch of broker messages → validate → one append → dead
letters → acknowledge.

Each broker message body is one event object, a JSON array of them, or NDJSON (the message's content type, or its
shape, tells which), validated by the same code as ``POST /v1/events`` (``split_body``, ``parse_events``) for one
account chosen by the operator. The contract every consumer keeps:

1. **One append per broker batch**: the valid events of all messages fetched together go to one ``store.append``.
2. **Acknowledge after commit**: a message is acknowledged only after ``append`` returned (its events are
   committed) and after its dead letter, if any, was confirmed by the broker.
3. **Invalid is final**: a message that is not JSON, or the items of a message that fail validation, go to the
   dead-letter destination (the broker's own module publishes them) or, without one, are logged (errors and
   sizes, never the body) — and the message is acknowledged: invalid input is never redelivered. Valid items of
   the same message are appended.
4. **Failures stop the run, unacknowledged**: when the store or the dead-letter publish fails, nothing of the
   batch is acknowledged and the run ends with the error; the broker redelivers the batch to the next run.
   Redelivered events with a producer ``id`` are stored once (the log deduplicates ids); events without one get a
   fresh id on each delivery, so a crash between commit and acknowledgement can store them twice.

A dead letter is the failed part of the message, byte for byte: the whole body when nothing of it was stored,
otherwise a JSON array of the failed items in message order. Headers (``dead_letter_headers``) carry the errors.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from ..config import IngestLimits
from ..derive import DEFAULT_TTL_S, Derivation
from ..errors import StoreUnavailable
from ..events import NewEvent, parse_events, split_body
from ..integrations.source import Incoming, Problem, Rejection, Source, dead_letter_headers
from ..store import Store, open_store
from ..store.base import Deriver

log = logging.getLogger("actionhooks.consume")

STATS_EVERY_S = 10.0
NDJSON = "application/x-ndjson"


class Checked(NamedTuple):
    events: list[NewEvent]
    chosen_ids: set[str]
    rejections: list[Rejection]


def _content_type(body: bytes, declared: str) -> str:
    """NDJSON when declared so, or when a body of several lines starting with ``{`` is not one JSON value."""
    if declared.startswith(("application/x-ndjson", "application/ndjson", "application/jsonl")):
        return declared
    stripped = body.strip()
    if stripped[:1] == b"{" and b"\n" in stripped:
        try:
            msgspec.json.decode(stripped, type=msgspec.Raw)
        except msgspec.DecodeError:
            return NDJSON
    return "application/json"


class Ingester:
    """Validates broker messages for one account and appends their valid events (the shared ingest path), with
    derivation as ``POST /v1/events`` (``derive.py``; the account's setting switches it off)."""

    def __init__(
        self, store: Store, account_id: int, limits: IngestLimits, derivation: Deriver | None = None
    ) -> None:
        self.store = store
        self.account_id = account_id
        self.limits = limits
        self.derivation: Deriver = Derivation() if derivation is None else derivation

    def check(self, messages: Sequence[Incoming]) -> Checked:
        """Split and validate every message: the valid events in order, and the messages' failed parts."""
        events: list[NewEvent] = []
        chosen_ids: set[str] = set()
        rejections: list[Rejection] = []
        now = time.time()
        for message in messages:
            problem, items = self._items(message)
            if problem is not None:
                rejections.append(Rejection(message, message.body, [problem], 0))
                continue
            valid, errors = parse_events(items, self.account_id, now, chosen_ids)
            events += valid
            failed = [items[e.index] for e in errors]
            problems = [Problem(error=e.error, index=e.index, field=e.field) for e in errors]
            if failed:
                stored = len(items) - len(failed)
                body = message.body if stored == 0 else b"[" + b",".join(r.strip() for r in failed) + b"]"
                rejections.append(Rejection(message, body, problems, stored))
        return Checked(events, chosen_ids, rejections)

    def _items(self, message: Incoming) -> tuple[Problem | None, list[bytes]]:
        body, limits = message.body, self.limits
        if len(body) > limits.max_body_bytes:
            return Problem(error=f"message is {len(body)} bytes; the limit is {limits.max_body_bytes}"), []
        try:
            items = list(split_body(body, _content_type(body, message.content_type)))
        except ValueError as exc:  # msgspec's DecodeError and ValidationError, a string that is not UTF-8
            return Problem(error=f"message is not valid JSON: {exc}"), []
        except RecursionError:
            return Problem(error="message is nested too deeply"), []
        if not items:
            return Problem(error="no events in the message"), []
        if len(items) > limits.max_items:
            return Problem(error=f"{len(items)} events in one message; the limit is {limits.max_items}"), []
        return None, items

    async def append(self, checked: Checked) -> tuple[int, int]:
        """Commit the valid events, waiting while the store is unavailable; (stored, duplicates)."""
        if not checked.events:
            return 0, 0
        while True:  # the batch stays unacknowledged until its events are committed
            try:
                flags = await self.store.append(
                    self.account_id, checked.events, checked.chosen_ids, self.derivation
                )
                break
            except StoreUnavailable as exc:
                await asyncio.sleep(exc.retry_after)
        stored = sum(flags)
        return stored, len(flags) - stored


@dataclass
class Stats:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    started: float = 0.0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.messages} messages, {self.stored} events stored ({self.stored / elapsed:.0f}/s), "
            f"{self.duplicates} duplicates, {self.rejected} messages rejected"
        )


async def process(source: Source, ingester: Ingester, batch: Sequence[Incoming], stats: Stats) -> None:
    """One broker batch through the contract above: validate, append, dead-letter, acknowledge."""
    checked = ingester.check(batch)
    stored, duplicates = await ingester.append(checked)
    if checked.rejections:
        if source.dead_letters:
            await source.dead_letter(checked.rejections)
        else:
            for r in checked.rejections:
                errors = dead_letter_headers(r, source.name)["actionhooks-errors"]
                log.warning(
                    "%s: dropped the invalid part of a message (%d bytes, %d items stored, no dead-letter "
                    "destination): %s",
                    source.name,
                    len(r.message.body),
                    r.stored,
                    errors,
                )
    await source.ack(batch)
    stats.messages += len(batch)
    stats.stored += stored
    stats.duplicates += duplicates
    stats.rejected += len(checked.rejections)


async def run(source: Source, ingester: Ingester, stop: asyncio.Event, stats: Stats | None = None) -> Stats:
    """Fetch and process batches until ``stop`` is set; the batch in hand is always finished first. ``stats``
    (updated after each acknowledged batch) lets a caller watch progress."""
    stats = Stats() if stats is None else stats
    stats.started = time.monotonic()
    next_report = stats.started + STATS_EVERY_S
    while not stop.is_set():
        batch = await source.fetch()
        if batch:
            await process(source, ingester, batch, stats)
        if time.monotonic() >= next_report:
            log.info("%s: %s", source.name, stats.line())
            next_report = time.monotonic() + STATS_EVERY_S
    return stats


async def serve(
    source: Source, db: str, account_id: int, limits: IngestLimits, derive_ttl_s: float = DEFAULT_TTL_S
) -> None:
    """Open the store and the source, consume until SIGTERM or SIGINT (a second one ends the process at once)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)

    def request_stop() -> None:
        log.info("%s: stopping after the batch in hand", source.name)
        for sig in signals:
            loop.remove_signal_handler(sig)
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, request_stop)
    store = open_store(db)
    await store.open()
    try:
        await source.open()
        try:
            log.info("%s: consuming for account %d", source.name, account_id)
            stats = await run(source, Ingester(store, account_id, limits, Derivation(derive_ttl_s)), stop)
            log.info("%s: stopped; %s", source.name, stats.line())
        finally:
            await source.close()
    finally:
        await store.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
