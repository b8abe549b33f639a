"""Derived events: what the platform concludes from raw facts (REFERENCE §4), every rule with its scope.

Derivation runs inside the append's transaction (``Store.append(..., derive=Derivation(...))``), with the log lock
held, so a derived event is committed with its source or not at all, and two sources in the same instant — in one
process or several on PostgreSQL — cannot both be "the first". The rules (docs/capture.md#derived-events):

==================  =====================================================================================
rule                what and scope
==================  =====================================================================================
unique              the first ``open`` also yields ``uopen``; likewise ``click``→``uclick``,
                    ``open_push``→``uopen_push``, ``click_push``→``uclick_push``, ``click_sms``→``uclick_sms``,
                    ``telegram_bot_click``→``telegram_bot_uclick``, ``whatsapp_click``→``whatsapp_uclick``,
                    ``viber_click``→``viber_uclick``. Scope: (account, ``list_id``, ``profile_id``,
                    ``event_data.message_id``, ``event_data.launch_id`` when present) — one unique open and one
                    unique click per message, whatever the link. Needs ``profile_id`` and ``message_id``.
implied open        a ``click`` (``click_push``) whose scope has no recorded open first yields ``open`` and
                    ``uopen`` (``open_push``, ``uopen_push``).
confirm             the first ``confirm`` of a scope yields ``click`` — which then derives like any click
                    (``uclick`` when it is the first, ``open`` / ``uopen`` when none was recorded).
dwell               an ``open`` with ``event_data.dwell_s`` (seconds) yields exactly one of ``glanced``
                    (< 4 s), ``skimmed`` (4 s to < 8 s), ``read`` (≥ 8 s). No scope: one per measured open.
subscription        the status events set the profile's subscription status (profiles.set_status): ``unsub``,
status              ``unsub_api`` (every channel), ``whatsapp_unsub``, ``viber_unsub`` → unsubscribed (``unsub_sms``: the sms channel); ``complain`` →
                    complainer; ``hbounce`` / ``hbounce_push`` → hardbounced; ``confirmsub``,
                    ``*_subscribe`` (messengers) → subscribed (only from unsubscribed, complainer or hardbounced). The
                    channel is ``event_data.channel`` or the event's own; the resource ``event_data.resource_id``.
                    Only profiles actionhooks stores change; no event is derived.
==================  =====================================================================================

Profile events (imports upsert, merges and splits move data: ``profile_events.py``) are applied first, in the
same transaction, whether the account's derivation is on or off.

What is "recorded" lives in the store's derivation marks, kept ``ttl_s`` seconds (never less than the log's
retention): a mark per (rule, scope). A derived event is a copy of its source's message with its own
``event_type``, an ``id`` derived from the source's (:func:`derived_id`) and ``derived_from`` naming the source;
re-posting a source with the same id stores and derives nothing (the log knows the id), and the marks keep a source
re-posted under a new id from deriving its unique events again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from itertools import compress
from operator import itemgetter

import msgspec

from . import profile_events, profiles
from .events import NewEvent
from .store.base import Derived, DeriveState

UNIQUE: dict[str, str] = {
    "open": "uopen",
    "click": "uclick",
    "open_push": "uopen_push",
    "click_push": "uclick_push",
    "click_sms": "uclick_sms",
    "telegram_bot_click": "telegram_bot_uclick",
    "whatsapp_click": "whatsapp_uclick",
    "viber_click": "viber_uclick",
}
IMPLIED_OPEN: dict[str, str] = {"click": "open", "click_push": "open_push"}
CONFIRM: dict[str, str] = {"confirm": "click"}
DWELL_SOURCE = "open"
STATUS: dict[
    str, tuple[profiles.Status, str]
] = {  # event type → (status, its channel unless event_data says)
    "unsub": ("unsubscribed", "email"),
    "unsub_api": ("unsubscribed", "all"),
    "unsub_sms": ("unsubscribed", "sms"),
    "whatsapp_unsub": ("unsubscribed", "whatsapp"),
    "viber_unsub": ("unsubscribed", "viber"),
    "complain": ("complainer", "email"),
    "hbounce": ("hardbounced", "email"),
    "hbounce_push": ("hardbounced", "push"),
    "confirmsub": ("subscribed", "email"),
    "telegram_bot_subscribe": ("subscribed", "telegram_bot"),
    "whatsapp_subscribe": ("subscribed", "whatsapp"),
    "viber_subscribe": ("subscribed", "viber"),
}
DERIVING = frozenset(UNIQUE) | frozenset(CONFIRM) | frozenset(STATUS)
DEFAULT_TTL_S = 90 * 86400


def _kinds(event_type: str) -> tuple[str, ...]:
    """The marks an event of ``event_type`` may read: its unique kind, its implied open's, confirm's."""
    kinds: list[str] = []
    if event_type in CONFIRM:
        kinds.append("confirm")
        event_type = CONFIRM[event_type]
    if event_type in IMPLIED_OPEN:
        kinds.append(UNIQUE[IMPLIED_OPEN[event_type]])
    if event_type in UNIQUE:
        kinds.append(UNIQUE[event_type])
    return tuple(kinds)


_KINDS = {t: _kinds(t) for t in DERIVING}


def dwell_type(seconds: float) -> str:
    """``glanced`` under 4 s, ``skimmed`` from 4 s to under 8 s, ``read`` from 8 s."""
    if seconds < 4:
        return "glanced"
    return "skimmed" if seconds < 8 else "read"


_KEPT = 23  # characters of the source's id kept in front: a generated id's time and sequence (UUIDv7)


def derived_id(source_id: str, event_type: str) -> str:
    """The id of the ``event_type`` derived from ``source_id``: the source id's first 23 characters, ``.`` and 24
    hex digits of BLAKE2b over both — deterministic, within the 64-character id grammar whatever the source's id
    (at most 48 characters). Kept in front, the source's prefix files the derived event's key in the log's
    ``(account_id, id)`` index beside its source's (where the writer is already working) instead of at a random
    place (a page read and dirtied for each)."""
    digest = hashlib.blake2b(f"{source_id}>{event_type}".encode(), digest_size=12).hexdigest()
    return f"{source_id[:_KEPT]}.{digest}"


class _Data(msgspec.Struct):
    message_id: int | str | None = None
    launch_id: str | int | None = None
    dwell_s: float | None = None
    resource_id: int | None = None
    channel: str | None = None


class _Source(msgspec.Struct):
    event_data: _Data = msgspec.field(default_factory=_Data)


_event_type = itemgetter(2)  # NewEvent.event_type (a tuple's item: picked in C)
_decode_source = msgspec.json.Decoder(_Source).decode
# a message's top-level members, their values left as the producer's bytes (a copy re-encodes them verbatim)
_decode_message = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_encode = msgspec.json.Encoder().encode


class Derivation:
    """The :data:`~actionhooks.store.base.Deriver` of the ingest paths; ``ttl_s``: how long marks count."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = ttl_s

    def __call__(self, account_id: int, events: Sequence[NewEvent], state: DeriveState) -> Derived:
        present = set(map(_event_type, events))  # (one pass over a request's events, in C)
        if not present.isdisjoint(profile_events.TYPES):  # whatever the account's setting
            profile_events.apply(account_id, events, state, time.time())
        if present.isdisjoint(DERIVING) or not state.derives(account_id):
            return Derived(list(events), [])
        return _Run(account_id, state, self.ttl_s).events(events)


class _Run:
    """One append's derivation: the marks it needs read in one query, set in one statement."""

    def __init__(self, account_id: int, state: DeriveState, ttl_s: float) -> None:
        self.account_id = account_id
        self.state = state
        self.now = time.time()
        self.ttl_s = ttl_s
        self.seen: set[str] = set()
        self.new: set[str] = set()

    def events(self, events: Sequence[NewEvent]) -> Derived:
        parsed: list[tuple[int, NewEvent, _Data, str | None]] = []
        wanted: set[str] = set()
        # the sources' positions, found in C: most of a request's events derive nothing
        for i in compress(range(len(events)), map(DERIVING.__contains__, map(_event_type, events))):
            e = events[i]
            try:
                data = _decode_source(e.payload).event_data
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue  # event_data of other types than these rules read: nothing derives from it
            scope = _scope(e, data)
            parsed.append((i, e, data, scope))
            if scope is not None:
                wanted.update(f"{kind}|{scope}" for kind in _KINDS[e.event_type])
        self.seen = self.state.marked(self.account_id, wanted, self.now) if wanted else set()
        out: list[NewEvent] = []
        added: list[NewEvent] = []
        status_events: list[tuple[NewEvent, _Data]] = []
        done = 0  # events before this index are in ``out``; those between sources are copied in slices
        for i, e, found, scope in parsed:
            out.extend(events[done:i])
            done = i + 1
            if e.event_type in STATUS:
                status_events.append((e, found))
            before, after = self._expand(e, found, scope, e.event_type, e.id, None)
            if before or after:
                added += before
                added += after
                out += before
                out.append(e)
                out += after
            else:
                out.append(e)
        out.extend(events[done:])
        if self.new:
            self.state.mark(self.account_id, self.new, self.now + self.ttl_s)
        if status_events:
            self._statuses(status_events)
        return Derived(out, added)

    def _first(self, kind: str, scope: str) -> bool:
        """Claim the mark ``kind`` of ``scope``: True the first time."""
        mark = f"{kind}|{scope}"
        if mark in self.seen:
            return False
        self.seen.add(mark)
        self.new.add(mark)
        return True

    def _expand(
        self,
        source: NewEvent,
        data: _Data,
        scope: str | None,
        event_type: str,
        root_id: str,
        message: dict[str, msgspec.Raw] | None,
    ) -> tuple[list[NewEvent], list[NewEvent]]:
        """What derives from ``event_type`` (the source itself when ``message`` is None, else derived from it):
        the implied events to write before it, and the unique and dwell events (and what derives from those) to
        write after it."""
        before: list[NewEvent] = []
        after: list[NewEvent] = []
        body = message  # the source's message, decoded (once) when something derives from it
        if scope is not None:
            if event_type in CONFIRM and self._first("confirm", scope):
                body = _decode_message(source.payload) if body is None else body
                derived = CONFIRM[event_type]
                first, then = self._expand(source, data, scope, derived, root_id, body)
                after += first
                after.append(self._copy(source, body, derived, root_id))
                after += then
            implied = IMPLIED_OPEN.get(event_type)
            if implied is not None and self._first(UNIQUE[implied], scope):
                body = _decode_message(source.payload) if body is None else body
                before.append(self._copy(source, body, implied, root_id))
                before.append(self._copy(source, body, UNIQUE[implied], root_id))
            unique = UNIQUE.get(event_type)
            if unique is not None and self._first(unique, scope):
                body = _decode_message(source.payload) if body is None else body
                after.append(self._copy(source, body, unique, root_id))
        if event_type == DWELL_SOURCE and data.dwell_s is not None and data.dwell_s >= 0 and message is None:
            body = _decode_message(source.payload) if body is None else body
            after.append(self._copy(source, body, dwell_type(data.dwell_s), root_id))
        return before, after

    def _copy(
        self, source: NewEvent, message: dict[str, msgspec.Raw], event_type: str, root_id: str
    ) -> NewEvent:
        event_id = derived_id(root_id, event_type)
        body: dict[str, msgspec.Raw | str] = {**message, "event_type": event_type, "derived_from": root_id}
        body["id"] = event_id
        return NewEvent(
            source.account_id,
            event_id,
            event_type,
            source.list_id,
            source.profile_id,
            source.received_at,
            _encode(body),
        )

    def _statuses(self, status_events: list[tuple[NewEvent, _Data]]) -> None:
        ids = {e.profile_id for e, _ in status_events if e.profile_id is not None}
        stored = self.state.profiles(self.account_id, ids)
        changed: dict[str, profiles.Profile] = {}
        for e, data in status_events:
            if e.profile_id is None or e.profile_id not in stored:
                continue
            profile = changed.get(e.profile_id) or profiles.load(stored[e.profile_id])
            if profile is None:
                continue  # a deleted profile stays erased
            status, channel = STATUS[e.event_type]
            if profiles.set_status(profile, data.channel or channel, data.resource_id, status):
                changed[e.profile_id] = profile
        if changed:
            writes = [profiles.write(pid, p) for pid, p in changed.items()]
            self.state.put_profiles(self.account_id, writes, self.now)


def _scope(event: NewEvent, data: _Data) -> str | None:
    """The uniqueness scope: account (the marks' key), list, profile, message, launch."""
    if event.profile_id is None or data.message_id is None:
        return None
    launch = "" if data.launch_id is None else str(data.launch_id)
    list_id = "" if event.list_id is None else str(event.list_id)
    return f"{list_id}|{event.profile_id}|{data.message_id}|{launch}"
