"""Who fetched a tracking URL: the user agent parsed by ``ua-parser`` (os, browser, device), and the flags
actionhooks adds beyond the original (docs/capture.md#flags) — each with its reason, on the event's
``event_data``; flagged events are recorded and delivered like any other.

- ``machine_open``: an open fetched by a mail privacy proxy rather than a person: Apple Mail Privacy Protection's
  bare ``Mozilla/5.0`` user agent, or a fetch within ``MACHINE_OPEN_S`` seconds of the token's issue (proxies
  prefetch images right after delivery).
- ``suspected_bot``: a crawler or link scanner user agent (``ua-parser``'s ``Spider`` device, or a known security
  scanner), a ``HEAD`` request, or a click within ``BOT_CLICK_S`` seconds of the token's issue.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from ua_parser import parse

MACHINE_OPEN_S = 10.0
BOT_CLICK_S = 5.0
_SCANNERS = ("barracuda", "mimecast", "proofpoint", "python-requests", "curl/", "wget/", "go-http-client")
_MPP_AGENT = "Mozilla/5.0"


class Agent(NamedTuple):
    os: str | None
    browser: str | None
    device: str | None
    spider: bool


@functools.lru_cache(maxsize=4096)
def agent(user_agent: str) -> Agent:
    """``os``, ``browser`` and ``device`` families of a user agent (None where ua-parser knows none)."""
    result = parse(user_agent[:1024])
    os = result.os.family if result.os and result.os.family != "Other" else None
    browser = result.user_agent.family if result.user_agent and result.user_agent.family != "Other" else None
    device = result.device.family if result.device and result.device.family != "Other" else None
    return Agent(os, browser, device, device == "Spider")


def machine_open(user_agent: str, age_s: float | None) -> str | None:
    """Why an open looks fetched by a machine, or None."""
    if user_agent.strip() == _MPP_AGENT:
        return "Apple Mail Privacy Protection user agent"
    if age_s is not None and 0 <= age_s < MACHINE_OPEN_S:
        return f"fetched {age_s:.0f} s after the message was sent"
    return None


def suspected_bot(user_agent: str, method: str, age_s: float | None, *, click: bool) -> str | None:
    """Why a fetch looks made by a scanner or crawler, or None."""
    lowered = user_agent.lower()
    if method == "HEAD":
        return "HEAD request"
    if not user_agent.strip():
        return "no user agent"
    scanner = next((s for s in _SCANNERS if s in lowered), None)
    if scanner is not None:
        return f"scanner user agent ({scanner.rstrip('/')})"
    if agent(user_agent).spider:
        return "crawler user agent"
    if click and age_s is not None and 0 <= age_s < BOT_CLICK_S:
        return f"clicked {age_s:.0f} s after the message was sent"
    return None
