"""The site pixel and the popup collector in a real browser (Debian's chromium through chromium-driver): a shop's
page, served by the test on another loopback origin under a strict Content-Security-Policy, carries the
``collector.js`` snippet; the events the browser sends (``pixel_open``, ``popup_*``) reach an HTTP hook.

The page calls ``actionhooks.popup`` before the async script has loaded (the documented stub queues the calls),
clicks an element marked ``data-ah-popup`` and posts a form; CSP violations and script errors on the page are
collected by the page itself and must be none.
"""

from __future__ import annotations

import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from actionhooks.devtools.browser import browser_installed, chromium
from actionhooks.devtools.threaded import ServiceThread

from .support import service_missing, service_settings

WAIT_S = 15
SITE_TYPES = ["pixel_open", "popup_open", "popup_click", "popup_post", "popup_close"]
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title>
<script nonce="{nonce}">
  window.pageProblems = [];
  document.addEventListener("securitypolicyviolation", function (e) {{
    window.pageProblems.push("CSP: " + e.violatedDirective + " " + e.blockedURI);
  }});
  window.addEventListener("error", function (e) {{ window.pageProblems.push("error: " + e.message); }});
  window.actionhooks = window.actionhooks || {{q: [], popup: function () {{ this.q.push(arguments); }}}};
  actionhooks.popup("popup_open", {{popup_id: 3, popup_name: "Welcome"}});
</script>
<script src="{service}/t/collector.js" data-token="{token}" async></script>
</head><body>
<div id="welcome"><p>10 % off your first order</p>
<button id="join" data-ah-popup="3" data-ah-element="join"><span id="join-label">Join</span></button></div>
</body></html>
"""


class Shop:
    """A site on its own loopback origin serving one page with a CSP that allows the service only."""

    def __init__(self, service_url: str, token: str) -> None:
        nonce = secrets.token_urlsafe(12)
        page = PAGE.format(nonce=nonce, service=service_url, token=token).encode()
        policy = (
            f"default-src 'none'; script-src 'nonce-{nonce}' {service_url}; connect-src {service_url}; "
            "img-src 'none'; style-src 'none'"
        )

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Security-Policy", policy)
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Shop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def call(service: ServiceThread, key: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        service.url + path,
        data=msgspec.json.encode(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201
        return msgspec.json.decode(answer.read())


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not browser_installed():
        service_missing("chromium and chromium-driver (apt-get install chromium chromium-driver)")
    with chromium() as driver:
        yield driver


def test_site_pixel_and_popups_reach_a_hook(browser: WebDriver, tmp_path: Path) -> None:
    with ServiceThread(service_settings(f"sqlite:///{tmp_path}/site.db")) as service:
        account_id, key = service.account("shop")
        call(
            service,
            key,
            "/v1/hooks",
            {
                "name": "site",
                "event_types": SITE_TYPES,
                "transport": {"type": "http", "url": service.receiver.hook_url, "max_batch_size": 1},
            },
        )
        token = call(service, key, "/v1/tracking-tokens", {"channel": "site", "pixel_id": 5})["token"]
        with Shop(service.url, token) as shop:
            page = f"{shop.url}/spring?utm_source=mail&utm_campaign=spring&q=boots"
            browser.get(page)
            waiting = WebDriverWait(browser, WAIT_S, poll_frequency=0.05)

            def received(types: list[str]) -> bool:
                return sorted(e["event_type"] for e in service.receiver.events) == sorted(types)

            waiting.until(
                lambda _: received(["pixel_open", "popup_open"]), "the page's events did not arrive"
            )
            browser.find_element(By.ID, "join-label").click()  # inside the marked element
            browser.execute_script(
                'actionhooks.popup("popup_post", {popup_id: 3, form_data: {email: "a@b.example", agree: true}});'
                'actionhooks.popup("popup_close", {popup_id: 3});'
            )
            waiting.until(lambda _: received(SITE_TYPES), "the popup's events did not arrive")
            problems = browser.execute_script("return window.pageProblems;")

    assert problems == []
    events = {e["event_type"]: e for e in service.receiver.events}
    assert {e["account_id"] for e in events.values()} == {account_id}
    visitors = {e["event_data"]["visitor_id"] for e in events.values()}
    assert len(visitors) == 1  # one visitor id, kept in localStorage
    opened = events["pixel_open"]["event_data"]
    assert opened["pixel_id"] == 5 and opened["url"] == page
    assert opened["params"] == {"utm_source": "mail", "utm_campaign": "spring"}
    assert opened["ip"] == "127.0.0.1" and "Chrome" in opened["user_agent"]
    assert opened["suspected_bot_reason"] == "headless browser user agent (headlesschrome)"
    assert events["popup_open"]["event_data"]["popup_name"] == "Welcome"
    clicked = events["popup_click"]["event_data"]
    assert clicked["popup_id"] == 3 and clicked["element"] == "join" and clicked["page_url"] == page
    assert events["popup_post"]["event_data"]["form_data"] == {"email": "a@b.example", "agree": True}
    assert events["popup_close"]["event_data"]["popup_id"] == 3


def test_dwell_pixel_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    """A message with the dwell pixel shown in Chromium for about a second and a half, then closed (its tab closes and
    the browser drops the image's connection): one ``open`` with its ``dwell_s`` and one ``glanced`` reach a
    hook; Chromium's headless user agent flags them ``suspected_bot``."""
    with ServiceThread(service_settings(f"sqlite:///{tmp_path}/dwell.db")) as service:
        _, key = service.account("mail")
        call(
            service,
            key,
            "/v1/hooks",
            {
                "name": "opens",
                "event_types": ["open", "uopen", "glanced", "skimmed", "read"],
                "transport": {"type": "http", "url": service.receiver.hook_url, "max_batch_size": 1},
            },
        )
        made = call(service, key, "/v1/tracking-tokens", {"profile_id": "p1", "list_id": 3, "message_id": 7})
        client = browser.current_window_handle
        browser.switch_to.new_window("tab")  # the message opens in its own view
        browser.get(f"{service.url}/healthz")  # any page of an origin that may load the pixel
        browser.execute_script(
            "document.body.innerHTML = '<p>Spring sale</p>';"
            "var pixel = document.createElement('img'); pixel.src = arguments[0]; document.body.append(pixel);",
            f"{service.url}/t/dwell/{made['token']}",  # the public URL of the tests is not theirs
        )
        streams = service.app.state.dwell_streams
        WebDriverWait(browser, WAIT_S, poll_frequency=0.02).until(
            lambda _: streams.held == 1, "the pixel's stream did not start"
        )
        time.sleep(1.5)
        browser.close()  # the message is closed
        browser.switch_to.window(client)
        WebDriverWait(browser, WAIT_S, poll_frequency=0.05).until(
            lambda _: len(service.receiver.events) >= 3, "the open and its dwell did not arrive"
        )
    events = {e["event_type"]: e for e in service.receiver.events}
    assert sorted(events) == ["glanced", "open", "uopen"]
    opened = events["open"]["event_data"]
    assert 1.5 <= opened["dwell_s"] < 4, opened
    assert "HeadlessChrome/" in opened["user_agent"]
    assert opened["suspected_bot_reason"] == "headless browser user agent (headlesschrome)"
    assert events["glanced"]["derived_from"] == events["open"]["id"]
