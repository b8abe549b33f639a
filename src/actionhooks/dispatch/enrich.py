"""From a stored event to the message a hook's destination receives.

The stored payload already is the message (the producer's object plus ``id``, ``account_id``, ``is_test``). A hook
with ``custom_data_fields`` receives ``custom_data`` narrowed to those profile fields (fields the event lacks are
left out; an event without ``custom_data`` stays without it). Everything else passes through untouched.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..hooks import HookSpec
from ..integrations.base import Message

_decode = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


class Enricher:
    def __init__(self, spec: HookSpec) -> None:
        self.fields = spec.custom_data_fields

    def body(self, payload: bytes) -> bytes:
        if not self.fields:
            return payload
        message = _decode(payload)
        custom = message.get("custom_data")
        if isinstance(custom, dict):
            message["custom_data"] = {k: custom[k] for k in self.fields if k in custom}
            return _encode(message)
        return payload

    def message(self, event: Message) -> Message:
        if not self.fields:
            return event
        return event._replace(body=self.body(event.body))
