"""What events say about profiles (docs/capture.md#profiles-kept-from-events): imports upsert, merges and splits
move data. Applied inside the append's transaction, with derivation (``derive.Derivation``), in event order.

==================  ==========================================================================================
event               effect on the stored profiles
==================  ==========================================================================================
``import_manual``,  the event's profile (``profile_id``) is upserted from the message: ``list_id``;
``import_file``,    ``custom_data`` — ``email`` and ``phone`` (strings) to the profile's ``email`` / ``phone``,
``import_api``      every other key to ``fields`` (a key given replaces the stored one); ``subscription[]`` —
                    each object replaces the stored subscription of the same (``channel``, ``resource_id``).
                    An import without ``custom_data`` or ``subscription`` changes nothing. A deleted profile
                    starts again (like a ``PUT``).
``profile_merge``   ``event_data.source_profile_ids`` are merged into the first of ``target_profile_ids``: the
                    target keeps what it has and takes from the sources, in their order, what it lacks
                    (``email``, ``phone``, each of ``fields``, each (``channel``, ``resource_id``) subscription);
                    the sources are then erased (tombstones: their later messages get ``custom_data: null``).
``profile_split``   each of ``target_profile_ids`` takes from the first of ``source_profile_ids`` what it lacks
                    (as a merge's target); the source is kept.
==================  ==========================================================================================

A deleted profile is never brought back by a merge or a split (neither as a source nor as a target): its data
was erased on purpose. Only ids up to ``MAX_IDS`` per event are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from . import profiles
from .errors import ValidationError
from .events import NewEvent
from .profiles import Profile, Subscription
from .store.base import DeriveState

IMPORTS = frozenset({"import_manual", "import_file", "import_api"})
MERGE, SPLIT = "profile_merge", "profile_split"
TYPES = IMPORTS | {MERGE, SPLIT}
MAX_IDS = 100
_ProfileId = profiles.ProfileId


class _Moves(msgspec.Struct):
    source_profile_ids: list[_ProfileId] = msgspec.field(default_factory=list)
    target_profile_ids: list[_ProfileId] = msgspec.field(default_factory=list)


class _MoveEvent(msgspec.Struct):
    event_data: _Moves = msgspec.field(default_factory=_Moves)


class _ImportEvent(msgspec.Struct):
    custom_data: dict[str, Any] | None = None
    subscription: list[dict[str, Any]] | None = None


_decode_move = msgspec.json.Decoder(_MoveEvent).decode
_decode_import = msgspec.json.Decoder(_ImportEvent).decode


def _key(sub: Subscription) -> tuple[str, int | None]:
    return sub.channel, sub.resource_id


def _fill(target: Profile, source: Profile) -> None:
    """``target`` takes from ``source`` what it lacks."""
    if target.email is None:
        target.email = source.email
    if target.phone is None:
        target.phone = source.phone
    if target.list_id is None:
        target.list_id = source.list_id
    for name, value in source.fields.items():
        target.fields.setdefault(name, value)
    have = {_key(s) for s in target.subscriptions}
    target.subscriptions += [msgspec.structs.replace(s) for s in source.subscriptions if _key(s) not in have]


class _Profiles:
    """The profiles one append touches: read once, changed in order, written once."""

    def __init__(self, account_id: int, state: DeriveState, ids: set[str]) -> None:
        self.account_id = account_id
        self.state = state
        stored = state.profiles(account_id, ids) if ids else {}
        self.current: dict[str, Profile | None] = {pid: profiles.load(s) for pid, s in stored.items()}
        self.list_ids = {pid: s.list_id for pid, s in stored.items()}
        self.changed: set[str] = set()

    def known(self, profile_id: str) -> bool:
        return profile_id in self.current

    def get(self, profile_id: str) -> Profile | None:
        return self.current.get(profile_id)

    def put(self, profile_id: str, profile: Profile | None) -> None:
        self.current[profile_id] = profile
        self.changed.add(profile_id)

    def write(self, now: float) -> None:
        if not self.changed:
            return
        writes = []
        for pid in sorted(self.changed):
            profile = self.current[pid]
            writes.append(
                profiles.erase(pid, self.list_ids.get(pid))
                if profile is None
                else profiles.write(pid, profile)
            )
        self.state.put_profiles(self.account_id, writes, now)


def apply(account_id: int, events: Sequence[NewEvent], state: DeriveState, now: float) -> None:
    """Apply the profile events among ``events`` (in order) to the account's stored profiles."""
    work: list[tuple[NewEvent, _ImportEvent | _Moves]] = []
    ids: set[str] = set()
    for e in events:
        if e.event_type not in TYPES:
            continue
        try:
            if e.event_type in IMPORTS:
                if e.profile_id is None:
                    continue
                found: _ImportEvent | _Moves = _decode_import(e.payload)
                ids.add(e.profile_id)
            else:
                found = _decode_move(e.payload).event_data
                ids.update(found.source_profile_ids[:MAX_IDS], found.target_profile_ids[:MAX_IDS])
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue  # not a shape these rules read: the event is stored and changes no profile
        work.append((e, found))
    if not work:
        return
    book = _Profiles(account_id, state, ids)
    for e, found in work:
        if isinstance(found, _ImportEvent):
            _import(book, e, found)
        elif e.event_type == MERGE:
            _merge(book, found)
        else:
            _split(book, found)
    book.write(now)


def _import(book: _Profiles, event: NewEvent, sent: _ImportEvent) -> None:
    assert event.profile_id is not None
    if sent.custom_data is None and not sent.subscription:
        return
    profile = book.get(event.profile_id) or Profile()
    changed = msgspec.structs.replace(
        profile, fields=dict(profile.fields), subscriptions=list(profile.subscriptions)
    )
    if event.list_id is not None:
        changed.list_id = event.list_id
    for name, value in (sent.custom_data or {}).items():
        if name in ("email", "phone") and isinstance(value, str):
            setattr(changed, name, value)
        else:
            changed.fields[name] = value
    for raw in sent.subscription or ():
        try:
            sub = msgspec.convert(raw, Subscription)
        except msgspec.ValidationError:
            continue
        changed.subscriptions = [s for s in changed.subscriptions if _key(s) != _key(sub)] + [sub]
    try:  # what a PUT would refuse (an email past 320 characters) is not stored either
        profiles.profile_from_builtins(msgspec.to_builtins(changed))
    except ValidationError:
        return
    book.put(event.profile_id, changed)


def _merge(book: _Profiles, moves: _Moves) -> None:
    if not moves.target_profile_ids:
        return
    target_id = moves.target_profile_ids[0]
    sources = [s for s in dict.fromkeys(moves.source_profile_ids[:MAX_IDS]) if s != target_id]
    if book.known(target_id) and book.get(target_id) is None:
        return  # a deleted target stays erased
    target = book.get(target_id) or Profile()
    moved = False
    for source_id in sources:
        source = book.get(source_id)
        if source is None:
            continue
        _fill(target, source)
        book.put(source_id, None)
        moved = True
    if moved:
        book.put(target_id, target)


def _split(book: _Profiles, moves: _Moves) -> None:
    if not moves.source_profile_ids:
        return
    source = book.get(moves.source_profile_ids[0])
    if source is None:
        return
    for target_id in dict.fromkeys(moves.target_profile_ids[:MAX_IDS]):
        if target_id == moves.source_profile_ids[0] or (
            book.known(target_id) and book.get(target_id) is None
        ):
            continue
        target = book.get(target_id) or Profile()
        _fill(target, source)
        book.put(target_id, target)
