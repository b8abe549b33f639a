"""Tracking routes (docs/capture.md): ``POST /v1/tracking-tokens`` (API key) mints a token; the public endpoints
take a signed token instead of an API key.

- ``GET /t/open/{token}``: a 1×1 GIF, always (a bad token or a failure records nothing but still answers the GIF);
  records the token channel's open.
- ``GET /t/dwell/{token}``: the open pixel that measures how long the message stays open (capture/dwell.py): an
  animated GIF streamed until the client drops it (at most ``dwell.MAX_S``); records the open with
  ``event_data.dwell_s`` once the stream ends (so ``glanced`` / ``skimmed`` / ``read`` derive from it).
- ``GET /t/click/{token}``: ``302`` to the link inside the token only; a malformed, unsigned or tampered token,
  or one without a link, answers ``400`` and records nothing (no open redirect). Records the channel's click.
- ``GET /t/collector.js``: the site pixel and popup collector script (no build step).
- ``POST /t/collect/{token}``: what the script sends (a site token: channel ``site``); a ``text/plain`` body (a
  CORS "simple" request: no preflight), answered with ``Access-Control-Allow-Origin: *`` (the token says whose
  events they are); rate-limited per visitor and IP address; ``204``.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..capture import dwell, record, visitor
from ..capture.geo import GeoLocator
from ..capture.tokens import Claims, TokenRequest, TrackingKeys
from ..errors import ApiError, BadToken, StoreUnavailable
from ..events import NewEvent
from .responses import json_response, read_typed
from .schema import TrackingToken

log = logging.getLogger(__name__)

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_STORE = {"Cache-Control": "no-store, max-age=0"}
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
VISITOR_RATE = 30  # events a visitor may send per minute through the collector
ADDRESS_RATE = 300  # events one IP address may send per minute (visitor ids are the browser's to choose)
SITE_TYPES = (
    "pixel_open",
    "popup_open",
    "popup_click",
    "popup_post",
    "popup_close",
    "popup_error",
    "popup_bounce",
    "popup_custom",
)
Short = Annotated[str, msgspec.Meta(max_length=2048)]


class Collected(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What ``collector.js`` posts."""

    event_type: Literal[
        "pixel_open",
        "popup_open",
        "popup_click",
        "popup_post",
        "popup_close",
        "popup_error",
        "popup_bounce",
        "popup_custom",
    ]
    visitor_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    url: Short | None = None
    referrer: Short | None = None
    params: Annotated[dict[str, Short], msgspec.Meta(max_length=50)] | None = None
    popup_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    popup_name: Short | None = None
    element: Short | None = None
    form_data: Annotated[dict[str, str | float | bool | None], msgspec.Meta(max_length=100)] | None = None
    error_text: Short | None = None
    custom_event: Short | None = None


def _visit(request: Request) -> record.Visit:
    ip = request.client.host if request.client else None
    geo: GeoLocator | None = request.app.state.geo
    return record.Visit(
        ip,
        request.headers.get("user-agent", ""),
        request.method,
        geo.locate(ip) if geo is not None and ip else {},
    )


async def _append(state: Any, event: NewEvent) -> None:
    await state.store.append(event.account_id, [event], (), state.derivation)


async def make_token(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    wanted = await read_typed(request, TokenRequest)
    keys: TrackingKeys = state.tracking_keys
    token = await keys.mint(wanted.claims(account_id, time.time()))
    base = state.settings.public_url
    return json_response(
        TrackingToken(
            token=token,
            open_url=f"{base}/t/open/{token}",
            dwell_url=f"{base}/t/dwell/{token}",
            click_url=f"{base}/t/click/{token}" if wanted.link_url else None,
        ),
        201,
    )


async def _claims(request: Request) -> Claims | None:
    try:
        claims: Claims = await request.app.state.tracking_keys.check(request.path_params["token"])
    except BadToken:
        return None
    return claims


async def open_pixel(request: Request) -> Response:
    try:
        claims = await _claims(request)
        if claims is not None and claims.ch != "site":
            event = record.tracking_event(claims, _visit(request), click=False)
            if event is not None:
                await _append(request.app.state, event)
    except StoreUnavailable:
        log.warning("open not recorded: the store is unavailable")
    except Exception:  # the pixel never answers an error page
        log.exception("open not recorded")
    return Response(GIF, media_type="image/gif", headers=_NO_STORE)


async def dwell_pixel(request: Request) -> Response | dwell.DwellGif:
    try:
        claims = await _claims(request)
    except Exception:  # the pixel never answers an error page
        log.exception("open not recorded")
        claims = None
    if claims is None or claims.ch == "site" or record.OPEN_TYPES.get(claims.ch) is None:
        return Response(GIF, media_type="image/gif", headers=_NO_STORE)
    state: Any = request.app.state
    visit, started = _visit(request), time.time()
    streams: dwell.Streams = state.dwell_streams

    async def opened(dwell_s: float | None) -> None:
        extra = None if dwell_s is None else {"dwell_s": dwell_s}
        try:
            event = record.tracking_event(claims, visit, click=False, now=started, extra=extra)
            if event is not None:
                await _append(state, event)
        except StoreUnavailable:
            log.warning("open not recorded: the store is unavailable")
        except Exception:
            log.exception("open not recorded")

    if visit.method == "HEAD" or not streams.take():  # nothing to hold open: the open, without a dwell
        await opened(None)
        return Response(GIF, media_type="image/gif", headers=_NO_STORE)
    return dwell.DwellGif(opened, streams, {**_NO_STORE, "X-Accel-Buffering": "no"})


async def click_redirect(request: Request) -> Response:
    claims = await _claims(request)
    if claims is None or claims.u is None:
        raise ApiError(400, "invalid tracking link")
    event = record.tracking_event(claims, _visit(request), click=True, bursts=request.app.state.click_bursts)
    if event is not None:
        try:
            await _append(request.app.state, event)
        except StoreUnavailable:  # the visitor still gets where the link goes
            log.warning("click not recorded: the store is unavailable")
    return RedirectResponse(claims.u, status_code=302, headers=_NO_STORE)


async def collector_js(request: Request) -> Response:
    script = resources.files("actionhooks.capture").joinpath("collector.js").read_bytes()
    return Response(
        script, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600", **_CORS}
    )


class VisitorLimit:
    """At most ``VISITOR_RATE`` events per visitor and ``ADDRESS_RATE`` per IP address per minute, per account
    (per process; a fixed window). The app keeps one (``state.visitor_limit``)."""

    def __init__(self) -> None:
        self.window = 0
        self.counts: dict[tuple[int, str], int] = {}

    def _count(self, key: tuple[int, str]) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    def allow(self, account_id: int, address: str | None, visitor_id: str, now: float) -> bool:
        window = int(now // 60)
        if window != self.window or len(self.counts) > 100_000:
            self.window, self.counts = window, {}
        if address is not None and self._count((account_id, "ip:" + address)) > ADDRESS_RATE:
            return False
        return self._count((account_id, "v:" + visitor_id)) <= VISITOR_RATE


async def collect(request: Request) -> Response:
    claims = await _claims(request)
    if claims is None or claims.ch != "site":
        raise ApiError(400, "invalid site token", headers=_CORS)
    sent = await read_typed(request, Collected, headers=_CORS)
    now = time.time()
    visit = _visit(request)
    limit: VisitorLimit = request.app.state.visitor_limit
    if not limit.allow(claims.a, visit.ip, sent.visitor_id, now):
        raise ApiError(429, "too many events from this visitor", headers={"Retry-After": "60", **_CORS})
    data: dict[str, Any] = {"visitor_id": sent.visitor_id}
    if sent.event_type == "pixel_open":
        data["pixel_id"] = claims.x if claims.x is not None else 0
        data["url"] = sent.url or ""
        for name in ("referrer", "params"):
            if getattr(sent, name) is not None:
                data[name] = getattr(sent, name)
    else:
        if sent.popup_id is None:
            raise ApiError(422, "popup events need popup_id", "popup_id", headers=_CORS)
        data["popup_id"] = sent.popup_id
        if sent.url is not None:
            data["page_url"] = sent.url
        for name in ("popup_name", "element", "form_data", "error_text", "custom_event"):
            if getattr(sent, name) is not None:
                data[name] = getattr(sent, name)
    data.update(record.visitor_data(visit))
    bot = visitor.suspected_bot(visit.user_agent, visit.method, None, click=False)
    if bot is not None:
        data["suspected_bot"] = True
        data["suspected_bot_reason"] = bot
    event = record.build(claims.a, sent.event_type, claims.p, claims.l, data, now)
    await _append(request.app.state, event)
    return Response(status_code=204, headers=_CORS)
