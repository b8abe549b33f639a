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
those fields (an event without ``custom_data`` stays without it). The profiles of a delivery batch are read in one
query.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol

import msgspec

from ..hooks import HookSpec
from ..integrations.base import Message
from ..profiles import Profile, StoredProfile, email_hashes, load

Profiles = dict[str, Profile | None]
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


class ProfileSource(Protocol):
    async def get_profiles(
        self, account_id: int, profile_ids: Collection[str]
    ) -> dict[str, StoredProfile]: ...


class Enricher:
    def __init__(self, spec: HookSpec, source: ProfileSource | None = None, account_id: int = 0) -> None:
        self.fields = spec.custom_data_fields
        self.source = source
        self.account_id = account_id

    async def profiles(self, events: Sequence[Message]) -> Profiles:
        """The stored profiles of the events' ``profile_id`` (None: deleted), read in one query."""
        ids = {e.profile_id for e in events if e.profile_id is not None}
        if not ids or self.source is None:
            return {}
        stored = await self.source.get_profiles(self.account_id, ids)
        return {pid: load(s) for pid, s in stored.items()}

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
            return event._replace(body=self._from_profile(event.body, found[event.profile_id]))
        if not self.fields:
            return event
        return event._replace(body=self.body(event.body))
