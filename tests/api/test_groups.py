"""Pull groups over HTTP: the group kind, lease (long poll), ack, nack, extend, expiry,
the dead-letter endpoints on group deliveries, metrics, and chains with outcomes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import API_KEY, Api
from tidings.api.app import create_app, start_site
from tidings.api.auth import digest
from tidings.config import Settings
from tidings.store.sqlite import SQLiteStore


async def make_group(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"kind": "group", "name": "billing", "topics": ["order.*"], **fields}
    status, out = await api.call("POST", "/v1/destinations", body)
    assert status == 201, out
    assert isinstance(out, dict)
    return out


async def publish(api: Api, key: str, n: int, **extra: Any) -> str:
    body = {"topic": "order.created", "key": key, "payload": {"n": n}, **extra}
    status, out = await api.call("POST", "/v1/events", body)
    assert status == 202, out
    assert isinstance(out, dict)
    return str(out["id"])


async def lease(api: Api, group: str = "billing", **body: Any) -> list[dict[str, Any]]:
    status, out = await api.call("POST", f"/v1/groups/{group}/lease", body)
    assert status == 200, out
    assert isinstance(out, dict)
    items: list[dict[str, Any]] = out["items"]
    return items


async def settle(api: Api, op: str, **body: Any) -> dict[str, Any]:
    status, out = await api.call("POST", f"/v1/groups/billing/{op}", body)
    assert status == 200, out
    assert isinstance(out, dict)
    return out


async def test_a_group_is_a_destination_without_url(api: Api) -> None:
    out = await make_group(api, lease_ms=5000)
    assert out["kind"] == "group" and out["lease_ms"] == 5000 and "url" not in out
    status, err = await api.call("POST", "/v1/destinations", {"kind": "group", "topics": ["a"]})
    assert status == 400 and isinstance(err, dict) and err["error"]["field"] == "name"
    status, err = await api.call(
        "POST", "/v1/destinations", {"kind": "group", "name": "g", "topics": ["a"], "url": "x"}
    )
    assert status == 400 and isinstance(err, dict) and err["error"]["field"] == "url"
    for field, value in (("rate_limit_per_s", 5), ("alert_url", "https://example.com/a")):
        body = {"kind": "group", "name": "g2", "topics": ["a"], field: value}
        status, err = await api.call("POST", "/v1/destinations", body)
        assert status == 400 and isinstance(err, dict) and err["error"]["field"] == field
    status, patched = await api.call("PATCH", f"/v1/destinations/{out['id']}", {"lease_ms": 9000})
    assert status == 200 and isinstance(patched, dict) and patched["lease_ms"] == 9000


async def test_lease_ack_in_lane_order(api: Api) -> None:
    await make_group(api)
    first = await publish(api, "u1", 1, causation_id="evt_cause", correlation_id="corr-1")
    await publish(api, "u1", 2)
    (item,) = await lease(api, max=10)
    assert set(item) == {"lease_id", "delivery_id", "attempt", "lease_expires_at", "event"}
    assert item["lease_id"].startswith(item["delivery_id"] + ".")
    assert item["attempt"] == 1
    event = item["event"]
    assert event["id"] == first and event["payload"] == {"n": 1} and event["key"] == "u1"
    assert (event["causation_id"], event["correlation_id"]) == ("evt_cause", "corr-1")
    assert set(event) == {
        "id", "topic", "key", "payload", "received_at", "causation_id", "correlation_id"
    }  # fmt: skip
    assert await lease(api) == []  # the lane's next waits for its head
    async with api.session.post(api.url + "/v1/groups/billing/lease") as r:  # no body
        assert r.status == 200 and await r.json() == {"items": []}
    assert await settle(api, "ack", ids=[item["lease_id"]]) == {
        "ok": [item["lease_id"]],
        "lost": [],
    }
    (second,) = await lease(api)
    assert second["event"]["payload"] == {"n": 2}
    # Acked twice: the second is lost, and the delivery stays delivered.
    assert (await settle(api, "ack", ids=[item["lease_id"]]))["lost"] == [item["lease_id"]]
    status, d = await api.call("GET", f"/v1/deliveries/{item['delivery_id']}")
    assert status == 200 and isinstance(d, dict) and d["state"] == "delivered"


async def test_errors_are_json_and_name_the_field(api: Api) -> None:
    await make_group(api)
    status, err = await api.call("POST", "/v1/groups/nope/lease", {})
    assert status == 404 and isinstance(err, dict) and err["error"]["code"] == "not_found"
    status, _ = await api.call(
        "POST",
        "/v1/destinations",
        {"kind": "webhook", "name": "hook", "url": "https://example.com/", "topics": ["x"]},
    )
    assert status == 201
    status, err = await api.call("POST", "/v1/groups/hook/ack", {"ids": ["dlv_x.0000000000000000"]})
    assert status == 404
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("lease", {"max": 0}, "max"),
        ("lease", {"wait_ms": 30001}, "wait_ms"),
        ("lease", {"lease_ms": 10}, "lease_ms"),
        ("lease", {"maximum": 3}, "maximum"),
        ("ack", {"ids": []}, "ids"),
        ("ack", {"ids": ["x.y"]}, "ids[0]"),
        ("nack", {"ids": ["dlv_x.0000000000000000"], "delay_ms": -1}, "delay_ms"),
        ("extend", {"ids": ["dlv_x.0000000000000000"]}, "lease_ms"),
    ]
    for op, body, field in cases:
        status, err = await api.call("POST", f"/v1/groups/billing/{op}", body)
        assert status == 400, (op, body, err)
        assert isinstance(err, dict) and err["error"]["field"] == field, (op, body, err)


async def test_a_body_that_may_be_left_out_is_left_out_only_when_empty(api: Api) -> None:
    """A lease's, a replay's and a token's body may be left out. A body of whitespace
    alone is not left out: it holds no JSON value (the API fuzz run found `\\x0c` and
    `\\t` taken for every default)."""
    group = await make_group(api)
    routes = (
        "/v1/groups/billing/lease",
        f"/v1/destinations/{group['id']}/replay",
        "/v1/users/u1/token",
    )
    for path in routes:
        async with api.session.post(api.url + path, data=b"") as r:
            assert r.status in (200, 202), (path, await r.text())
        for junk in (b" ", b"\t", b"\r\n", b"\x0c", b"\x0b", b" \x0c\n"):
            async with api.session.post(
                api.url + path, data=junk, headers={"Content-Type": "application/json"}
            ) as r:
                err = await r.json()
                assert r.status == 400, (path, junk, err)
                assert err["error"]["code"] == "invalid_json", (path, junk, err)


async def test_long_poll_wakes_at_once_on_publish(api: Api) -> None:
    await make_group(api)
    started = time.monotonic()
    waiting = asyncio.create_task(lease(api, wait_ms=10_000))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await publish(api, "u1", 1)
    items = await asyncio.wait_for(waiting, 5)
    took = time.monotonic() - started
    assert len(items) == 1 and took < 1.5, took  # well under wait_ms and the fallback poll
    # Nothing due: the poll answers empty once wait_ms has passed.
    started = time.monotonic()
    assert await lease(api, wait_ms=300) == []
    assert 0.25 <= time.monotonic() - started < 2


async def test_nack_records_the_error_and_the_dead_letter_endpoints_work(api: Api) -> None:
    group = await make_group(api, retry={"max_attempts": 2, "initial_ms": 1, "jitter": 0})
    await publish(api, "u1", 1)
    (item,) = await lease(api)
    out = await settle(api, "nack", ids=[item["lease_id"]], delay_ms=0, error="KeyError: 'x'")
    assert out == {"ok": [item["lease_id"]], "lost": []}
    (again,) = await lease(api, wait_ms=2000)
    assert again["delivery_id"] == item["delivery_id"] and again["attempt"] == 2
    await settle(api, "nack", ids=[again["lease_id"]], error="KeyError: 'y'")
    status, d = await api.call("GET", f"/v1/deliveries/{item['delivery_id']}")
    assert status == 200 and isinstance(d, dict)
    assert d["state"] == "dead" and d["last_error"] == "KeyError: 'y'"
    assert [(a["outcome"], a["error"]) for a in d["attempts"]] == [
        ("nacked", "KeyError: 'x'"),
        ("nacked", "KeyError: 'y'"),
    ]
    status, dead = await api.call("GET", "/v1/deliveries?destination_id=billing&state=dead")
    assert status == 200 and isinstance(dead, dict)
    assert [x["id"] for x in dead["items"]] == [item["delivery_id"]]
    status, _ = await api.call("POST", f"/v1/deliveries/{item['delivery_id']}/retry")
    assert status == 202
    (retried,) = await lease(api, wait_ms=2000)
    assert retried["delivery_id"] == item["delivery_id"] and retried["attempt"] == 1
    await settle(api, "nack", ids=[retried["lease_id"]], delay_ms=0)
    (last,) = await lease(api, wait_ms=2000)
    await settle(api, "nack", ids=[last["lease_id"]])
    status, replayed = await api.call("POST", f"/v1/destinations/{group['id']}/replay", {})
    assert status == 202 and replayed == {"replayed": 1}
    assert len(await lease(api, wait_ms=2000)) == 1


async def test_an_expired_lease_is_a_lost_attempt_and_comes_back(api: Api) -> None:
    await make_group(api, lease_ms=1000, retry={"initial_ms": 1, "jitter": 0})
    await publish(api, "u1", 1)
    (item,) = await lease(api)
    # Extended once, then left to expire: the reaper (once a second) takes it back.
    assert (await settle(api, "extend", ids=[item["lease_id"]], lease_ms=1000))["ok"]
    (back,) = await lease(api, wait_ms=8000)
    assert back["delivery_id"] == item["delivery_id"] and back["attempt"] == 2
    stale = await settle(api, "ack", ids=[item["lease_id"]])
    assert stale == {"ok": [], "lost": [item["lease_id"]]}
    status, d = await api.call("GET", f"/v1/deliveries/{item['delivery_id']}")
    assert status == 200 and isinstance(d, dict) and d["state"] == "in_flight"
    assert [a["outcome"] for a in d["attempts"]] == ["lost"]
    assert (await settle(api, "ack", ids=[back["lease_id"]]))["ok"] == [back["lease_id"]]


async def test_unordered_group_leases_every_key_at_once(api: Api) -> None:
    await make_group(api, ordering="none")
    for n in range(4):
        await publish(api, "same", n)
    items = await lease(api, max=3)
    assert len(items) == 3
    assert len(await lease(api, max=10)) == 1


async def test_metrics_per_group(api: Api) -> None:
    group = await make_group(api)
    await publish(api, "a", 1)
    await publish(api, "b", 1)
    await publish(api, "b", 2)
    await lease(api, max=1)
    status, text = await api.call("GET", "/metrics")
    assert status == 200 and isinstance(text, str)
    assert 'tidings_group_backlog{group="billing"} 2.0' in text
    assert 'tidings_group_leased{group="billing"} 1.0' in text
    assert 'tidings_group_oldest_pending_age_seconds{group="billing"}' in text
    (item,) = await lease(api, max=1)
    await settle(api, "ack", ids=[item["lease_id"]])
    status, text = await api.call("GET", "/metrics")
    assert isinstance(text, str)
    series = f'tidings_delivery_attempts_total{{destination="{group["id"]}",outcome="delivered"}}'
    assert f"{series} 1.0" in text


async def test_stopping_the_server_ends_long_polls(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", port=0, api_key=API_KEY)
    store = SQLiteStore(str(tmp_path / "x.db"))
    await store.open()
    runner, port = await start_site(create_app(settings, store, [digest(API_KEY)]), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as s:
            body = {"kind": "group", "name": "g", "topics": ["a"]}
            async with s.post(url + "/v1/destinations", json=body) as r:
                assert r.status == 201

            async def poll() -> tuple[int, object]:
                async with s.post(url + "/v1/groups/g/lease", json={"wait_ms": 20_000}) as r:
                    return r.status, await r.json()

            waiting = asyncio.create_task(poll())
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await runner.cleanup()
            assert await asyncio.wait_for(waiting, 5) == (200, {"items": []})
            assert time.monotonic() - started < 3
    finally:
        await store.close()


async def test_chain_shows_each_events_deliveries(api: Api) -> None:
    await make_group(api, retry={"max_attempts": 1})
    root = await publish(api, "u1", 1)
    child = await publish(api, "u2", 2, causation_id=root, correlation_id=root)
    (item,) = await lease(api, max=1)
    await settle(api, "nack", ids=[item["lease_id"]], error="handler failed")
    status, chain = await api.call("GET", f"/v1/events/{child}/chain")
    assert status == 200 and isinstance(chain, dict)
    by_id = {n["id"]: n for n in chain["items"]}
    (failed,) = by_id[item["event"]["id"]]["deliveries"]
    assert failed["destination_name"] == "billing" and failed["state"] == "dead"
    assert (failed["attempts"], failed["last_error"]) == (1, "handler failed")
    other = root if item["event"]["id"] == child else child
    (waiting,) = by_id[other]["deliveries"]
    assert waiting["state"] == "pending" and waiting["last_error"] is None


async def test_bare_delivery_ids_settle_the_current_lease(api: Api) -> None:
    """API.md's `ids` may be the leased items' delivery ids: they settle whichever lease
    holds the delivery now, and are answered as they were asked."""
    await make_group(api)
    await publish(api, "k", 1)
    await publish(api, "j", 2)
    items = await lease(api, max=2)
    first, second = items[0]["delivery_id"], items[1]["delivery_id"]
    assert await settle(api, "extend", ids=[first], lease_ms=5000) == {"ok": [first], "lost": []}
    assert await settle(api, "ack", ids=[first]) == {"ok": [first], "lost": []}
    assert await settle(api, "ack", ids=[first]) == {"ok": [], "lost": [first]}
    out = await settle(api, "nack", ids=[second], error="nope")
    assert out == {"ok": [second], "lost": []}
    status, bad = await api.call("POST", "/v1/groups/billing/ack", {"ids": ["nothing"]})
    assert status == 400 and bad["error"]["field"] == "ids[0]"  # type: ignore[index]
