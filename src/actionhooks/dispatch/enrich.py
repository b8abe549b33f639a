"""From a stored event to the message a hook's destination receives (docs/capture.md#enrichment).

The stored payload already is the message (the producer's object plus ``id``, ``account_id``, ``is_test``). At
delivery, an event with a ``profile_id`` whose profile actionhooks stores is completed from it — what the producer
sent wins wherever it is given:

- ``custom_data``: for a hook with ``custom_data_fields``, each field from the producer's ``custom_data`` or else
  the profile's (``fields``, ``email``, ``phone``); a field neither has is absent. A deleted profile gives
  ``custom_data: null`` (whatever the producer sent).
- ``subscription``: the profile's ``subscriptions`` when the message has none.
- ``_md5`` and ``_xxh``: of the profile's lower-cased email when the message has none.

Without a stored profile, a hook with ``custom_data_fields`` receives the producer's ``custom_data`` narrowed to
those fields (an event without ``custom_data`` stays without it).

The profiles of a delivery batch are read in one query, and kept (:class:`ProfileCache`, one per store, shared by
the hooks of the process) for the events of later batches that were already in the log when they were read: the
log's head is read first, then the profiles, so every change committed before an event was logged is in what was
read for any event at or below that head (a head read up to ``HEAD_S`` earlier, a position a hook's read of the
log reached, or the batch's highest ``seq``, is no later, so just as safe). Hooks taking the same events ask for
the same profiles at about the same time: one that needs a profile a query under way is reading, at a head at or
past its events, waits for that query instead of making its own. An event logged after the read (a higher
``seq``) reads its profile again, and nothing read is used more than ``CACHE_S`` seconds. A hook of batches
smaller than its buffer passes the buffer as ``ahead``: the query one batch needs reads the profiles of everything
buffered, so the later batches are served from the cache under the same rule (one query per buffer, not per
batch).

Most batches need none of that: their events are in the feed's memory, and the profiles of each chunk it holds
(up to 5 000 events of the log) are read once for every hook (:meth:`ProfileCache.of_spans`) — all the profile
ids the account's events in the chunk name, in one read made after the chunk was committed (so at a head at or
past each of its events), kept with the chunk and used for ``CACHE_S`` seconds, the same rule. A batch costs a lookup of
its chunks instead of one of each event's profile per hook; the reads by profile id serve the events outside the
memory (a hook reading on its own), a hook whose chunk read failed, and a sparse hook whose chunks no other hook
had read and the account's hooks together take few events of (``SPAN_DENSITY``: reading a whole chunk's profiles
for a few events of it would cost more than it saves).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import msgspec

from ..hooks import HookSpec
from ..integrations.base import Message
from ..profiles import Profile, StoredProfile, email_hashes, load

Profiles = dict[str, Profile | None]
Complete = Callable[[bytes, Profile | None], bytes]  # a stored body completed from its profile
log = logging.getLogger(__name__)
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


CACHE_S = 5.0  # a profile read is used at most this long (for events logged before the read)
MESSAGES_SIZE = 20_000  # completed messages kept for other hooks taking the same events (~15 MB of bodies)
CACHE_SIZE = 50_000  # profiles kept per store (the oldest reads are dropped first)
HEAD_S = 1.0  # the log's head is read again after this long (when profiles are read)
# a hook's events must be at least this share of a span's (1/n) for it to have the span's profiles read
SPAN_DENSITY = 16


class ProfileSource(Protocol):
    async def head(self) -> int: ...

    async def get_profiles(
        self, account_id: int, profile_ids: Collection[str]
    ) -> dict[str, StoredProfile]: ...


class _Read(NamedTuple):
    profile: Profile | None  # None: deleted
    stored: bool  # False: no such profile
    head: int  # the log's head before the read: events up to it were logged before it
    at: float  # when (monotonic)


class _Reading:
    """A query of profiles under way: the log's head it is made at, and what it found once ``done``."""

    __slots__ = ("done", "got", "head")

    def __init__(self, head: int, done: asyncio.Future[None]) -> None:
        self.head = head
        self.done = done
        self.got: dict[str, _Read] | None = None  # None until it ends, and after a failed query


def _take(found: Profiles, reading: _Reading, pids: Iterable[str]) -> None:
    """Put what ``reading`` found of ``pids`` into ``found`` (a profile not stored is left out)."""
    got = reading.got
    assert got is not None
    for pid in pids:
        read = got[pid]
        if read.stored:
            found[pid] = read.profile


class Span(Protocol):
    """A stretch of the log held in memory (the feed's chunk), every event of it committed. ``profiles`` is where
    :class:`ProfileCache` keeps what it read for it, per account."""

    profiles: dict[int, SpanProfiles]

    def profile_ids(self, account_id: int) -> set[str]:
        """The profile ids the account's events in the span name."""
        ...

    def events_of(self, account_id: int) -> int:
        """How many of the span's events are the account's."""
        ...

    def taken_of(self, account_id: int) -> int:
        """How many of the account's events in the span the process's hooks take."""
        ...


class SpanProfiles:
    """The stored profiles of every profile id one account's events in a span name, read once for all hooks after
    the span was committed (so at a head at or past every event in it); ``at`` is when the read began."""

    __slots__ = ("at", "done", "stored")

    def __init__(self, at: float, done: asyncio.Future[None]) -> None:
        self.at = at
        self.done = done
        self.stored: Profiles | None = None  # None while the read is under way


class ProfileCache:
    """Profiles read for delivery, per (account, profile id), with the log's head read just before them: an event
    at or below that head was committed before the read began, so the read holds every change committed before
    the event was logged (the log commits in ``seq`` order, under its lock). Such events are served from here for
    ``CACHE_S`` seconds; others read again. Writes of profiles need no invalidation: they can only matter to events
    logged after them, which lie above the head of any read made before them."""

    _of: ClassVar[weakref.WeakKeyDictionary[Any, ProfileCache]] = weakref.WeakKeyDictionary()

    def __init__(self, source: ProfileSource, keep_s: float = CACHE_S, size: int = CACHE_SIZE) -> None:
        self.source = source
        self.keep_s = keep_s
        self.size = size
        self.reads: dict[tuple[int, str], _Read] = {}
        self.head, self.head_at = 0, -math.inf
        self._under_way: dict[tuple[int, str], _Reading] = {}  # the query reading each profile now, if any
        self._reading: set[asyncio.Task[None]] = set()  # reads of spans under way (kept from the collector)
        self.span_density = SPAN_DENSITY
        # messages completed from a profile for the hooks that take it whole (no ``custom_data_fields``): an event
        # leaves the same way for each of them, so it is built once — by ``seq``, with the profile it was built from
        self.messages: dict[int, tuple[Profile | None, Message]] = {}
        self.messages_size = MESSAGES_SIZE

    @classmethod
    def of(cls, source: ProfileSource) -> ProfileCache:
        """The cache shared by every hook delivering from ``source``."""
        cache = cls._of.get(source)
        if cache is None:
            cache = cls._of[source] = cls(source)
        return cache

    async def profiles(
        self, account_id: int, events: Sequence[Message], ahead: Sequence[Message] = ()
    ) -> Profiles:
        """The stored profiles of the events' ``profile_id`` (None: deleted); what is not kept for every event
        wanting it is read in one query — or taken from a read already under way for another hook whose head is
        at or past these events (many hooks taking the same events ask at about the same time: one query serves
        them). ``ahead``: events to be delivered with or after these (a hook's buffer) — when a query is made,
        the profiles they lack are read in it too, so a hook of small batches makes one query per buffer, not one
        per batch."""
        now = time.monotonic()
        found: Profiles = {}
        wanted = self._stale(account_id, events, now, found)
        if not wanted:
            return found
        top = max(e.seq for e in events)
        joined: dict[str, _Reading] = {}
        for pid in wanted:
            reading = self._under_way.get((account_id, pid))
            if reading is not None and reading.head >= top:
                joined[pid] = reading
        own = wanted - joined.keys() if joined else wanted
        if own:
            if ahead:
                own = own | {
                    pid
                    for pid in self._stale(account_id, ahead, now, None)
                    if (account_id, pid) not in self._under_way
                }
            head = await self._head(max(top, max(e.seq for e in ahead)) if ahead else top, now)
            reading = await self._read(account_id, own, head, now)
            _take(found, reading, own & wanted)
        if joined:
            await asyncio.wait({r.done for r in joined.values()})
            failed: set[str] = set()
            for pid, r in joined.items():
                if r.got is None:  # the other hook's query did not end well
                    failed.add(pid)
                else:
                    _take(found, r, (pid,))
            if failed:  # ask on our own
                _take(found, await self._read(account_id, failed, await self._head(top, now), now), failed)
        return found

    async def of_spans(self, account_id: int, spans: Sequence[Span], wanted: int) -> Profiles | None:
        """The stored profiles of the account's events in ``spans`` (the stretches of the log a batch lies in):
        each span's are read once for every hook taking its events — all the profiles its events of the account
        name — and serve them for ``keep_s`` seconds; the spans not read yet are read at once, side by side. None
        when a read failed (the caller reads on its own; the next asking reads the span again) — and when spans
        would have to be read for a sparse hook: one whose ``wanted`` events (its batch, or its buffer) are fewer
        than 1/``span_density`` of the account's events in them (a hook of rare events, alone, would read the
        profiles of a hundred events for each of its own) — unless the account's hooks together take that many
        of them: the spans are read for those hooks anyway, and a hook of rare types runs ahead of them (a batch
        of its spans many chunks), so it reads them first instead of reading its own by profile id, and they
        find them read (``bench.fanout``'s ``100 hooks at 10 %``: 56 000–68 000 profiles read so, by id, besides
        every chunk's). The answer may be shared: not to be changed."""
        now = time.monotonic()
        due = [
            span
            for span in spans
            if (got := span.profiles.get(account_id)) is None
            or (got.stored is not None and now - got.at > self.keep_s)
        ]
        if due:
            taken = max(wanted, sum(span.taken_of(account_id) for span in due))
            if sum(span.events_of(account_id) for span in due) > self.span_density * taken:
                return None
        for span in due:
            got = span.profiles[account_id] = SpanProfiles(now, asyncio.get_running_loop().create_future())
            task = asyncio.create_task(self._read_span(account_id, span, got))
            self._reading.add(task)
            task.add_done_callback(self._reading.discard)
        reads = [span.profiles[account_id] for span in spans]
        under_way = {got.done for got in reads if got.stored is None}
        if under_way:
            await asyncio.wait(under_way)
        parts = [got.stored for got in reads]
        if len(parts) == 1:
            return parts[0]
        merged: Profiles = {}
        for part in parts:
            if part is None:
                return None
            merged.update(part)
        return merged

    async def _read_span(self, account_id: int, span: Span, got: SpanProfiles) -> None:
        """Read the profiles the account's events in ``span`` name into ``got``; on failure forget it (the store
        logs its outages)."""
        try:
            pids = span.profile_ids(account_id)
            stored = await self.source.get_profiles(account_id, pids) if pids else {}
            got.stored = {pid: load(row) for pid, row in stored.items()}
        except Exception as exc:
            log.debug("profiles of a span: read failed: %r", exc)
        finally:
            if got.stored is None and span.profiles.get(account_id) is got:
                del span.profiles[account_id]
            got.done.set_result(None)

    async def _read(self, account_id: int, pids: set[str], head: int, now: float) -> _Reading:
        """Read ``pids`` in one query and keep what it finds; hooks asking meanwhile may wait for it."""
        reading = _Reading(head, asyncio.get_running_loop().create_future())
        under_way = self._under_way
        for pid in pids:
            under_way[(account_id, pid)] = reading
        try:
            stored = await self.source.get_profiles(account_id, pids)
            if len(self.reads) + len(pids) > self.size:
                self._drop(len(pids))
            got: dict[str, _Read] = {}
            for pid in pids:
                row = stored.get(pid)
                read = got[pid] = _Read(None if row is None else load(row), row is not None, head, now)
                self.reads.pop((account_id, pid), None)  # re-inserted last: the dict stays in read order
                self.reads[(account_id, pid)] = read
            reading.got = got
        finally:
            for pid in pids:
                if under_way.get((account_id, pid)) is reading:
                    del under_way[(account_id, pid)]
            reading.done.set_result(None)
        return reading

    def _stale(
        self, account_id: int, events: Sequence[Message], now: float, found: Profiles | None
    ) -> set[str]:
        """The profile ids of ``events`` that no kept read serves; the others' profiles go into ``found``."""
        stale: set[str] = set()
        reads = self.reads
        for e in events:
            pid = e.profile_id
            if pid is None or pid in stale:
                continue
            read = reads.get((account_id, pid))
            if read is None or e.seq > read.head or now - read.at > self.keep_s:
                stale.add(pid)
                if found is not None:
                    found.pop(pid, None)
            elif found is not None and read.stored:
                found[pid] = read.profile
        return stale

    def committed(self, head: int) -> None:
        """The log up to ``head`` is committed: a read of it reached there (a hook's page). A query made from now on
        is made at that head or later, so what it reads serves every event up to it — the events other hooks
        are about to send with the same profiles."""
        if head > self.head:
            self.head = head

    async def _head(self, top: int, now: float) -> int:
        """A head of the log no later than now: ``top``, the events' highest ``seq`` (they were read from the log),
        or a higher one known — read at most ``HEAD_S`` ago, or reached by a hook's read since (any head known
        earlier is a lower bound of the current one; reading it again each batch would cost a query for what only
        a backlog needs)."""
        if now - self.head_at > HEAD_S:
            head = await self.source.head()
            self.head, self.head_at = max(self.head, head), now
        return max(self.head, top)

    def _drop(self, room: int) -> None:
        """Forget the oldest reads, to make ``room`` (at least a quarter of the cache)."""
        _forget_oldest(self.reads, max(room, self.size // 4))

    def completed(self, event: Message, profile: Profile | None, complete: Complete) -> Message:
        """``event`` with the body ``complete(body, profile)`` gives — made once for every hook asking with the same
        profile (the same read of it), while it is among the ``messages_size`` made last."""
        kept = self.messages.get(event.seq)
        if kept is not None and kept[0] is profile:
            return kept[1]
        message = msgspec.structs.replace(event, body=complete(event.body, profile))
        if len(self.messages) >= self.messages_size:
            _forget_oldest(self.messages, self.messages_size // 4)
        self.messages[event.seq] = (profile, message)
        return message


def _forget_oldest(kept: dict[Any, Any], count: int) -> None:
    """Remove the ``count`` entries inserted first (a dict keeps insertion order)."""
    for key in list(itertools.islice(kept, count)):
        del kept[key]


class Enricher:
    """Completes a hook's messages from stored profiles. ``cached``: live delivery shares the reads of
    :class:`ProfileCache` (each event gets the profile as of its logging or later); a replay or a redrive
    (``cached=False``) reads the profiles as they are now."""

    def __init__(
        self, spec: HookSpec, source: ProfileSource | None = None, account_id: int = 0, *, cached: bool = True
    ) -> None:
        self.fields = spec.custom_data_fields
        self.source = source
        self.cache = None if source is None or not cached else ProfileCache.of(source)
        self.account_id = account_id

    def committed(self, head: int) -> None:
        """The hook read the log up to ``head`` (see :meth:`ProfileCache.committed`)."""
        if self.cache is not None:
            self.cache.committed(head)

    async def of_spans(self, spans: Sequence[Span], wanted: int) -> Profiles | None:
        """The stored profiles of the hook's events in ``spans`` (:meth:`ProfileCache.of_spans`; live delivery
        only: None otherwise, when the read failed, or for a sparse hook)."""
        if self.cache is None:
            return None
        return await self.cache.of_spans(self.account_id, spans, wanted)

    async def profiles(self, events: Sequence[Message], ahead: Sequence[Message] = ()) -> Profiles:
        """The stored profiles of the events' ``profile_id`` (None: deleted); ``ahead``: see
        :meth:`ProfileCache.profiles` (live delivery only)."""
        if self.cache is not None:
            return await self.cache.profiles(self.account_id, events, ahead)
        if self.source is None:
            return {}
        wanted = {e.profile_id for e in events if e.profile_id is not None}
        if not wanted:
            return {}
        stored = await self.source.get_profiles(self.account_id, wanted)
        return {pid: load(row) for pid, row in stored.items()}

    def _from_profile(self, payload: bytes, profile: Profile | None) -> bytes:
        message = _decode(payload)
        sent = message.get("custom_data")
        if profile is None:  # erased: nothing of the profile leaves any more
            message["custom_data"] = None
            return _encode(message)
        if self.fields:
            known = profile.custom_data()
            given = sent if isinstance(sent, dict) else {}
            custom = {}
            for k in self.fields:
                if k in given:
                    custom[k] = given[k]
                elif k in known:
                    custom[k] = known[k]
            message["custom_data"] = custom
        if message.get("subscription") is None and profile.subscriptions:
            message["subscription"] = msgspec.to_builtins(profile.subscriptions)
        if profile.email and ("_md5" not in message or "_xxh" not in message):
            md5, xxh = email_hashes(profile.email)
            message.setdefault("_md5", md5)
            message.setdefault("_xxh", xxh)
        return _encode(message)

    def body(self, payload: bytes) -> bytes:
        if not self.fields:
            return payload
        message = _decode(payload)
        custom = message.get("custom_data")
        if isinstance(custom, dict):
            message["custom_data"] = {k: custom[k] for k in self.fields if k in custom}
            return _encode(message)
        return payload

    def message(self, event: Message, found: Profiles | None = None) -> Message:
        """``event`` completed from its profile in ``found`` (:meth:`profiles`); without one, ``custom_data``
        narrowed to the hook's fields."""
        if found and event.profile_id is not None and event.profile_id in found:
            profile = found[event.profile_id]
            if self.cache is not None and not self.fields:  # the same for every such hook: made once
                return self.cache.completed(event, profile, self._from_profile)
            return msgspec.structs.replace(event, body=self._from_profile(event.body, profile))
        if not self.fields:
            return event
        return msgspec.structs.replace(event, body=self.body(event.body))
