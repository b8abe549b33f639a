"""The console in a real browser (Debian's chromium through chromium-driver, driven by Selenium): a master user
signs in, builds an HTTP hook, meets a field error, sends a test event, watches attempts, throughput and lag arrive
after live traffic, stops / resumes (from where it stopped, or from now) / clones / deletes, switches to Russian,
replays a range watching its progress, redrives and discards dead letters;
another account's key sees none of it.

The tests of this module run in order on one service and one browser (a session of one user, as in life).
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from actionhooks.catalog.samples import sample
from actionhooks.devtools.browser import browser_installed, chromium
from actionhooks.devtools.threaded import ServiceThread

from .support import service_missing, service_settings

WAIT_S = 15


class Site:
    def __init__(self, service: ServiceThread, driver: WebDriver) -> None:
        self.service = service
        self.driver = driver
        self.owner = service.account("owner")
        self.outsider = service.account("outsider")
        self.hook_id = 0

    def open(self, path: str) -> None:
        self.driver.get(self.service.url + path)

    def find(self, css: str) -> object:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def shown(self, css: str) -> str:
        """The text of ``css`` once the page that a click started shows it (a click may return before the page
        it submits has loaded)."""
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, css), f"{css} never appeared")
        return self.text(css)

    def wait(self, condition: object, message: str = "") -> object:
        waiting = WebDriverWait(
            self.driver, WAIT_S, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
        )
        try:
            return waiting.until(condition, message)  # type: ignore[arg-type]
        except TimeoutException:  # say what the browser shows instead, so a failure in CI can be read
            body = self.driver.find_element(By.TAG_NAME, "body").text[:600]
            raise AssertionError(
                f"{message}: at {self.driver.current_url}, the page shows {body!r}"
            ) from None

    def sign_in(self, key: str) -> None:
        self.open("/console/sign-in")
        self.driver.find_element(By.ID, "key").send_keys(key)
        self.driver.find_element(By.ID, "sign-in").click()
        self.wait(lambda d: d.current_url.endswith("/console/hooks"), "not signed in")

    def sign_out(self) -> None:
        self.driver.find_element(By.ID, "sign-out").click()
        self.wait(lambda d: "/console/sign-in" in d.current_url)

    def post_events(self, key: str, events: list[dict[str, object]]) -> None:
        request = urllib.request.Request(
            self.service.url + "/v1/events",
            data=msgspec.json.encode(events),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not browser_installed():
        service_missing("chromium and chromium-driver (apt-get install chromium chromium-driver)")
    folder: Path = tmp_path_factory.mktemp("console")
    with ServiceThread(service_settings(f"sqlite:///{folder}/console.db")) as service, chromium() as driver:
        yield Site(service, driver)


def test_a_wrong_key_is_refused_and_the_right_one_signs_in(site: Site) -> None:
    site.open("/console/hooks")
    site.wait(lambda d: "/console/sign-in" in d.current_url, "pages need a session")
    site.driver.find_element(By.ID, "key").send_keys("ah_not-a-key")
    site.driver.find_element(By.ID, "sign-in").click()
    assert site.shown("#sign-in-refused")

    site.sign_in(site.owner[1])

    assert site.driver.find_elements(By.ID, "no-hooks")
    cookie = site.driver.get_cookie("ah_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert site.owner[1] not in cookie["value"]


def test_an_http_hook_with_two_groups_and_a_filter_shows_a_field_error_then_saves(site: Site) -> None:
    site.open("/console/hooks")
    site.driver.find_element(By.ID, "new-hook").click()
    site.shown("#f-name")
    site.driver.find_element(By.ID, "f-name").send_keys("CRM sync")
    search = site.driver.find_element(By.ID, "type-search")
    search.send_keys("unique open")  # the search box narrows the picker to the matching types
    visible = [e for e in site.driver.find_elements(By.CSS_SELECTOR, "label.type") if e.is_displayed()]
    assert 0 < len(visible) < 10
    search.clear()
    search.send_keys(" ")
    site.driver.find_element(By.CSS_SELECTOR, 'input[value="send"]').click()  # email channel
    site.driver.find_element(By.CSS_SELECTOR, 'input.select-group[data-group="sms"]').click()  # a whole group
    sms = len(
        site.driver.find_elements(By.CSS_SELECTOR, 'fieldset[data-group="sms"] input[name="event_types"]')
    )
    assert site.text("#chosen-count") == str(1 + sms)
    site.driver.find_element(By.ID, "f-filters.campaign_ids").send_keys("7, 8")
    url = site.driver.find_element(By.ID, "f-http.url")
    url.send_keys("ftp://example.com/hook")
    site.driver.find_element(By.ID, "save-hook").click()

    error = site.shown('[data-field="http.url"] .field-error')
    assert "http" in error, error
    assert site.text("#chosen-count") == str(1 + sms)  # the choices survive the refusal

    url = site.driver.find_element(By.ID, "f-http.url")
    url.clear()
    url.send_keys(site.service.receiver.hook_url)
    site.driver.find_element(By.ID, "save-hook").click()
    site.wait(lambda d: re.search(r"/console/hooks/\d+$", d.current_url), "not saved")
    site.hook_id = int(site.driver.current_url.rsplit("/", 1)[1])
    assert "7, 8" in site.text("#settings")
    hook = site.service.run(site.service.app.state.hooks.get_hook(site.owner[0], site.hook_id))
    assert hook.spec.filters.campaign_ids == [7, 8]
    assert "send" in hook.spec.event_types and len(hook.spec.event_types) == 1 + sms


def test_a_test_event_shows_the_message_sent_and_the_response(site: Site) -> None:
    site.open(f"/console/hooks/{site.hook_id}")
    Select(site.driver.find_element(By.ID, "test-type")).select_by_value("send")
    site.driver.find_element(By.ID, "send-test").click()
    site.wait(lambda d: d.find_elements(By.ID, "test-outcome"), "no outcome")

    assert site.text("#test-status") == "200"
    assert site.text("#test-response") == "ok"
    sent = msgspec.json.decode(site.text("#test-event"))
    assert sent["event_type"] == "send" and sent["is_test"] is True


def test_attempts_appear_after_live_traffic(site: Site) -> None:
    site.open(f"/console/hooks/{site.hook_id}")
    assert site.driver.find_elements(By.ID, "no-attempts")
    before = site.service.receiver.event_count  # the test event reached the receiver too
    events = []
    for campaign in (7, 8, 9):  # 9 does not pass the filter
        event = sample("send", campaign)
        event["event_data"]["campaign_id"] = campaign
        events.append(event)
    site.post_events(site.owner[1], events)

    # the delivery log refreshes itself (htmx polling): no reload
    site.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.attempt.outcome-delivered"), "no attempt shown")
    site.wait(
        lambda d: site.service.receiver.event_count == before + 2, "the filter let the wrong events through"
    )
    assert site.text("tr.attempt.outcome-delivered td.num") == "2"


def _campaign_events(campaign: int, count: int) -> list[dict[str, object]]:
    events = []
    for _ in range(count):
        event = sample("send", campaign)
        event["event_data"]["campaign_id"] = campaign
        events.append(event)
    return events


def test_throughput_and_lag_refresh_without_reloading(site: Site) -> None:
    site.open(f"/console/hooks/{site.hook_id}")
    site.driver.execute_script("document.body.dataset.loaded = 'once'")  # gone if the page reloads
    assert site.find("#live-state").get_attribute("data-state") == "caught_up"  # type: ignore[attr-defined]
    assert site.text("#live-delivered").startswith("2 /")  # the live traffic of the test before
    assert site.driver.find_elements(By.CSS_SELECTOR, "#throughput rect.delivered")

    site.post_events(site.owner[1], _campaign_events(7, 3))
    site.wait(lambda d: site.text("#live-delivered").startswith("5 /"), "the figures did not refresh")
    assert site.driver.execute_script("return document.body.dataset.loaded") == "once"
    assert site.text("#live-lag") == "caught up"


def test_resume_from_where_it_stopped_or_from_now(site: Site) -> None:
    site.open(f"/console/hooks/{site.hook_id}")
    site.driver.find_element(By.ID, "stop-hook").click()
    site.wait(lambda d: d.find_elements(By.ID, "resume-cursor"), "no resume choices")
    assert site.driver.find_elements(By.ID, "resume-now")
    before = site.service.receiver.event_count
    site.post_events(site.owner[1], _campaign_events(8, 2))
    site.open(f"/console/hooks/{site.hook_id}")  # a stopped hook's lag: what resuming from its cursor sends
    site.wait(lambda d: site.find("#live-lag").get_attribute("data-lag") == "2", "no lag shown")  # type: ignore[attr-defined]
    site.driver.find_element(By.ID, "resume-cursor").click()
    site.wait(lambda d: d.find_elements(By.ID, "stop-hook"), "not resumed")
    site.wait(
        lambda d: site.service.receiver.event_count == before + 2, "what came in meanwhile was not sent"
    )

    site.driver.find_element(By.ID, "stop-hook").click()
    site.wait(lambda d: d.find_elements(By.ID, "resume-now"), "no resume choices")
    site.post_events(site.owner[1], _campaign_events(8, 3))
    site.driver.find_element(By.ID, "resume-now").click()
    site.wait(lambda d: d.find_elements(By.ID, "stop-hook"), "not resumed")
    site.post_events(site.owner[1], _campaign_events(7, 1))
    site.wait(lambda d: site.service.receiver.event_count == before + 3, "the new event was not sent")
    hooks = site.service.app.state.hooks
    assert site.service.run(hooks.get_hook(site.owner[0], site.hook_id)).spec.active


def test_stop_resume_clone_and_delete(site: Site) -> None:
    site.open("/console/hooks")
    row = f"#hook-{site.hook_id}"
    site.driver.find_element(By.CSS_SELECTOR, f"{row} button.switch").click()
    site.wait(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f"{row} button.switch").get_attribute("data-state") == "stopped"
        )
    )
    hooks = site.service.app.state.hooks
    assert not site.service.run(hooks.get_hook(site.owner[0], site.hook_id)).spec.active
    site.driver.find_element(By.CSS_SELECTOR, f"{row} button.switch").click()
    site.wait(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f"{row} button.switch").get_attribute("data-state") == "active"
        )
    )
    assert site.service.run(hooks.get_hook(site.owner[0], site.hook_id)).spec.active

    site.driver.find_element(By.CSS_SELECTOR, f"{row} button.clone").click()
    site.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-hook]")) == 2, "no clone")
    clone = next(
        e.get_attribute("data-hook")
        for e in site.driver.find_elements(By.CSS_SELECTOR, "tr[data-hook]")
        if e.get_attribute("data-hook") != str(site.hook_id)
    )
    assert "CRM sync (copy)" in site.text(f"#hook-{clone}")

    site.driver.find_element(By.CSS_SELECTOR, f"#hook-{clone} a.delete").click()
    site.shown("#confirm-delete")
    site.driver.find_element(By.ID, "confirm-delete").click()
    site.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-hook]")) == 1, "not deleted")
    assert site.service.run(hooks.get_hook(site.owner[0], int(str(clone)))) is None


def test_the_interface_switches_to_russian_and_stays(site: Site) -> None:
    site.open("/console/hooks")
    site.driver.find_element(By.ID, "language").click()
    site.wait(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ru")

    assert site.text("h1").startswith("Хуки")
    assert "Работает" in site.text(f"#hook-{site.hook_id}")
    site.open("/console/catalog")  # the choice sticks; event types keep their interface names
    assert "Типы событий" in site.text("h1")
    assert "Email сообщение отправлено для доставки подписчику." in site.text("#group-email")
    site.open(f"/console/hooks/{site.hook_id}/edit")
    label = site.driver.find_element(By.CSS_SELECTOR, 'label.type[title^="Email сообщение отправлено"]')
    assert "Send" in label.text

    site.driver.find_element(By.ID, "language").click()
    site.wait(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")


def test_a_replay_shows_its_progress_and_dead_letters_are_redriven_and_discarded(
    site: Site, tmp_path: Path
) -> None:
    site.open(f"/console/hooks/{site.hook_id}")
    assert site.driver.find_elements(By.ID, "no-replay")
    receiver = site.service.receiver
    before = len(receiver.requests)
    site.driver.find_element(By.ID, "start-replay").click()  # the form's range: the last hour, every type
    site.wait(lambda d: d.find_elements(By.ID, "replay-state"), "no replay shown")
    # the progress refreshes itself (htmx polling) until the replay is done: no reload
    site.wait(lambda d: site.text("#replay-state") == "done", "the replay never showed done")
    total = int(site.text("#replay-total"))
    assert (
        total == 11 and site.text("#replay-sent") == "11"
    )  # every event of the module the filter lets through
    marked = [r for r in receiver.requests[before:] if "Actionhooks-Replay" in r.headers]
    assert sum(len(msgspec.json.decode(r.body)) for r in marked) == total

    receiver.answer(
        410, b"gone", times=1
    )  # the next batch is refused for good: its events become dead letters
    site.post_events(site.owner[1], _campaign_events(7, 2))
    site.wait(
        lambda d: site.open(f"/console/hooks/{site.hook_id}") or len(d.find_elements(By.NAME, "letter")) == 2,
        "no dead letters shown",
    )
    site.driver.find_elements(By.NAME, "letter")[0].click()
    site.driver.find_element(By.ID, "redrive-selected").click()
    assert site.shown("#letters-note") == "Dead letters sent again: 1"
    site.wait(
        lambda d: site.open(f"/console/hooks/{site.hook_id}") or len(d.find_elements(By.NAME, "letter")) == 1,
        "the redriven letter did not leave the dead letters",
    )
    assert any("Actionhooks-Redrive" in r.headers for r in receiver.requests)
    for card in ("replay-card", "dead-letters"):  # to look at: pytest --basetemp
        site.driver.find_element(By.ID, card).screenshot(str(tmp_path / f"{card}.png"))
    site.driver.find_element(By.ID, "discard-all").click()
    assert site.shown("#letters-note") == "Dead letters discarded: 1"
    assert not site.driver.find_elements(By.NAME, "letter")


def test_another_accounts_key_sees_none_of_it(site: Site) -> None:
    site.sign_out()
    site.sign_in(site.outsider[1])

    assert site.driver.find_elements(By.ID, "no-hooks")
    for path in (f"/console/hooks/{site.hook_id}", f"/console/hooks/{site.hook_id}/edit"):
        site.open(path)
        assert site.driver.find_elements(By.ID, "error-message"), path
        assert "CRM sync" not in site.driver.page_source
