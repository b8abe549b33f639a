"""The published contract: ``GET /openapi.json`` (OpenAPI 3.1) and the reference page ``GET /docs``.

Schemas are generated with ``msgspec.json.schema_components`` (JSON Schema 2020-12, OpenAPI 3.1's dialect) from
the types the handlers use: the answers of ``schema.py``, the event envelope ``events.Envelope``, the hook settings
(``hooks.parse_hook``'s input with the transports' ``Settings`` as ``transport``). What this module adds is what the
types cannot say: the operations, their status codes, headers and links, and the checks ingest and hook validation
make in code (``event_data`` is an object; event types come from the catalogue). ``tests/test_openapi.py`` fails
when a route is missing here, or an operation here has no route.

``/docs`` is Swagger UI from the ``swagger-ui-bundle-v2`` package, served from the installed files (no CDN).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from .. import __version__
from ..capture.tokens import TokenRequest
from ..catalog import catalog
from ..events import Envelope
from ..hooks import _HookInput
from ..operational import OPERATIONAL_CODES
from ..profiles import Profile, ProfileItem
from ..store.base import SCOPES, Scope
from .auth import allows
from .schema import (
    AccountPatch,
    AccountView,
    AttemptList,
    DeadLetterList,
    DeadLetterSelector,
    Discarded,
    ErrorBody,
    EventTypeList,
    Health,
    HookList,
    HookStatsView,
    HookView,
    IngestResult,
    KeyCreated,
    KeyList,
    KeyView,
    NewKey,
    ProfileUpsertResult,
    ProfileView,
    ReadinessView,
    Redriven,
    ReplayRequest,
    ReplayView,
    ResumeOptions,
    TestOptions,
    TestOutcome,
    TrackingKeySecret,
    TrackingToken,
    TransportChoice,
)
from .tracking import Collected

HookSettings = _HookInput
"""The body of ``POST /v1/hooks`` as ``hooks.parse_hook`` decodes it (its ``transport`` then by the transport's
own ``Settings``)."""

_REF = "#/components/schemas/{name}"
_TYPES: dict[str, Any] = {
    "ErrorBody": ErrorBody,
    "Health": Health,
    "Readiness": ReadinessView,
    "EventTypeList": EventTypeList,
    "Event": Envelope,
    "IngestResult": IngestResult,
    "HookSettings": HookSettings,
    "Transport": TransportChoice,
    "Hook": HookView,
    "HookList": HookList,
    "AttemptList": AttemptList,
    "DeadLetterList": DeadLetterList,
    "HookStats": HookStatsView,
    "TestOptions": TestOptions,
    "ResumeOptions": ResumeOptions,
    "ReplayRequest": ReplayRequest,
    "Replay": ReplayView,
    "DeadLetterSelector": DeadLetterSelector,
    "Redriven": Redriven,
    "Discarded": Discarded,
    "TestOutcome": TestOutcome,
    "Profile": Profile,
    "ProfileItem": ProfileItem,
    "ProfileView": ProfileView,
    "ProfileUpsertResult": ProfileUpsertResult,
    "Account": AccountView,
    "AccountPatch": AccountPatch,
    "TrackingKeySecret": TrackingKeySecret,
    "TrackingTokenRequest": TokenRequest,
    "TrackingToken": TrackingToken,
    "Collected": Collected,
    "NewKey": NewKey,
    "Key": KeyView,
    "KeyCreated": KeyCreated,
    "KeyList": KeyList,
}

EVENT_EXAMPLE: dict[str, Any] = {
    "event_type": "deliv",
    "event_date": "2024-05-01T12:00:00.123456789+03:00",
    "id": "crm-42-deliv-1",
    "list_id": 1,
    "profile_id": "780a1a1a98e34ceb0381fff7",
    "event_data": {"message_id": 292, "campaign_id": 1835, "segment_id": 0, "resource_id": 9},
    "custom_data": {"email": "anna@example.com"},
}
HOOK_EXAMPLE: dict[str, Any] = {
    "name": "CRM",
    "event_types": ["deliv", "open", "click"],
    "list_id": 1,
    "filters": {"campaign_ids": [1835]},
    "transport": {"type": "http", "url": "https://crm.example.com/hooks/actionhooks", "max_batch_size": 100},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def _error(description: str, headers: dict[str, Any] | None = None, example: str = "") -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": _json(_ref("ErrorBody"), {"error": example} if example else None),
    }
    if headers:
        answer["headers"] = headers
    return answer


def _answer(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _json(schema), **extra}


E400 = _error("the body is not JSON", example="body is not valid JSON: …")
E401 = _error(
    "missing, malformed or unknown API key",
    {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    "invalid API key",
)
E403 = _error(
    "the key's scope does not allow this call: it needs an `admin` key",
    example="this key's scope is ingest: it may only send events (POST /v1/events); this call needs an admin key",
)
E404 = _error("no such hook in this account (another account's hook too)", example="no such hook")
E404_KEY = _error("no such key in this account (another account's key too)", example="no such key")
E413 = _error("the body is over the size limit", example="body larger than 1048576 bytes")
E422 = _error("invalid settings or parameters; `field` names the culprit as a dotted path")
E503 = _error(
    "an internal failure (the database unreachable): nothing was done or it is safe to retry",
    _RETRY_AFTER,
    "the service could not complete the request; retry",
)

HOOK_ID = {
    "name": "hook_id",
    "in": "path",
    "required": True,
    "description": "the hook's id",
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
REPLAY_ID = {
    "name": "replay_id",
    "in": "path",
    "required": True,
    "description": "the replay's id",
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
PAGING = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "at most this many, newest first",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    {
        "name": "before",
        "in": "query",
        "required": False,
        "description": "only those with a smaller `id` (the last `id` of the previous page)",
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    },
]
HOOK_LINKS = {
    name: {"operationId": operation, "parameters": {"hook_id": "$response.body#/id"}}
    for name, operation in [
        ("GetHook", "getHook"),
        ("PatchHook", "patchHook"),
        ("TestHook", "testHook"),
        ("CloneHook", "cloneHook"),
        ("ResumeHook", "resumeHook"),
        ("ListAttempts", "listAttempts"),
        ("ListDeadLetters", "listDeadLetters"),
        ("RedriveDeadLetters", "redriveDeadLetters"),
        ("StartReplay", "startReplay"),
        ("GetHookStats", "getHookStats"),
        ("DeleteHook", "deleteHook"),
    ]
}
_LOCATION = {"Location": {"description": "the new hook's path", "schema": {"type": "string"}}}
KEY_ID = {
    "name": "key_id",
    "in": "path",
    "required": True,
    "description": "the key's id (not the key itself)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
KEY_LINKS = {"RevokeKey": {"operationId": "revokeKey", "parameters": {"key_id": "$response.body#/id"}}}
SCOPE_NOTE = {
    "admin": "Needs an `admin` key.",
    "ingest": "Any key: an `ingest` or an `admin` key.",
}
"""What each operation's description says of the scope it needs (its ``security`` says it too)."""


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[int, dict[str, Any]],
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    public: bool = False,
    scope: Scope = "admin",
) -> dict[str, Any]:
    """One operation; unless ``public``, it needs a key whose scope allows ``scope`` (``auth.allows``): its
    ``security`` names the scopes that do (as the roles of the ``apiKey`` scheme) and an ``admin`` one answers
    ``403`` to a narrower key."""
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    else:
        op["description"] = SCOPE_NOTE[scope]
        op["security"] = [{"apiKey": [granted]} for granted in SCOPES if allows(granted, scope)]
        responses = {**responses, 401: E401, 503: E503}
        if scope == "admin":
            responses[403] = E403
    op["responses"] = {str(status): answer for status, answer in sorted(responses.items())}
    return op


PROFILE_ID = {
    "name": "profile_id",
    "in": "path",
    "required": True,
    "description": "the profile's id",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}
TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "a tracking token (docs/capture.md#tokens)",
    "schema": {"type": "string"},
}
E404_PROFILE = _error("no such profile (or it was deleted)", example="no such profile")
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": {"description": "`*`", "schema": {"type": "string"}},
}


def _capture_operations() -> dict[str, dict[str, dict[str, Any]]]:
    view = _answer("the profile", _ref("ProfileView"))
    json_body = {"required": True, "content": _json(_ref("Profile"))}
    return {
        "/v1/profiles": {
            "post": _operation(
                "upsertProfiles",
                "Upsert profiles in bulk: a JSON array or NDJSON of profiles with their `profile_id`",
                "profiles",
                {
                    200: _answer("the valid profiles were written", _ref("ProfileUpsertResult")),
                    400: _answer(
                        "no profile was valid, or the body is not JSON",
                        {"anyOf": [_ref("ProfileUpsertResult"), _ref("ErrorBody")]},
                    ),
                    413: E413,
                },
                body={
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"type": "array", "items": _ref("ProfileItem")}},
                        "application/x-ndjson": {
                            "schema": {"type": "string", "description": "one profile object per line"}
                        },
                    },
                },
            )
        },
        "/v1/profiles/{profile_id}": {
            "get": _operation(
                "getProfile",
                "Read a profile",
                "profiles",
                {200: view, 404: E404_PROFILE},
                parameters=[PROFILE_ID],
            ),
            "put": _operation(
                "putProfile",
                "Replace a profile (create it when new)",
                "profiles",
                {200: view, 400: E400, 404: E404_PROFILE, 413: E413, 422: E422},
                body=json_body,
                parameters=[PROFILE_ID],
            ),
            "patch": _operation(
                "patchProfile",
                "Change a profile with a JSON Merge Patch (create it when new)",
                "profiles",
                {200: view, 400: E400, 404: E404_PROFILE, 413: E413, 422: E422},
                body={"required": True, "content": _json({"type": "object"})},
                parameters=[PROFILE_ID],
            ),
            "delete": _operation(
                "deleteProfile",
                "Erase a profile's data; a tombstone stays, so later messages carry `custom_data: null`",
                "profiles",
                {204: {"description": "erased"}, 404: E404_PROFILE},
                parameters=[PROFILE_ID],
            ),
        },
        "/v1/account": {
            "get": _operation(
                "getAccount",
                "The account's settings",
                "account",
                {200: _answer("the settings", _ref("Account"))},
            ),
            "patch": _operation(
                "patchAccount",
                "Change the account's settings (`derive`: derived events on or off)",
                "account",
                {200: _answer("the settings", _ref("Account")), 400: E400, 413: E413, 422: E422},
                body={"required": True, "content": _json(_ref("AccountPatch"))},
            ),
        },
        "/v1/account/tracking-keys": {
            "post": _operation(
                "createTrackingKey",
                "Make a new tracking key: it signs new tokens, older unretired keys still verify",
                "account",
                {201: _answer("the key, shown only now", _ref("TrackingKeySecret"))},
            )
        },
        "/v1/account/tracking-keys/{key_id}": {
            "delete": _operation(
                "retireTrackingKey",
                "Retire a tracking key: tokens it signed stop verifying",
                "account",
                {204: {"description": "retired"}, 404: _error("no such tracking key")},
                parameters=[
                    {
                        "name": "key_id",
                        "in": "path",
                        "required": True,
                        "description": "the key's id",
                        "schema": {"type": "string"},
                    }
                ],
            )
        },
        "/v1/tracking-tokens": {
            "post": _operation(
                "makeTrackingToken",
                "Mint a tracking token and its open pixel and click URLs",
                "tracking",
                {
                    201: _answer("the token and its URLs", _ref("TrackingToken")),
                    400: E400,
                    413: E413,
                    422: E422,
                },
                body={"required": True, "content": _json(_ref("TrackingTokenRequest"))},
            )
        },
        "/t/open/{token}": {
            "get": _operation(
                "openPixel",
                "The open pixel: records the open (+ derived events) of a valid token; always a 1×1 GIF",
                "tracking",
                {
                    200: {
                        "description": "a 1×1 transparent GIF, whatever the token",
                        "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
                    }
                },
                parameters=[TOKEN],
                public=True,
            )
        },
        "/t/dwell/{token}": {
            "get": _operation(
                "dwellPixel",
                "The open pixel measuring dwell: an animated 1×1 GIF streamed until the client drops it (at most"
                " 10 s); then records the open with event_data.dwell_s (+ derived events: glanced, skimmed or read)",
                "tracking",
                {
                    200: {
                        "description": "an animated 1×1 transparent GIF, a frame a second; a plain one for a bad"
                        " token",
                        "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
                    }
                },
                parameters=[TOKEN],
                public=True,
            )
        },
        "/t/click/{token}": {
            "get": _operation(
                "clickRedirect",
                "The click link: records the click (+ derived events) and redirects to the token's link",
                "tracking",
                {
                    302: {
                        "description": "to the link signed inside the token",
                        "headers": {"Location": {"description": "the link", "schema": {"type": "string"}}},
                    },
                    400: _error(
                        "a malformed, unsigned or tampered token: nothing recorded",
                        example="invalid tracking link",
                    ),
                },
                parameters=[TOKEN],
                public=True,
            )
        },
        "/t/collector.js": {
            "get": _operation(
                "collectorScript",
                "The site pixel and popup collector script",
                "tracking",
                {
                    200: {
                        "description": "JavaScript, no build step",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    }
                },
                public=True,
            )
        },
        "/t/collect/{token}": {
            "post": _operation(
                "collectSiteEvent",
                "What the collector script sends: `pixel_open` and `popup_*` of a site token (CORS: any origin)",
                "tracking",
                {
                    204: {"description": "recorded", "headers": _CORS_HEADERS},
                    400: _error("an invalid site token or body"),
                    413: E413,
                    422: E422,
                    429: _error("too many events from this visitor", _RETRY_AFTER),
                    503: E503,
                },
                body={
                    "required": True,
                    "content": {
                        "text/plain": {
                            "schema": {"type": "string", "description": "a `Collected` object as JSON"}
                        },
                        "application/json": {"schema": _ref("Collected")},
                    },
                },
                parameters=[TOKEN],
                public=True,
            ),
        },
    }


def _operations() -> dict[str, dict[str, dict[str, Any]]]:
    return {**_service_operations(), **_capture_operations()}


def _service_operations() -> dict[str, dict[str, dict[str, Any]]]:
    hook = _ref("Hook")
    created = _answer("the hook, created", hook, headers=_LOCATION, links=HOOK_LINKS)
    return {
        "/healthz": {
            "get": _operation(
                "health",
                "Liveness",
                "service",
                {200: _answer("the service runs", _ref("Health"))},
                public=True,
            )
        },
        "/readyz": {
            "get": _operation(
                "readiness",
                "Readiness: whether this process should be sent work — its store reachable and migrated, its "
                "dispatcher running (in a process that runs one), and any other part's check",
                "service",
                {
                    200: _answer("every check answers `ok`", _ref("Readiness")),
                    503: _answer(
                        "a check is failing: `status` is `not_ready` and that check's answer says why",
                        _ref("Readiness"),
                        headers=_RETRY_AFTER,
                    ),
                },
                public=True,
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics (text exposition format); no API key: keep it off the public network",
                "service",
                {
                    200: {
                        "description": "the process's counters and the database's state",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                public=True,
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                "service",
                {200: _answer("OpenAPI 3.1", {"type": "object"})},
                public=True,
            )
        },
        "/docs": {
            "get": _operation(
                "docs",
                "The API reference page (Swagger UI, served from the installed package)",
                "service",
                {
                    200: {
                        "description": "an HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                public=True,
            )
        },
        "/v1/events": {
            "post": _operation(
                "sendEvents",
                "Send events: one object, a JSON array or NDJSON; the valid ones are committed before the answer",
                "events",
                {
                    202: _answer(
                        "at least one event was valid and is committed; `errors` names the invalid ones by index",
                        _ref("IngestResult"),
                    ),
                    400: _answer(
                        "no event was valid (`IngestResult` with `accepted: 0`), or the body is not JSON or holds "
                        "no event (`ErrorBody`)",
                        {"anyOf": [_ref("IngestResult"), _ref("ErrorBody")]},
                    ),
                    413: _error("the body or its number of events is over the limit"),
                    429: _error(
                        "too many events wait to be committed; retry after `Retry-After` seconds",
                        _RETRY_AFTER,
                        "too many events waiting to be committed; retry shortly",
                    ),
                },
                scope="ingest",
                body={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"anyOf": [_ref("Event"), {"type": "array", "items": _ref("Event")}]},
                            "example": [EVENT_EXAMPLE],
                        },
                        "application/x-ndjson": {
                            "schema": {"type": "string", "description": "one event object per line"},
                            "example": msgspec.json.encode(EVENT_EXAMPLE).decode() + "\n",
                        },
                    },
                },
            )
        },
        "/v1/event-types": {
            "get": _operation(
                "listEventTypes",
                "The event types of the catalogue",
                "events",
                {200: _answer("the catalogue, in order", _ref("EventTypeList"))},
            )
        },
        "/v1/hooks": {
            "post": _operation(
                "createHook",
                "Create a hook; it starts at the log head (events from now on)",
                "hooks",
                {201: created, 400: E400, 413: E413, 422: E422},
                body={"required": True, "content": _json(_ref("HookSettings"), HOOK_EXAMPLE)},
            ),
            "get": _operation(
                "listHooks", "The account's hooks", "hooks", {200: _answer("the hooks", _ref("HookList"))}
            ),
        },
        "/v1/hooks/{hook_id}": {
            "get": _operation(
                "getHook",
                "One hook",
                "hooks",
                {200: _answer("the hook", hook), 404: E404},
                parameters=[HOOK_ID],
            ),
            "patch": _operation(
                "patchHook",
                'Edit a hook with a JSON Merge Patch (RFC 7386); `"***"` keeps a secret as it is',
                "hooks",
                {200: _answer("the hook, edited", hook), 400: E400, 404: E404, 413: E413, 422: E422},
                parameters=[HOOK_ID],
                body={
                    "required": True,
                    "content": {
                        media: {
                            "schema": _ref("HookPatch"),
                            "example": {"active": False, "filters": {"campaign_ids": None}},
                        }
                        for media in ("application/merge-patch+json", "application/json")
                    },
                },
            ),
            "delete": _operation(
                "deleteHook",
                "Delete a hook, its attempts and dead letters",
                "hooks",
                {204: {"description": "deleted"}, 404: E404},
                parameters=[HOOK_ID],
            ),
        },
        "/v1/hooks/{hook_id}/clone": {
            "post": _operation(
                "cloneHook",
                'Copy a hook as "… (copy)"; an optional body is a merge patch over the copy',
                "hooks",
                {201: created, 400: E400, 404: E404, 413: E413, 422: E422},
                parameters=[HOOK_ID],
                body={"required": False, "content": _json(_ref("HookPatch"), {"name": "CRM (staging)"})},
            )
        },
        "/v1/hooks/{hook_id}/resume": {
            "post": _operation(
                "resumeHook",
                "Start a stopped hook again: from its cursor (where it stopped) or from now; a running hook is left"
                " as it is",
                "hooks",
                {200: _answer("the hook, running", hook), 400: E400, 404: E404, 413: E413, 422: E422},
                parameters=[HOOK_ID],
                body={"required": True, "content": _json(_ref("ResumeOptions"), {"from": "cursor"})},
            )
        },
        "/v1/hooks/{hook_id}/test": {
            "post": _operation(
                "testHook",
                "Send one sample event through the hook now (not logged, no retry) and report the outcome",
                "hooks",
                {
                    200: _answer("the outcome, delivered or not", _ref("TestOutcome")),
                    400: E400,
                    404: E404,
                    413: E413,
                    422: _error("`event_type` is not one of the hook's event types"),
                },
                parameters=[HOOK_ID],
                body={"required": False, "content": _json(_ref("TestOptions"), {"event_type": "deliv"})},
            )
        },
        "/v1/hooks/{hook_id}/attempts": {
            "get": _operation(
                "listAttempts",
                "Delivery attempts of a hook, newest first",
                "hooks",
                {200: _answer("a page of attempts", _ref("AttemptList")), 404: E404, 422: E422},
                parameters=[HOOK_ID, *PAGING],
            )
        },
        "/v1/hooks/{hook_id}/dead-letters": {
            "get": _operation(
                "listDeadLetters",
                "Events given up on, newest first",
                "hooks",
                {200: _answer("a page of dead letters", _ref("DeadLetterList")), 404: E404, 422: E422},
                parameters=[HOOK_ID, *PAGING],
            )
        },
        "/v1/hooks/{hook_id}/dead-letters/redrive": {
            "post": _operation(
                "redriveDeadLetters",
                "Send dead letters again, in their original order: `ids` or `all`, narrowed by `reason` and"
                " `failed_after` / `failed_before`",
                "hooks",
                {
                    202: _answer("how many were queued", _ref("Redriven")),
                    400: E400,
                    404: E404,
                    413: E413,
                    422: E422,
                },
                parameters=[HOOK_ID],
                body={"required": True, "content": _json(_ref("DeadLetterSelector"), {"all": True})},
            )
        },
        "/v1/hooks/{hook_id}/dead-letters/discard": {
            "post": _operation(
                "discardDeadLetters",
                "Remove dead letters for good (the same selectors as a redrive)",
                "hooks",
                {
                    200: _answer("how many were removed", _ref("Discarded")),
                    400: E400,
                    404: E404,
                    413: E413,
                    422: E422,
                },
                parameters=[HOOK_ID],
                body={"required": True, "content": _json(_ref("DeadLetterSelector"), {"ids": [311, 312]})},
            )
        },
        "/v1/hooks/{hook_id}/replays": {
            "post": _operation(
                "startReplay",
                "Send the hook again the events it matches that were accepted in `[from, to)`, marked"
                " `Actionhooks-Replay`",
                "hooks",
                {
                    202: _answer("the replay, running", _ref("Replay")),
                    400: E400,
                    404: E404,
                    409: _error(
                        "another replay of the hook is running",
                        example="the hook has a replay running: wait for it or cancel it",
                    ),
                    413: E413,
                    422: _error(
                        "bad range or types; `field: from` when retention removed part of the range",
                        example="events accepted up to 2026-11-23T06:00:00+00:00 were removed by retention:"
                        " replay from a later time",
                    ),
                },
                parameters=[HOOK_ID],
                body={
                    "required": True,
                    "content": _json(
                        _ref("ReplayRequest"), {"from": "2026-11-30T06:00:00Z", "to": "2026-11-30T07:00:00Z"}
                    ),
                },
            )
        },
        "/v1/hooks/{hook_id}/replays/{replay_id}": {
            "get": _operation(
                "getReplay",
                "A replay and its progress",
                "hooks",
                {200: _answer("the replay", _ref("Replay")), 404: E404},
                parameters=[HOOK_ID, REPLAY_ID],
            ),
            "delete": _operation(
                "cancelReplay",
                "Cancel a running replay (one already ended is returned as it is)",
                "hooks",
                {200: _answer("the replay, cancelled", _ref("Replay")), 404: E404},
                parameters=[HOOK_ID, REPLAY_ID],
            ),
        },
        "/v1/hooks/{hook_id}/stats": {
            "get": _operation(
                "getHookStats",
                "A hook's deliveries over the last minute, hour and day, its lag and its state",
                "hooks",
                {200: _answer("the hook's stats", _ref("HookStats")), 404: E404},
                parameters=[HOOK_ID],
            ),
        },
        "/v1/keys": {
            "post": _operation(
                "createKey",
                "Create an API key of this account; the answer is the only time its secret is shown",
                "keys",
                {
                    201: _answer("the key, with its secret `api_key`", _ref("KeyCreated"), links=KEY_LINKS),
                    400: E400,
                    413: E413,
                    422: E422,
                },
                body={"required": True, "content": _json(_ref("NewKey"), {"name": "crm", "scope": "ingest"})},
            ),
            "get": _operation(
                "listKeys",
                "The account's API keys, revoked ones included (never their secrets)",
                "keys",
                {200: _answer("the keys, oldest first", _ref("KeyList"))},
            ),
        },
        "/v1/keys/{key_id}": {
            "delete": _operation(
                "revokeKey",
                "Revoke an API key: it stops working in every process within `ACTIONHOOKS_KEY_CACHE_S` seconds",
                "keys",
                {
                    200: _answer("the key, revoked (it stays in the list)", _ref("Key")),
                    404: E404_KEY,
                    409: _error(
                        "the key is the one making the call, or the account's last live admin key",
                        example="a key cannot revoke itself: revoke it with another admin key",
                    ),
                },
                parameters=[KEY_ID],
            )
        },
    }


def _components() -> dict[str, Any]:
    tops, found = msgspec.json.schema_components(list(_TYPES.values()), ref_template=_REF)
    # msgspec names a component after its class (qualified when two classes share a name); publish these names
    renames: dict[str, str] = {}
    for name, top in zip(_TYPES, tops, strict=True):
        if "$ref" in top:
            renames[top["$ref"]] = _REF.format(name=name)
        else:  # the transport union: its own component, members named after their tags
            found[name] = top
    members = found["Transport"]["anyOf"]
    for member, ref in zip(TransportChoice.__args__, members, strict=True):
        tag = str(member.__struct_config__.tag)
        renames[ref["$ref"]] = _REF.format(name="".join(p.title() for p in tag.split("_")) + "Transport")
    text = msgspec.json.encode(found).decode()
    for old, new in renames.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    schemas: dict[str, Any] = {}
    for name, schema in msgspec.json.decode(text).items():
        new_name = renames.get(_REF.format(name=name), _REF.format(name=name)).rsplit("/", 1)[1]
        schemas[new_name] = {**schema, "title": new_name} if "title" in schema else schema
    _refine(schemas)
    return {
        "schemas": dict(sorted(schemas.items())),
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key (`ah_…`) of one account: `Authorization: Bearer <key>`. Its scope "
                "is `ingest` (send events only) or `admin` (everything); each operation's `security` names the "
                "scopes it accepts.",
            }
        },
    }


def _refine(schemas: dict[str, Any]) -> None:
    """What the handlers check in code beyond the types: known event types, objects kept raw, merge patches."""
    codes = {"type": "string", "enum": list(catalog().codes)}
    event = schemas["Event"]["properties"]
    event["event_type"] = {**codes, "description": "a code of the catalogue (`GET /v1/event-types`)"}
    event["event_data"] = {"type": "object", "description": "the event's attributes, passed on as sent"}
    event["custom_data"] = {
        "anyOf": [{"type": "object"}, {"type": "null"}],
        "description": "profile fields, passed on as sent (a hook's `custom_data_fields` may narrow them)",
    }
    settings = schemas["HookSettings"]
    settings["properties"]["event_types"]["items"] = {
        "type": "string",
        "enum": [*catalog().codes, *OPERATIONAL_CODES],
        "description": "a code of the catalogue, or an operational event (`hook.disabled`, `hook.recovered`,"
        " `hook.dead_lettered`: docs/delivery.md#operational-events)",
    }
    settings["properties"]["transport"] = _ref("Transport")
    schemas["HookPatch"] = {
        "title": "HookPatch",
        "description": "JSON Merge Patch (RFC 7386) over the hook's settings: a field replaces, an object merges, "
        '`null` removes (back to the default); `"***"` keeps a secret as stored',
        "type": "object",
        "properties": {
            name: {
                "anyOf": [{"type": "object"} if name in ("transport", "filters") else prop, {"type": "null"}]
            }
            for name, prop in settings["properties"].items()
        },
    }
    for view in ("TestOutcome",):
        schemas[view]["properties"]["event"] = {"type": "object", "description": "the message as sent"}
    letter = schemas["DeadLetterView"]["properties"]
    letter["event"] = {"type": "object", "description": "the stored message"}


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of this version of the service."""
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "actionhooks",
            "version": __version__,
            "description": "Ingest a marketing platform's events into a durable log and deliver them to hooks "
            '(HTTP, RabbitMQ, Kafka, NATS). Errors are `{"error", "field"}`; no input makes the service '
            "answer 5xx — an internal failure answers `503` with `Retry-After`.",
        },
        "security": [{"apiKey": []}],
        "tags": [
            {"name": "events", "description": "ingest and the catalogue"},
            {"name": "hooks", "description": "where events go"},
            {"name": "profiles", "description": "recipients' data for enrichment at delivery"},
            {"name": "account", "description": "the account's settings and tracking keys"},
            {"name": "tracking", "description": "tokens and the public capture endpoints"},
            {"name": "keys", "description": "the account's API keys and their scopes"},
            {"name": "service", "description": "health and this document"},
        ],
        "paths": _operations(),
        "components": _components(),
    }


@functools.cache
def _document_json() -> bytes:
    return msgspec.json.encode(document())


async def openapi_json(request: Request) -> Response:
    return Response(_document_json(), media_type="application/json")


DOCS_ASSETS = "/docs/assets"
"""Where the Swagger UI files are mounted (``assets()``)."""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>actionhooks API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""


async def docs_page(request: Request) -> Response:
    """Swagger UI: relative links, so the page works under any path prefix; no file comes from the network."""
    return HTMLResponse(_PAGE)


def assets() -> StaticFiles:
    return StaticFiles(directory=Path(str(swagger_ui_path)))
