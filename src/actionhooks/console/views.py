"""The console's pages: sign-in, hooks, the hook editor, a hook's detail, the catalogue.

Every page needs a signed-in session (:mod:`.session`) except sign-in itself; every change is a POST carrying the
session's CSRF token. A hook is looked up with the session's account, so another account's hook is "not found",
exactly as in the API. Changes go through the same validation as the API (:func:`actionhooks.api.hooks` checks, the
registry, the dispatcher told), so a refusal carries the API's message and ``field``, shown next to that input.
Requests from htmx (``HX-Request``) get the fragment they replace; the same forms work without JavaScript.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

import jinja2
import msgspec
from starlette.datastructures import MultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .. import operational
from ..api.auth import Authenticator
from ..api.hooks import _changed, _secrets_follow, _validated, parse_id
from ..api.responses import read_body
from ..api.sample_event import deliver_sample
from ..catalog import catalog
from ..catalog.samples import sample
from ..catalog.schemas import event_schema
from ..errors import ApiError, ValidationError
from ..hooks import FLAGS, HookSpec
from ..integrations import transport_types
from ..registry import Hook, HookRegistry
from ..stats import hook_stats
from ..store import Store
from ..store.base import HookLag, HookQuery
from . import chart, i18n
from . import form as forms
from . import operations as ops
from .session import CSRF_FIELD, Session, Sessions, account_for_sign_in

PREFIX = "/console"
PAGE_SIZE = 50
LIST_LAG_CAP = 1_000  # the hooks page counts a hook's lag up to this (the detail page's stats: further)
MAX_FORM_BYTES = 256 * 1024
SPEC_CACHE_SIZE = 20_000
_ROW_FIELDS = tuple(name for name in Hook.__struct_fields__ if name != "spec")

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("actionhooks.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _count(value: int) -> str:
    """``12345`` as ``12 345`` (a narrow no-break space groups the digits in both languages)."""
    return f"{value:,}".replace(",", "\u202f")


def _span(seconds: float, labels: Mapping[str, str]) -> str:
    """A duration as a person reads it: ``45 s``, ``12 min``, ``3 h``, ``2 d`` (units from ``labels``)."""
    for unit, size in (("unit.d", 86400), ("unit.h", 3600), ("unit.min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {labels[unit]}"
    return f"{int(seconds)} {labels['unit.s']}"


def _kind(settings: msgspec.Struct) -> str:
    """A transport's ``type`` (the tag of its settings struct)."""
    return str(type(settings).__struct_config__.tag)


def _row_labels(t: i18n.Translate) -> dict[str, str]:
    """The strings of a row of the hooks page (looked up once per page, not per row)."""
    labels = {
        name: t(key)
        for name, key in (
            ("stop", "action.stop"),
            ("resume", "action.resume"),
            ("active", "state.active"),
            ("stopped", "state.stopped"),
            ("all", "database.all"),
            ("none", "none"),
            ("edit", "action.edit"),
            ("clone", "action.clone"),
            ("delete", "action.delete"),
            ("caught_up", "lag.caught_up"),
            ("behind", "lag.behind"),
            ("unit.s", "unit.s"),
            ("unit.min", "unit.min"),
            ("unit.h", "unit.h"),
            ("unit.d", "unit.d"),
        )
    }
    labels.update((kind, t(f"transport.{kind}")) for kind in transport_types())
    return labels


_env.filters["when"] = _when
_env.globals["row_labels"] = _row_labels
_env.filters["kind"] = _kind
_env.filters["count"] = _count
_env.globals["span"] = _span


class Console:
    """The console over the service's parts (``app.state``: store, hooks, auth, context, dispatcher)."""

    prefix = PREFIX

    def __init__(self) -> None:
        self.sessions = Sessions()
        self.operations = ops.Operations(self)  # replay, redrive, discard (operations.py)
        self._unsealed: dict[bytes, Hook] = {}  # sealed settings → the hook unsealed (see ``_list_hooks``)

    # -- plumbing ---------------------------------------------------------------------------------------------

    @staticmethod
    def _state(request: Request) -> Any:
        return request.app.state

    def _store(self, request: Request) -> Store:
        store: Store = self._state(request).store
        return store

    def _hooks(self, request: Request) -> HookRegistry:
        hooks: HookRegistry = self._state(request).hooks
        return hooks

    def _auth(self, request: Request) -> Authenticator:
        auth: Authenticator = self._state(request).auth
        return auth

    def render(
        self,
        request: Request,
        template: str,
        status: int = 200,
        session: Session | None = None,
        **context: Any,
    ) -> HTMLResponse:
        language = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
        page = _env.get_template(template).render(
            t=i18n.translator(language),
            lang=language,
            other_lang="ru" if language == "en" else "en",
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            prefix=PREFIX,
            csrf=session.csrf if session else "",
            signed_in=bool(session and session.account_id is not None),
            csrf_field=CSRF_FIELD,
            **context,
        )
        return HTMLResponse(page, status)

    async def _session(self, request: Request) -> Session | None:
        return await self.sessions.read(request, self._store(request), self._auth(request))

    async def _signed_in(self, request: Request) -> Session | Response:
        """The signed-in session, or the response that sends the browser to sign in."""
        session = await self._session(request)
        if session is not None and session.account_id is not None:
            return session
        target = f"{PREFIX}/sign-in"
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, 303)

    async def _form(self, request: Request) -> MultiDict:
        body = await read_body(request, MAX_FORM_BYTES)
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=5000
            )
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "the form could not be read") from None
        return MultiDict(pairs)

    async def _change(self, request: Request) -> tuple[Session, MultiDict] | Response:
        """A signed-in POST with its form, the CSRF token checked; else the response to give."""
        session = await self._signed_in(request)
        if isinstance(session, Response):
            return session
        try:
            form = await self._form(request)
        except ApiError:
            return self._error(request, session, 400, "error.bad_form")
        if not session.csrf_matches(form.get(CSRF_FIELD)):
            return self._error(request, session, 403, "error.csrf")
        return session, form

    def _error(self, request: Request, session: Session | None, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status, session, message=message)

    async def _own_hook(self, request: Request, session: Session) -> Hook | None:
        assert session.account_id is not None
        hook_id = parse_id(request.path_params["hook_id"])
        if hook_id is None:
            return None
        return await self._hooks(request).get_hook(session.account_id, hook_id)

    async def _change_of_hook(self, request: Request) -> tuple[Session, MultiDict, Hook] | Response:
        """A change (signed in, CSRF checked: ``_change``) to the account's hook of the path, or the response to
        send instead."""
        change = await self._change(request)
        if isinstance(change, Response):
            return change
        session, form = change
        hook = await self._own_hook(request, session)
        if hook is None:
            return self._not_found(request, session)
        return session, form, hook

    async def _signed_in_hook(self, request: Request) -> tuple[Session, Hook] | Response:
        """The signed-in session and its account's hook of the path, or the response to send instead (sign in;
        404 for a hook of no such id in this account)."""
        session = await self._signed_in(request)
        if isinstance(session, Response):
            return session
        hook = await self._own_hook(request, session)
        if hook is None:
            return self._not_found(request, session)
        return session, hook

    def _not_found(self, request: Request, session: Session) -> HTMLResponse:
        return self._error(request, session, 404, "error.not_found")

    # -- sign-in, language ------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/hooks", 303)

    async def sign_in_page(self, request: Request) -> Response:
        session = await self._session(request) or Session.anonymous()
        response = self.render(request, "sign_in.html", session=session, refused=False)
        await self.sessions.write(response, request, self._store(request), session)
        return response

    async def sign_in(self, request: Request) -> Response:
        session = await self._session(request)
        try:
            form = await self._form(request)
        except ApiError:
            form = MultiDict()
        if session is None or not session.csrf_matches(form.get(CSRF_FIELD)):
            fresh = Session.anonymous()
            again = self.render(request, "sign_in.html", 403, fresh, refused=False, expired=True)
            await self.sessions.write(again, request, self._store(request), fresh)
            return again
        allowed = await account_for_sign_in(self._auth(request), str(form.get("key", "")))
        if allowed is None:
            return self.render(request, "sign_in.html", 401, session, refused=True)
        account_id, key_hash = allowed
        signed = Session(Session.anonymous().csrf, account_id, key_hash)  # a new CSRF token with the identity
        response = RedirectResponse(f"{PREFIX}/hooks", 303)
        await self.sessions.write(response, request, self._store(request), signed)
        return response

    async def sign_out(self, request: Request) -> Response:
        change = await self._change(request)
        if isinstance(change, Response):
            return change
        response = RedirectResponse(f"{PREFIX}/sign-in", 303)
        self.sessions.clear(response)
        return response

    async def language(self, request: Request) -> Response:
        language = request.path_params["language"]
        target = request.query_params.get("next", "")
        if not target.startswith(f"{PREFIX}/") or target.startswith("//") or "\\" in target:
            target = f"{PREFIX}/hooks"
        response = RedirectResponse(target, 303)
        if language in i18n.LANGUAGES:
            response.set_cookie(
                i18n.COOKIE, language, max_age=365 * 86400, path=PREFIX, samesite="strict", httponly=True
            )
        return response

    # -- hooks ------------------------------------------------------------------------------------------------

    async def hooks_page(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if isinstance(session, Response):
            return session
        assert session.account_id is not None
        hooks = await self._list_hooks(request, session.account_id)
        return self.render(
            request, "hooks.html", session=session, hooks=hooks, lags=await self._lags(request, hooks)
        )

    async def _lags(self, request: Request, hooks: list[Hook]) -> dict[int, Lag]:
        """Each running hook's lag, counted up to ``LIST_LAG_CAP`` (one read for the page, not one per hook)."""
        running = [h for h in hooks if h.spec.active]
        queries = [
            (HookQuery(h.id, h.account_id, tuple(h.spec.event_types), h.spec.list_id), h.cursor)
            for h in running
        ]
        found = await self._store(request).hook_lags(queries, LIST_LAG_CAP)
        now = time.time()
        return {hook.id: Lag.of(lag, now, LIST_LAG_CAP) for hook, lag in zip(running, found, strict=True)}

    async def _list_hooks(self, request: Request, account_id: int) -> list[Hook]:
        """The account's hooks; settings unsealed once per version (a page of 1 000 hooks would otherwise spend
        most of its time decrypting and parsing settings that have not changed)."""
        registry = self._hooks(request)
        hooks = []
        for stored in await self._store(request).list_hooks(account_id):
            known = self._unsealed.get(stored.settings)
            if known is None:
                if len(self._unsealed) >= SPEC_CACHE_SIZE:
                    self._unsealed.clear()
                hook = self._unsealed[stored.settings] = registry.unseal(stored)
            else:  # the same settings: the row's other fields (state, last error) as they are now
                hook = msgspec.structs.replace(
                    known, **{name: getattr(stored, name) for name in _ROW_FIELDS if hasattr(stored, name)}
                )
            hooks.append(hook)
        return hooks

    async def set_state(self, request: Request) -> Response:
        change = await self._change_of_hook(request)
        if isinstance(change, Response):
            return change
        session, form, hook = change
        assert session.account_id is not None
        active = form.get("active") == "1"
        if hook.spec.active != active:
            spec = msgspec.structs.replace(hook.spec, active=active)
            keep_cursor = active and form.get("from") == "cursor"  # else from now, as the API's PATCH
            updated = await self._hooks(request).update_hook(
                session.account_id, hook.id, spec, keep_cursor=keep_cursor
            )
            if updated is None:
                return self._not_found(request, session)
            hook = updated
            await _changed(request)
        if request.headers.get("hx-request"):
            template = "_hook_row_alone.html" if form.get("view") == "row" else "_state.html"
            lag = (await self._lags(request, [hook])).get(hook.id)
            return self.render(request, template, session=session, hook=hook, lag=lag)
        return RedirectResponse(_back(form, f"{PREFIX}/hooks"), 303)

    async def clone(self, request: Request) -> Response:
        change = await self._change_of_hook(request)
        if isinstance(change, Response):
            return change
        session, _, hook = change
        assert session.account_id is not None
        settings = hook.spec.to_builtins(public=False)
        settings["name"] = f"{hook.spec.name} (copy)"[:200]
        try:
            spec = _validated(request, settings)
        except ApiError as exc:
            return self._error(request, session, exc.status, exc.error)
        await self._hooks(request).create_hook(session.account_id, spec)
        await _changed(request)
        return RedirectResponse(f"{PREFIX}/hooks", 303)

    async def delete_page(self, request: Request) -> Response:
        found = await self._signed_in_hook(request)
        if isinstance(found, Response):
            return found
        session, hook = found
        return self.render(request, "delete.html", session=session, hook=hook)

    async def delete(self, request: Request) -> Response:
        change = await self._change_of_hook(request)
        if isinstance(change, Response):
            return change
        session, _, hook = change
        assert session.account_id is not None
        await self._hooks(request).delete_hook(session.account_id, hook.id)
        await _changed(request)
        return RedirectResponse(f"{PREFIX}/hooks", 303)

    # -- the editor -------------------------------------------------------------------------------------------

    def _editor(
        self,
        request: Request,
        session: Session,
        hook: Hook | None,
        values: Mapping[str, str],
        chosen: list[str],
        error: ApiError | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        stored = hook.spec.to_builtins(public=False)["transport"] if hook else None
        errors: dict[str, str] = {}
        general = ""
        if error is not None:
            name = forms.input_for(error.field, values)
            if name:
                errors[name] = error.error
            else:
                general = error.error
        return self.render(
            request,
            "editor.html",
            status,
            session,
            hook=hook,
            values=values,
            chosen=set(chosen),
            groups=_groups(operational_too=True),
            transports=forms.all_transport_inputs(),
            input_name=forms.input_name,
            secret_set=lambda path: forms.secret_is_set(stored, path),
            filter_kinds=forms.FILTER_KINDS,
            flags=FLAGS,
            excluded=set(values.get(forms.EXCLUDE_FLAGS, "").split(",")),
            errors=errors,
            error=error,
            general_error=general,
        )

    async def new_page(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if isinstance(session, Response):
            return session
        values = {"transport.type": "http", "database": "all"}
        return self._editor(request, session, None, values, [])

    async def edit_page(self, request: Request) -> Response:
        found = await self._signed_in_hook(request)
        if isinstance(found, Response):
            return found
        session, hook = found
        values = forms.form_values(hook.spec.to_builtins(public=True))
        return self._editor(request, session, hook, values, list(hook.spec.event_types))

    async def save(self, request: Request) -> Response:
        change = await self._change(request)
        if isinstance(change, Response):
            return change
        session, form = change
        assert session.account_id is not None
        hook: Hook | None = None
        if "hook_id" in request.path_params:
            hook = await self._own_hook(request, session)
            if hook is None:
                return self._not_found(request, session)
        values = {k: form.get(k, "") for k in form}
        values[forms.EXCLUDE_FLAGS] = ",".join(str(f) for f in form.getlist(forms.EXCLUDE_FLAGS))
        chosen = [code for code in form.getlist("event_types")]
        old = hook.spec.to_builtins(public=False) if hook else None
        try:
            settings, patch = forms.hook_settings(values, chosen, old)
            spec: HookSpec = _validated(request, settings)
            if hook is not None:
                _secrets_follow(hook.spec, spec, patch)
        except ApiError as exc:
            return self._editor(request, session, hook, values, chosen, exc, 422)
        except ValidationError as exc:
            wrong = ApiError(422, exc.message, exc.field)
            return self._editor(request, session, hook, values, chosen, wrong, 422)
        registry = self._hooks(request)
        if hook is None:
            saved = await registry.create_hook(session.account_id, spec)
        else:
            updated = await registry.update_hook(session.account_id, hook.id, spec)
            if updated is None:
                return self._not_found(request, session)
            saved = updated
        await _changed(request)
        return RedirectResponse(f"{PREFIX}/hooks/{saved.id}", 303)

    # -- a hook's detail --------------------------------------------------------------------------------------

    async def detail_page(self, request: Request) -> Response:
        found = await self._signed_in_hook(request)
        if isinstance(found, Response):
            return found
        session, hook = found
        return await self.detail(request, session, hook)

    async def detail(
        self,
        request: Request,
        session: Session,
        hook: Hook,
        status: int = 200,
        outcome: dict[str, Any] | None = None,
        **shown: Any,
    ) -> HTMLResponse:
        """The hook page; ``shown`` overrides the operations' part (:mod:`.operations`: a replay refused)."""
        context = await self._log(request, hook)
        operations = await ops.context(self._store(request), hook)
        operations["letters_note"] = ops.letters_note(request)
        return self.render(
            request,
            "detail.html",
            status,
            session=session,
            hook=hook,
            settings=hook.spec.to_builtins(public=True),
            types=[catalog().by_code[c] for c in hook.spec.event_types if c in catalog()],
            outcome=outcome,
            **context,
            **await self._live(request, hook),
            **{**operations, **shown},
        )

    async def _log(self, request: Request, hook: Hook) -> dict[str, Any]:
        store = self._store(request)
        attempts_before = _cursor(request.query_params.get("attempts_before"))
        letters_before = _cursor(request.query_params.get("letters_before"))
        attempts = await store.list_attempts(hook.id, PAGE_SIZE, attempts_before)
        letters = await store.list_dead_letters(hook.id, PAGE_SIZE, letters_before)
        return {
            "attempts": attempts,
            "attempts_before": attempts_before,
            "attempts_more": len(attempts) == PAGE_SIZE,
            "letters": letters,
            "letters_before": letters_before,
            "letters_more": len(letters) == PAGE_SIZE,
        }

    async def attempts_fragment(self, request: Request) -> Response:
        """The delivery log alone (polled by the detail page while it shows the newest attempts)."""
        found = await self._signed_in_hook(request)
        if isinstance(found, Response):
            return found
        session, hook = found
        context = await self._log(request, hook)
        return self.render(request, "_attempts.html", session=session, hook=hook, **context)

    async def live_fragment(self, request: Request) -> Response:
        """The hook's state, lag and throughput chart (polled by the detail page every few seconds)."""
        found = await self._signed_in_hook(request)
        if isinstance(found, Response):
            return found
        session, hook = found
        return self.render(
            request, "_live.html", session=session, hook=hook, **await self._live(request, hook)
        )

    async def _live(self, request: Request, hook: Hook) -> dict[str, Any]:
        store = self._store(request)
        now = time.time()
        language = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
        t = i18n.translator(language)
        periods = await store.delivery_periods(hook.id, now - chart.WINDOW_S)
        return {
            "stats": await hook_stats(store, hook, now),
            "chart": chart.throughput(periods, now, (t("chart.delivered"), t("chart.failed"))),
            "units": _row_labels(t),
        }

    async def test_event(self, request: Request) -> Response:
        change = await self._change_of_hook(request)
        if isinstance(change, Response):
            return change
        session, form, hook = change
        assert session.account_id is not None
        code = str(form.get("event_type") or "") or None
        try:
            outcome = await deliver_sample(hook, session.account_id, code, self._state(request).context)
            result: dict[str, Any] = {
                "delivered": outcome.delivered,
                "status": outcome.status,
                "latency_ms": outcome.latency_ms,
                "response": outcome.response_excerpt,
                "error": outcome.error,
                "event": _pretty(bytes(outcome.event)),
            }
        except ApiError as exc:
            result = {"delivered": False, "status": None, "latency_ms": None, "response": None}
            result.update(error=exc.error, event="")
        if request.headers.get("hx-request"):
            return self.render(request, "_test_result.html", session=session, outcome=result)
        return await self.detail(request, session, hook, outcome=result)

    # -- the catalogue ----------------------------------------------------------------------------------------

    async def catalog_page(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if isinstance(session, Response):
            return session
        return self.render(request, "catalog.html", session=session, groups=_groups())

    async def event_type_page(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if isinstance(session, Response):
            return session
        event_type = catalog().get(request.path_params["code"])
        if event_type is None:
            return self._not_found(request, session)
        return self.render(
            request,
            "event_type.html",
            session=session,
            type=event_type,
            schema=json.dumps(event_schema(event_type.code), indent=2, ensure_ascii=False),
            sample=json.dumps(sample(event_type.code, 1), indent=2, ensure_ascii=False),
        )


class Lag(NamedTuple):
    """A hook's lag as the hooks page shows it: events waiting (``capped``: at least that many) and the age of the
    oldest of them."""

    events: int
    seconds: float
    capped: bool

    @classmethod
    def of(cls, lag: HookLag, now: float, cap: int) -> Lag:
        age = max(0.0, now - lag.oldest_received_at) if lag.oldest_received_at is not None else 0.0
        return cls(lag.events, age, lag.events >= cap)


def _groups(*, operational_too: bool = False) -> list[tuple[str, list[Any]]]:
    """The catalogue's groups in order, each with its event types (then the operational events' group, for the
    hook editor)."""
    out: dict[str, list[Any]] = {}
    for t in catalog().types:
        out.setdefault(t.group, []).append(t)
    if operational_too:
        out[operational.GROUP] = list(operational.OPERATIONAL_TYPES)
    return list(out.items())


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value < 2**63 else None


def _back(form: Mapping[str, Any], default: str) -> str:
    target = str(form.get("next", ""))
    return target if target.startswith(f"{PREFIX}/") and not target.startswith("//") else default


def _pretty(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", "replace")
