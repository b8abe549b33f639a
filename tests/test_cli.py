"""The ``actionhooks`` command as a user runs it: accounts, catalogue, bad settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec

from actionhooks.api.auth import hash_key
from actionhooks.store import open_store

ACTIONHOOKS = str(Path(sys.executable).parent / "actionhooks")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ACTIONHOOKS, *args], capture_output=True, text=True, timeout=60, env=env)


async def test_accounts_create_prints_a_working_key(db_url: str) -> None:
    done = run("accounts", "create", "acme", "--db", db_url)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["api_key"].startswith("ah_")
    store = open_store(db_url)
    await store.open()
    try:
        assert await store.account_for_key(hash_key(created["api_key"])) == created["account_id"]
        assert await store.account_for_key(hash_key(created["api_key"] + "x")) is None
    finally:
        await store.close()


def test_event_types_json_lists_the_catalogue() -> None:
    done = run("event-types", "--json")
    assert done.returncode == 0, done.stderr
    types = msgspec.json.decode(done.stdout)
    assert len(types) == 80
    assert {"code", "name", "group", "description_ru", "description_en", "structure"} <= set(types[0])
    assert types[0]["code"] == "send"


def test_event_types_table_shows_every_code() -> None:
    done = run("event-types")
    assert done.returncode == 0, done.stderr
    for code in ("send", "deliv", "popup_custom", "viber_uclick", "campaign_launch"):
        assert code in done.stdout


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    done = run("accounts", "create", "acme", "--db", "mysql://nope")
    assert done.returncode != 0
    assert "unsupported database URL" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
