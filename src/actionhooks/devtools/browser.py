"""The browser the console's tests and screenshots drive: Debian's ``chromium`` through ``chromium-driver``
(Selenium), headless, with a fresh profile each time. Nothing is downloaded: the system binaries are used, or
:class:`BrowserMissing` says they are absent (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from ..errors import BrowserMissing

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def browser_installed() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900, language: str = "en") -> Iterator[webdriver.Chrome]:
    """A headless Chromium (``Accept-Language``: ``language``) in a fresh profile, quit and removed after."""
    if not browser_installed():
        raise BrowserMissing(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
        )
    profile = tempfile.mkdtemp(prefix="actionhooks-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--lang={language}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
