"""``make screenshots``: every page of the console, in English and Russian, as PNG files (``docs/console/``).

The service runs in a thread (:class:`~.threaded.ServiceThread`) on a throw-away SQLite database with an account
that looks used: a hook delivering to a loopback receiver, one that cannot reach its destination (retries, dead
letters, a last error), a stopped Kafka hook; some traffic has passed, in bursts 10 s apart (the throughput chart). Then Debian's Chromium (:mod:`.browser`)
signs in and photographs each page.

Usage: ``python -m actionhooks.devtools.screenshots [FOLDER]``.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from ..backoff import RetryPolicy
from ..catalog import catalog
from ..config import Settings
from ..netguard import parse_nets
from ..store.sql import COUNT_PERIOD_S
from .browser import chromium
from .threaded import ServiceThread
from .traffic import traffic

WIDTH = 1280
MAX_HEIGHT = 2600


def _call(service: ServiceThread, key: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        service.url + path,
        method=method,
        data=None if body is None else msgspec.json.encode(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return msgspec.json.decode(answer.read() or b"null")


def _populate(service: ServiceThread, key: str) -> tuple[int, int]:
    """The account's hooks and some traffic; returns the ids of the delivering and the failing hook."""
    email = [t.code for t in catalog().types if t.group in ("email", "sms")]
    crm = _call(
        service,
        key,
        "POST",
        "/v1/hooks",
        {
            "name": "CRM sync",
            "event_types": email,
            "filters": {"campaign_ids": [101, 102, 103]},
            "custom_data_fields": ["first_name", "city"],
            "transport": {
                "type": "http",
                "url": service.receiver.hook_url,
                "max_batch_size": 50,
                "timeout_s": 0.2,
                "auth": {"type": "bearer", "token": "demo-token"},
            },
        },
    )
    failing = _call(
        service,
        key,
        "POST",
        "/v1/hooks",
        {
            "name": "Data warehouse",
            "event_types": [t.code for t in catalog().types],
            "list_id": 42,
            "transport": {"type": "http", "url": "http://127.0.0.1:9/unreachable", "timeout_s": 0.2},
        },
    )
    _call(
        service,
        key,
        "POST",
        "/v1/hooks",
        {
            "name": "Analytics stream",
            "active": False,
            "event_types": ["deliv", "open", "click"],
            "transport": {
                "type": "kafka",
                "bootstrap_servers": "127.0.0.1:9092",
                "topic": "marketing-events",
            },
        },
    )
    rng = random.Random(7)
    events = list(traffic(rng, 400, cover_all=True))
    for event in events:
        if isinstance(event.get("event_data"), dict):
            event["event_data"]["campaign_id"] = rng.choice((101, 102, 103, 104))
        if event.get("list_id") is not None:
            event["list_id"] = rng.choice((42, 43))
    for start in range(0, len(events), 100):  # in bursts 10 s apart: the throughput chart has some bars
        if start:
            time.sleep(COUNT_PERIOD_S)
        _call(service, key, "POST", "/v1/events", events[start : start + 100])
    time.sleep(2.5)  # deliveries, retries and dead letters happen meanwhile
    return int(crm["id"]), int(failing["id"])


def _shoot(driver: WebDriver, url: str, path: Path) -> None:
    driver.set_window_size(WIDTH, 900)
    driver.get(url)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(WIDTH, min(max(height, 600), MAX_HEIGHT))
    time.sleep(0.2)
    driver.save_screenshot(str(path))


def take(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            db=f"sqlite:///{scratch}/screens.db",
            allow_nets=parse_nets("127.0.0.0/8"),
            retry=RetryPolicy(initial_delay_s=0.05, max_delay_s=0.2, max_age_s=0.3),
        )
        with ServiceThread(settings) as service, chromium(WIDTH, 900) as driver:
            _, key = service.account("Acme Retail")
            hook_id, failing_id = _populate(service, key)
            base = f"{service.url}/console"
            for language in ("en", "ru"):
                driver.delete_all_cookies()
                driver.get(f"{base}/language/{language}?next=/console/sign-in")
                _shoot(driver, f"{base}/sign-in", folder / f"sign-in.{language}.png")
                driver.find_element(By.ID, "key").send_keys(key)
                driver.find_element(By.ID, "sign-in").click()
                pages = {
                    "hooks": f"{base}/hooks",
                    "editor": f"{base}/hooks/{hook_id}/edit",
                    "detail-failing": f"{base}/hooks/{failing_id}",
                    "catalog": f"{base}/catalog",
                    "event-type": f"{base}/catalog/click",
                }
                for name, url in pages.items():
                    _shoot(driver, url, folder / f"{name}.{language}.png")
                    written.append(folder / f"{name}.{language}.png")
                driver.get(f"{base}/hooks/{hook_id}")
                driver.find_element(By.ID, "send-test").click()
                time.sleep(1.0)
                height = int(driver.execute_script("return document.documentElement.scrollHeight"))
                driver.set_window_size(WIDTH, min(height, MAX_HEIGHT))
                driver.execute_script("window.scrollTo(0, 0)")  # the button's click scrolled the page
                time.sleep(0.2)
                driver.save_screenshot(str(folder / f"detail.{language}.png"))
                written += [folder / f"sign-in.{language}.png", folder / f"detail.{language}.png"]
    return written


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "docs/console")
    for path in take(folder):
        print(path)


if __name__ == "__main__":
    main()
