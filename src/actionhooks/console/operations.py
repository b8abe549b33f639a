"""The hook page's operations (issue 13 page 3 on issue 12's API): a replay with its progress (polled by htmx while
it runs) and cancel; the dead letters' redrive and discard (the rows ticked, or all).

They call what the API calls (``api.replays``: ``begin_replay``, ``selection``, the store), with the session's
account, so a refusal carries the API's message; every change is a POST with the session's CSRF token. Without
JavaScript the forms post and the page comes back whole.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import msgspec
from starlette.datastructures import MultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..api.hooks import _changed, parse_id
from ..api.replays import begin_replay, selection
from ..api.schema import Instant, timestamp
from ..catalog import catalog
from ..errors import ApiError
from ..registry import Hook
from ..store.base import SideDelivery, Store


class Pages(Protocol):
    """What the operations use of the console's pages (``views.Console``; not imported: it imports this)."""

    prefix: str

    def render(
        self, request: Request, template: str, status: int = 200, session: Any = None, **context: Any
    ) -> HTMLResponse: ...
    def _store(self, request: Request) -> Store: ...
    async def _signed_in_hook(self, request: Request) -> tuple[Any, Hook] | Response: ...
    async def _change_of_hook(self, request: Request) -> tuple[Any, MultiDict, Hook] | Response: ...
    async def detail(
        self, request: Request, session: Any, hook: Hook, status: int = 200, outcome: Any = None, **shown: Any
    ) -> HTMLResponse: ...


DEFAULT_SPAN_S = 3600  # the form's range: the last hour


def rfc3339(ts: float) -> str:
    return timestamp(ts).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def latest_replay(store: Store, hook_id: int) -> SideDelivery | None:
    """The hook's newest replay (the page shows it)."""
    for side in await store.list_side_deliveries(hook_id, 20):
        if side.kind == "replay":
            return side
    return None


def replay_form(now: float | None = None) -> dict[str, str]:
    now = time.time() if now is None else now
    return {"from": rfc3339(now - DEFAULT_SPAN_S), "to": rfc3339(now)}


async def context(store: Store, hook: Hook) -> dict[str, Any]:
    """What the hook page's operations show: the newest replay, the replay form's values, no error."""
    return {
        "replay": await latest_replay(store, hook.id),
        "replay_types": [catalog().by_code[c] for c in hook.spec.event_types if c in catalog()],
        "replay_values": replay_form(),
        "replay_error": None,
        "letters_note": None,
    }


def _instant(text: str, field: str) -> float:
    try:
        return msgspec.convert(text.strip(), Instant).timestamp()
    except msgspec.ValidationError:
        raise ApiError(422, "an RFC 3339 time with its zone, e.g. 2026-11-30T06:00:00Z", field) from None


class Operations:
    def __init__(self, console: Pages) -> None:
        self.console = console

    def _fragment(self, request: Request, session: Any, hook: Hook, **extra: Any) -> Response:
        return self.console.render(request, "_replay.html", session=session, hook=hook, **extra)

    async def replay_fragment(self, request: Request) -> Response:
        """The replay section alone (polled every second while the replay runs)."""
        found = await self.console._signed_in_hook(request)
        if isinstance(found, Response):
            return found
        session, hook = found
        return self._fragment(request, session, hook, **await context(self.console._store(request), hook))

    async def start_replay(self, request: Request) -> Response:
        change = await self.console._change_of_hook(request)
        if isinstance(change, Response):
            return change
        session, form, hook = change
        store = self.console._store(request)
        values = {"from": str(form.get("from", "")), "to": str(form.get("to", ""))}
        chosen = [str(code) for code in form.getlist("event_types")]
        try:
            from_at = _instant(values["from"], "from")
            to_at = _instant(values["to"], "to")
            await begin_replay(store, hook, from_at, to_at, chosen or None)
        except ApiError as exc:
            shown = {**await context(store, hook), "replay_values": values, "replay_error": exc}
            if request.headers.get("hx-request"):
                return self._fragment(request, session, hook, **shown)
            return await self.console.detail(request, session, hook, 422, **shown)
        await _changed(request)
        return await self._replay_changed(request, session, hook)

    async def _replay_changed(self, request: Request, session: Any, hook: Hook) -> Response:
        """After a replay started or was cancelled: its section again (htmx), or back to the hook's page."""
        if request.headers.get("hx-request"):
            return self._fragment(request, session, hook, **await context(self.console._store(request), hook))
        return RedirectResponse(f"{self.console.prefix}/hooks/{hook.id}#replay", 303)

    async def cancel_replay(self, request: Request) -> Response:
        change = await self.console._change_of_hook(request)
        if isinstance(change, Response):
            return change
        session, _, hook = change
        replay_id = parse_id(request.path_params["replay_id"])
        if replay_id is not None:
            await self.console._store(request).cancel_side_delivery(hook.id, replay_id)
            await _changed(request)
        return await self._replay_changed(request, session, hook)

    async def letters(self, request: Request) -> Response:
        """Redrive or discard (``action`` of the form) the ticked dead letters (``letter``), or all of them."""
        change = await self.console._change_of_hook(request)
        if isinstance(change, Response):
            return change
        _, form, hook = change
        store = self.console._store(request)
        action = str(form.get("action", ""))
        every = action.endswith("_all")
        ids = [parse_id(str(v)) for v in form.getlist("letter")]
        body: dict[str, Any] = {"all": True} if every else {"ids": [i for i in ids if i is not None]}
        try:
            pick = selection(body)
        except ApiError:
            note = {"kind": "none_selected", "n": 0}
        else:
            if action.startswith("redrive"):
                _, n = await store.redrive_dead_letters(hook.id, pick)
                if n:
                    await _changed(request)
                note = {"kind": "redriven", "n": n}
            else:
                note = {"kind": "discarded", "n": await store.discard_dead_letters(hook.id, pick)}
        return RedirectResponse(
            f"{self.console.prefix}/hooks/{hook.id}?letters={note['kind']}&n={note['n']}#dead-letters", 303
        )


def letters_note(request: Request) -> dict[str, Any] | None:
    """The outcome of the last redrive or discard, as the redirect after it says."""
    kind = request.query_params.get("letters")
    if kind not in {"redriven", "discarded", "none_selected"}:
        return None
    n = parse_id(request.query_params.get("n", "0")) or 0
    return {"kind": kind, "n": n}
