"""POST /v1/uploads over real HTTP: CSV rows into events, once per (content, line)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from tests.api.test_api import create_destination, expect_error, send
from tests.conftest import API_KEY, Api
from tidings.api.app import create_app, start_site
from tidings.api.auth import digest
from tidings.config import Settings
from tidings.model import Upload
from tidings.store.sqlite import SQLiteStore


async def file_rows(api: Api) -> list[dict[str, object]]:
    return [e.payload async for e in api.sdk.iter_events(topic="file.row")]


async def test_a_raw_csv_body(api: Api) -> None:
    await create_destination(api, topics=["file.*"])
    body = "userId,alertMessage\nu1,Order placed\nu2\n,lost\nu3,a, b\n"
    status, report = await api.call(
        "POST", "/v1/uploads?name=alerts.csv", data=body, headers={"Content-Type": "text/csv"}
    )
    assert status == 202 and isinstance(report, dict), report
    upload_id = report.pop("upload_id")
    assert str(upload_id).startswith("upl_")
    assert {k: report[k] for k in ("created_at", "updated_at")} and report.pop("created_at")
    report.pop("updated_at")
    assert report == {
        "state": "done",
        "file": "alerts.csv",
        "format": "csv",
        "bytes": len(body),
        "rows": 3,
        "events": 3,
        "duplicates": 0,
        "bad_rows": 1,
        "bad": [{"line": 4, "reason": "the user id (first field) is empty"}],
        "last_line": 5,
        "error": None,
    }
    status, shown = await api.call("GET", f"/v1/uploads/{upload_id}")
    assert status == 200 and isinstance(shown, dict)
    assert (shown["state"], shown["events"], shown["bad_rows"]) == ("done", 3, 1)
    expect_error(await send(api, "GET", "/v1/uploads/upl_nope"), 404)
    rows = sorted(await file_rows(api), key=lambda r: str(r["user_id"]))
    both = [(r["user_id"], r["userId"], r["message"], r["alertMessage"], r["line"]) for r in rows]
    assert both == [
        ("u1", "u1", "Order placed", "Order placed", 2),
        ("u2", "u2", "", "", 3),
        ("u3", "u3", "a, b", "a, b", 5),
    ]
    assert {r["file"] for r in rows} == {"alerts.csv"}
    status, deliveries = await api.call("GET", "/v1/deliveries?limit=1000")
    assert len(deliveries["items"]) == 3  # type: ignore[index]

    # The same file again (a client retrying after a timeout): nothing new.
    status, again = await api.call(
        "POST", "/v1/uploads", data=body, headers={"Content-Type": "text/csv"}
    )
    assert status == 202 and isinstance(again, dict)
    assert (again["events"], again["duplicates"]) == (0, 3)
    assert len(await file_rows(api)) == 3


async def test_a_multipart_form_like_wds_upload(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("file", b"u7,hi\nu8,ho\n", filename="batch-7.csv", content_type="text/csv")
    status, report = await api.call("POST", "/v1/uploads", data=form)
    assert status == 202 and isinstance(report, dict)
    assert (report["file"], report["events"]) == ("batch-7.csv", 2)
    assert {r["file"] for r in await file_rows(api)} == {"batch-7.csv"}


async def test_names_are_cut_to_their_last_part(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"u1,x\n", filename="n" * 300 + ".csv")
    status, report = await api.call("POST", "/v1/uploads", data=form)
    assert status == 202 and isinstance(report, dict)
    assert report["file"] == "n" * 255
    for raw_name in ("../../etc/x.csv", "C:\\tmp\\x.csv"):
        status, raw = await api.call(
            "POST", "/v1/uploads", params={"name": raw_name}, data=b"u2,y\n"
        )
        assert status == 202 and raw["file"] == "x.csv"  # type: ignore[index]


async def test_a_multipart_body_without_its_boundary_is_a_400(api: Api) -> None:
    reply = await send(
        api,
        "POST",
        "/v1/uploads",
        data=b"u1,x\n",
        headers={"Content-Type": "multipart/form-data"},
    )
    expect_error(reply, 400, field="file")


async def test_any_content_type_is_the_raw_file_and_a_urlencoded_form_its_file_field(
    api: Api,
) -> None:
    # What `curl --data-binary @rows.csv` sends: a raw file labelled as a form.
    curl = {"Content-Type": "application/x-www-form-urlencoded"}
    for i, content_type in enumerate(
        ("application/x-www-form-urlencoded", "application/json", "text/csv", "x/y")
    ):
        status, report = await api.call(
            "POST",
            "/v1/uploads",
            data=f"u{i},m{i}\n".encode(),
            headers={**curl, "Content-Type": content_type},
        )
        assert status == 202 and isinstance(report, dict), report
        assert (report["events"], report["bad"]) == (1, [])
    form = aiohttp.FormData({"file": "f1,from a form\nf2,too"})  # urlencoded: file=...
    status, report = await api.call("POST", "/v1/uploads", data=form)
    assert status == 202 and isinstance(report, dict)
    assert report["events"] == 2
    rows = await file_rows(api)
    assert sorted((r["user_id"], r["message"]) for r in rows) == [
        ("f1", "from a form"),
        ("f2", "too"),
        ("u0", "m0"),
        ("u1", "m1"),
        ("u2", "m2"),
        ("u3", "m3"),
    ]


async def test_upload_errors(api: Api) -> None:
    expect_error(await send(api, "POST", "/v1/uploads", data=b""), 400, field="file")
    status, latin = await api.call("POST", "/v1/uploads", data=b"u1,caf\xe9\nu2,ok\n")
    assert status == 202 and isinstance(latin, dict)  # a byte that is not UTF-8 spoils its row only
    assert (latin["events"], latin["bad"]) == (1, [{"line": 1, "reason": "the line is not UTF-8"}])
    mixed = {"Content-Type": "multipart/mixed; boundary=x"}
    reply = await send(api, "POST", "/v1/uploads", data=b"u3,x\n", headers=mixed)
    assert "raw body" in expect_error(reply, 400, field="file")["message"]
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="other.csv")
    error = expect_error(await send(api, "POST", "/v1/uploads", data=form), 400, field="file")
    assert error["code"] == "missing_field"
    anonymous = aiohttp.ClientSession()
    try:
        reply = await send(api, "POST", "/v1/uploads", data=b"u1,x\n", session=anonymous)
        expect_error(reply, 401, code="unauthorized")
    finally:
        await anonymous.close()
    assert [r["user_id"] for r in await file_rows(api)] == ["u2"]


async def test_json_lines_uploads_and_a_message_for_bare_ids(api: Api) -> None:
    lines = '{"userId": "125", "alertMessage": "Disk full"}\n{"user_id": "126"}\n[]\n'
    for how in ({"name": "a.jsonl"}, {"format": "jsonl"}):
        status, report = await api.call(
            "POST", "/v1/uploads", params={**how, "message": "Server down"}, data=lines
        )
        assert status == 202 and isinstance(report, dict), report
        assert (report["format"], report["rows"], report["bad_rows"]) == ("jsonl", 2, 1)
    status, typed = await api.call(
        "POST",
        "/v1/uploads",
        data=lines,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert status == 202 and typed["format"] == "jsonl"  # type: ignore[index]
    by_user = {(r["userId"], r["alertMessage"]) for r in await file_rows(api)}
    assert by_user == {("125", "Disk full"), ("126", "Server down"), ("126", "")}
    expect_error(
        await send(api, "POST", "/v1/uploads", params={"format": "xml"}, data=b"u1\n"),
        400,
        field="format",
    )
    expect_error(
        await send(api, "POST", "/v1/uploads", params={"message": "a\x00b"}, data=b"u1\n"),
        400,
        field="message",
    )


@pytest.fixture
async def small_api(tmp_path: Path) -> AsyncIterator[Api]:
    """An API whose request bodies stop at 1 KiB: any larger upload is spooled."""
    async with _api_at(tmp_path) as api:
        yield api


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'small.db'}",
        api_key=API_KEY,
        max_request_bytes=1024,
        max_upload_bytes=256 * 1024,
        upload_dir=str(tmp_path / "spool"),
    )


class _api_at:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    async def __aenter__(self) -> Api:
        settings = _settings(self.tmp_path)
        self.store = SQLiteStore(str(self.tmp_path / "small.db"))
        await self.store.open()
        app = create_app(settings, self.store, [digest(API_KEY)])
        self.runner, port = await start_site(app, "127.0.0.1", 0)
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"})
        self.api = Api(f"http://127.0.0.1:{port}", self.session, self.store, settings)
        return self.api

    async def __aexit__(self, *exc: object) -> None:
        await self.api.close_sdk()
        await self.session.close()
        await self.runner.cleanup()
        await self.store.close()


async def test_a_body_over_the_request_limit_that_came_whole_is_a_413(small_api: Api) -> None:
    # 2 KiB sent in one piece is in the server's buffer, whole, before the route runs:
    # read from there, it is still held to TIDINGS_MAX_REQUEST_BYTES (1 KiB here).
    over = json.dumps({"topic": "a", "payload": "x" * 2048}).encode()
    headers = {"Content-Type": "application/json"}
    reply = await send(small_api, "POST", "/v1/events", data=over, headers=headers)
    error = expect_error(reply, 413, "payload_too_large", None)
    assert "1024 bytes" in error["message"]
    under = json.dumps({"topic": "a", "payload": "x" * 900}).encode()
    reply = await send(small_api, "POST", "/v1/events", data=under, headers=headers)
    assert reply.status == 202, reply.body
    assert (await small_api.sdk.list_events()).items[0].id == reply.body["id"]


async def wait_done(api: Api, upload_id: str, within_s: float = 20.0) -> dict[str, object]:
    for _ in range(int(within_s / 0.05)):
        shown = await api.sdk.get_upload(upload_id)
        if shown.state in ("done", "failed"):
            return dict(msgspec.to_builtins(shown))
        await asyncio.sleep(0.05)
    raise AssertionError(f"upload {upload_id} not read within {within_s} s")


async def test_an_upload_larger_than_a_request_is_spooled_and_read(
    small_api: Api, tmp_path: Path
) -> None:
    body = "".join(f"u{i},hello {i}\n" for i in range(5000)) + ",no user\n"
    status, queued = await small_api.call("POST", "/v1/uploads?name=big.csv", data=body)
    assert status == 202 and isinstance(queued, dict), queued
    assert (queued["state"], queued["bytes"], queued["file"]) == ("queued", len(body), "big.csv")
    done = await wait_done(small_api, str(queued["upload_id"]))
    assert (done["state"], done["rows"], done["events"], done["bad_rows"]) == (
        "done",
        5000,
        5000,
        1,
    )
    assert done["last_line"] == 5001
    spool = tmp_path / "spool"
    assert sorted(p.name for p in spool.iterdir()) == [f"{queued['upload_id']}.rejects.csv"]
    rejects = (spool / f"{queued['upload_id']}.rejects.csv").read_text()
    assert rejects.splitlines()[1] == '5001,"the user id (first field) is empty",",no user"'
    status, page = await small_api.call("GET", "/v1/events?topic=file.row&limit=1000")
    assert status == 200 and len(page["items"]) == 1000 and page["next"]  # type: ignore[index]

    # The same file as a multipart form: streamed too, and every row a duplicate.
    form = aiohttp.FormData()
    form.add_field("file", body.encode(), filename="big.csv", content_type="text/csv")
    status, again = await small_api.call("POST", "/v1/uploads", data=form)
    assert status == 202 and again["state"] == "queued"  # type: ignore[index]
    done = await wait_done(small_api, str(again["upload_id"]))  # type: ignore[index]
    assert (done["events"], done["duplicates"]) == (0, 5000)


async def test_an_upload_over_the_upload_limit_is_a_413_and_leaves_nothing(
    small_api: Api, tmp_path: Path
) -> None:
    body = b"u1,x\n" * (300 * 1024 // 5)
    reply = await send(small_api, "POST", "/v1/uploads", data=body)
    expect_error(reply, 413, field="file")
    assert not [p for p in (tmp_path / "spool").iterdir()]


async def test_a_spooled_upload_left_by_a_stop_is_read_at_the_next_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "upl_01LEFT.csv").write_text("a,one\nb,two\n")
    (spool / "upl_01HALF.csv.part").write_text("c,half")  # never answered: sent again
    store = SQLiteStore(str(tmp_path / "small.db"))
    await store.open()
    await store.save_upload(Upload(id="upl_01LEFT", file="left.csv", state="reading", message="m"))
    await store.close()
    async with _api_at(tmp_path) as api:
        done = await wait_done(api, "upl_01LEFT")
        assert (done["file"], done["events"]) == ("left.csv", 2)
        assert sorted(p.name for p in spool.iterdir()) == []
        _, page = await api.call("GET", "/v1/events?topic=file.row")
        rows = [json.loads(json.dumps(e["payload"])) for e in page["items"]]  # type: ignore[index]
        assert sorted(r["user_id"] for r in rows) == ["a", "b"]


async def test_a_spooled_uploads_rows_reach_an_open_socket(small_api: Api) -> None:
    """Rows read from the spool in the background are pushed live like any event's."""
    status, out = await small_api.call("POST", "/v1/users/u3/token", {"ttl_s": 60})
    assert status == 200 and isinstance(out, dict)
    url = f"{small_api.url}/v1/ws?user_id=u3&token={out['token']}"
    body = "".join(f"u{i % 7},hello {i}\n" for i in range(700))
    async with small_api.session.ws_connect(url) as ws:
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
        status, queued = await small_api.call("POST", "/v1/uploads?name=s.csv", data=body)
        assert status == 202 and isinstance(queued, dict) and queued["state"] == "queued"
        got = [json.loads((await ws.receive(timeout=10)).data) for _ in range(100)]
    assert [f["offset"] for f in got] == list(range(1, 101))
    assert [f["payload"]["message"] for f in got] == [f"hello {i}" for i in range(3, 700, 7)]
