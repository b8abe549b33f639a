"""Hook routes: create, list, read, edit, stop/resume (from the cursor or from now), clone, delete; validation errors;
tenant isolation."""

from __future__ import annotations

from typing import Any

from .support import Service, User
from .test_metrics import event as an_event
from .test_metrics import send, stub_hook

HTTP = {"type": "http", "url": "http://127.0.0.1:9/hook", "max_batch_size": 10, "timeout_s": 1}


def hook(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "crm", "event_types": ["deliv", "uopen"], "transport": dict(HTTP)}
    out.update(changes)
    return out


async def test_create_read_list_delete(service: Service, owner: User) -> None:
    status, created, headers = await service.call("POST", "/v1/hooks", owner, hook(list_id=7))
    assert status == 201
    assert headers["Location"] == f"/v1/hooks/{created['id']}"
    assert created["list_id"] == 7 and created["active"] is True
    assert created["event_types"] == ["deliv", "uopen"]
    assert created["transport"]["url"] == HTTP["url"]
    status, read, _ = await service.call("GET", f"/v1/hooks/{created['id']}", owner)
    assert status == 200 and read == created
    status, listing, _ = await service.call("GET", "/v1/hooks", owner)
    assert [h["id"] for h in listing["hooks"]] == [created["id"]]
    status, _, _ = await service.call("DELETE", f"/v1/hooks/{created['id']}", owner)
    assert status == 204
    status, _, _ = await service.call("GET", f"/v1/hooks/{created['id']}", owner)
    assert status == 404


async def test_defaults_are_filled(service: Service, owner: User) -> None:
    _, created, _ = await service.call("POST", "/v1/hooks", owner, hook())
    assert created["list_id"] is None
    assert created["custom_data_fields"] == []
    assert all(v is None for v in created["filters"].values())
    assert created["transport"]["success_regex"] == ""


async def test_invalid_settings_are_422_naming_the_field(service: Service, owner: User) -> None:
    cases = [
        (hook(event_types=["deliv", "nope"]), "event_types.1"),
        (hook(event_types=[]), "event_types"),
        (hook(name=""), "name"),
        (hook(transport={**HTTP, "url": "ftp://example.com/x"}), "transport.url"),
        (hook(transport={**HTTP, "url": "not a url"}), "transport.url"),
        (hook(transport={**HTTP, "success_regex": "(unclosed"}), "transport.success_regex"),
        (hook(transport={**HTTP, "max_batch_size": 0}), "transport.max_batch_size"),
        (hook(transport={**HTTP, "timeout_s": -1}), "transport.timeout_s"),
        (hook(transport={"type": "pigeon"}), "transport.type"),
        (hook(filters={"campaign_ids": ["x"]}), "filters.campaign_ids.0"),
        (hook(filters={"colour_ids": [1]}), "filters.colour_ids"),
        (hook(list_id="seven"), "list_id"),
        ({"event_types": ["deliv"], "transport": HTTP}, "name"),
    ]
    for body, field in cases:
        status, answer, _ = await service.call("POST", "/v1/hooks", owner, body)
        assert status == 422, (body, answer)
        assert answer["field"] == field, (body, answer)
        assert answer["error"]
    _, listing, _ = await service.call("GET", "/v1/hooks", owner)
    assert listing["hooks"] == []


async def test_non_json_body_is_400(service: Service, owner: User) -> None:
    status, answer, _ = await service.call("POST", "/v1/hooks", owner, raw=b"{name")
    assert status == 400 and "JSON" in answer["error"]


async def test_patch_merges_and_validates(service: Service, owner: User) -> None:
    _, created, _ = await service.call("POST", "/v1/hooks", owner, hook())
    path = f"/v1/hooks/{created['id']}"
    status, patched, _ = await service.call(
        "PATCH",
        path,
        owner,
        {"name": "warehouse", "transport": {"max_batch_size": 500}, "filters": {"campaign_ids": [1]}},
    )
    assert status == 200
    assert patched["name"] == "warehouse"
    assert patched["transport"]["max_batch_size"] == 500
    assert patched["transport"]["url"] == HTTP["url"]
    assert patched["filters"]["campaign_ids"] == [1]
    status, answer, _ = await service.call("PATCH", path, owner, {"transport": {"max_batch_size": 0}})
    assert status == 422 and answer["field"] == "transport.max_batch_size"
    _, still, _ = await service.call("GET", path, owner)
    assert still["transport"]["max_batch_size"] == 500


async def test_secrets_are_write_only(service: Service, owner: User) -> None:
    transport = {
        **HTTP,
        "headers": {"X-Token": "s3cret-header"},
        "auth": {"type": "basic", "username": "u", "password": "s3cret-pass"},
    }
    status, created, _ = await service.call("POST", "/v1/hooks", owner, hook(transport=transport))
    assert status == 201
    text = repr(created)
    assert "s3cret" not in text
    assert created["transport"]["auth"]["password"] == "***"
    # sending the redacted view back keeps the secret
    path = f"/v1/hooks/{created['id']}"
    status, _, _ = await service.call("PATCH", path, owner, {"transport": created["transport"]})
    assert status == 200
    stored = await service.hooks.get_hook(owner.account_id, created["id"])
    assert stored is not None
    assert stored.spec.transport.auth.password == "s3cret-pass"  # type: ignore[attr-defined]


async def test_stop_and_resume_moves_cursor_to_now(service: Service, owner: User) -> None:
    _, created, _ = await service.call("POST", "/v1/hooks", owner, hook())
    path = f"/v1/hooks/{created['id']}"
    status, stopped, _ = await service.call("PATCH", path, owner, {"active": False})
    assert status == 200 and stopped["active"] is False
    event = {"event_type": "deliv", "event_date": "2020-01-01T00:00:00Z", "event_data": {}}
    await service.call("POST", "/v1/events", owner, [event, event, event])
    head = await service.store.head()
    _, resumed, _ = await service.call("PATCH", path, owner, {"active": True})
    assert resumed["active"] is True
    assert resumed["cursor"] == head


async def test_resume_from_the_cursor_delivers_what_came_in_while_stopped(
    service: Service, owner: User
) -> None:
    dest, hook_id = await stub_hook(service, owner)
    path = f"/v1/hooks/{hook_id}"
    await send(service, owner, [an_event()])
    await service.dispatcher.caught_up(hook_id)
    status, stopped, _ = await service.call("PATCH", path, owner, {"active": False})
    assert status == 200 and stopped["active"] is False
    await send(service, owner, [an_event()] * 3)
    status, resumed, _ = await service.call("POST", f"{path}/resume", owner, {"from": "cursor"})
    assert status == 200 and resumed["active"] is True and resumed["cursor"] == stopped["cursor"]
    await service.dispatcher.caught_up(hook_id)
    assert len(dest.event_ids) == 4
    status, again, _ = await service.call("POST", f"{path}/resume", owner, {"from": "now"})
    assert status == 200 and again["active"] is True and again["cursor"] >= resumed["cursor"]  # left as it is


async def test_resume_from_now_skips_what_came_in_while_stopped(service: Service, owner: User) -> None:
    dest, hook_id = await stub_hook(service, owner)
    path = f"/v1/hooks/{hook_id}"
    await service.call("PATCH", path, owner, {"active": False})
    await send(service, owner, [an_event()] * 3)
    status, resumed, _ = await service.call("POST", f"{path}/resume", owner, {"from": "now"})
    assert status == 200 and resumed["active"] is True
    assert resumed["cursor"] == await service.store.head()
    await send(service, owner, [an_event()])
    await service.dispatcher.caught_up(hook_id)
    assert len(dest.event_ids) == 1


async def test_resume_refuses_a_bad_body_and_another_accounts_hook(
    service: Service, owner: User, outsider: User
) -> None:
    _, created, _ = await service.call("POST", "/v1/hooks", owner, hook(active=False))
    path = f"/v1/hooks/{created['id']}/resume"
    for body, field in (
        ({"from": "yesterday"}, "from"),
        ({}, "from"),
        ({"from": "now", "x": 1}, "x"),
        ([], None),
    ):
        status, answer, _ = await service.call("POST", path, owner, body)
        assert status == 422, (body, answer)
        assert answer.get("field") == field, (body, answer)
    status, _, _ = await service.call("POST", path, owner, raw=b"{")
    assert status == 400
    status, _, _ = await service.call("POST", path, outsider, {"from": "now"})
    assert status == 404
    _, still, _ = await service.call("GET", f"/v1/hooks/{created['id']}", owner)
    assert still["active"] is False


async def test_clone_copies_settings_with_a_new_id(service: Service, owner: User) -> None:
    _, created, _ = await service.call("POST", "/v1/hooks", owner, hook(list_id=3))
    status, clone, _ = await service.call("POST", f"/v1/hooks/{created['id']}/clone", owner)
    assert status == 201
    assert clone["id"] != created["id"]
    assert clone["name"] == "crm (copy)"
    for key in ("event_types", "list_id", "filters", "transport", "custom_data_fields"):
        assert clone[key] == created[key]
    status, renamed, _ = await service.call(
        "POST", f"/v1/hooks/{created['id']}/clone", owner, {"name": "second"}
    )
    assert status == 201 and renamed["name"] == "second"


async def test_outsider_sees_nothing_of_another_account(
    service: Service, owner: User, outsider: User
) -> None:
    _, created, _ = await service.call("POST", "/v1/hooks", owner, hook())
    path = f"/v1/hooks/{created['id']}"
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"name": "mine"}),
        ("DELETE", "", None),
        ("POST", "/clone", None),
        ("GET", "/attempts", None),
        ("GET", "/dead-letters", None),
    ]:
        status, answer, _ = await service.call(method, path + suffix, outsider, body)
        assert status == 404, (method, suffix, answer)
    _, listing, _ = await service.call("GET", "/v1/hooks", outsider)
    assert listing["hooks"] == []
    _, mine, _ = await service.call("GET", path, owner)
    assert mine["name"] == "crm"


async def test_unknown_hook_id_is_404(service: Service, owner: User) -> None:
    assert (await service.call("GET", "/v1/hooks/999", owner))[0] == 404
    assert (await service.call("GET", "/v1/hooks/abc", owner))[0] == 404


async def test_private_destination_is_refused_without_allow_list(store: Any, db_url: str) -> None:
    from .support import service_settings

    svc = Service(store, service_settings(db_url, allow_nets=()))
    await svc.start()
    try:
        user = await svc.user("owner")
        for url in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://10.1.2.3/x",
            "http://169.254.169.254/latest",
        ]:
            status, answer, _ = await svc.call(
                "POST", "/v1/hooks", user, hook(transport={**HTTP, "url": url})
            )
            assert status == 422, url
            assert answer["field"] == "transport.url"
            assert "refused" in answer["error"]
    finally:
        await svc.stop()
