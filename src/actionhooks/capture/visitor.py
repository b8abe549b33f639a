"""Who fetched a tracking URL: the user agent parsed by ``ua-parser`` (os, browser, device), and the flags
actionhooks adds beyond the original (docs/capture.md#flags) — each with its reason, on the event's
``event_data``; flagged events are recorded and delivered like any other.

- ``machine_open``: an open fetched by a mail privacy proxy rather than a person: Apple Mail Privacy Protection's
  bare ``Mozilla/5.0`` user agent, or a fetch within ``MACHINE_OPEN_S`` seconds of the token's issue (proxies
  prefetch images right after delivery).
- ``suspected_bot``: a crawler or link scanner user agent (``ua-parser``'s ``Spider`` device, or a known security
  scanner), a headless or automated browser's user agent (``HeadlessChrome``, PhantomJS, …), a ``HEAD`` request, a
  click within ``BOT_CLICK_S`` seconds of the token's issue, or every link clicked at once (:class:`ClickBursts`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from ua_parser import parse

MACHINE_OPEN_S = 10.0
BOT_CLICK_S = 5.0
BURST_S = 5.0  # clicks of distinct links of one message closer than this are one burst
_SCANNERS = ("barracuda", "mimecast", "proofpoint", "python-requests", "curl/", "wget/", "go-http-client")
_HEADLESS = ("headlesschrome", "phantomjs", "slimerjs", "htmlunit", "puppeteer", "playwright", "selenium")
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
    headless = next((h for h in _HEADLESS if h in lowered), None)
    if headless is not None:
        return f"headless browser user agent ({headless})"
    if agent(user_agent).spider:
        return "crawler user agent"
    if click and age_s is not None and 0 <= age_s < BOT_CLICK_S:
        return f"clicked {age_s:.0f} s after the message was sent"
    return None


class ClickBursts:
    """Every link clicked at once: a click is suspected when a *different* link of the same message was clicked by
    the same profile within ``window_s`` seconds — link scanners follow every link of a message in a burst, people
    one at a time. The burst's first click cannot be known as such when it arrives, so it stays unflagged; every
    later one is flagged.

    Kept in memory, per process (the app keeps one: ``state.click_bursts``), at most ``limit`` (account, profile,
    message) keys: with several API processes, clicks of one burst that land in different processes are not
    compared (a scanner usually follows a message's links over one connection, so they do land together)."""

    def __init__(self, window_s: float = BURST_S, limit: int = 100_000) -> None:
        self.window_s = window_s
        self.limit = limit
        self.recent: dict[tuple[int, str, str], dict[str, float]] = {}

    def click(
        self, account_id: int, profile_id: str | None, message_id: object, link: str, now: float
    ) -> str | None:
        """Record a click of ``link``; why it looks like one of a burst, or None."""
        if profile_id is None or message_id is None:
            return None
        key = (account_id, profile_id, str(message_id))
        links = self.recent.get(key)
        if links is None:
            if len(self.recent) >= self.limit:
                self._sweep(now)
            links = self.recent[key] = {}
        for other in [k for k, at in links.items() if now - at > self.window_s]:
            del links[other]
        links[link] = now
        if len(links) < 2:
            return None
        return f"{len(links)} links of the message clicked within {self.window_s:.0f} s"

    def _sweep(self, now: float) -> None:
        """Forget the keys with no click in the window (all of them when that is not enough)."""
        self.recent = {
            key: links
            for key, links in self.recent.items()
            if any(now - at <= self.window_s for at in links.values())
        }
        if len(self.recent) >= self.limit:
            self.recent = {}
