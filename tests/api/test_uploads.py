"""POST /v1/uploads over real HTTP: CSV rows into events, once per (content, line)."""

from __future__ import annotations

import aiohttp
import msgspec

from tests.api.test_api import create_destination, expect_error, send
from tests.conftest import Api


async def file_rows(api: Api) -> list[dict[str, object]]:
    status, page = await api.call("GET", "/v1/events?topic=file.row&limit=1000")
    assert status == 200 and isinstance(page, dict)
    return [msgspec.json.decode(msgspec.json.encode(e["payload"])) for e in page["items"]]


async def test_a_raw_csv_body(api: Api) -> None:
    await create_destination(api, topics=["file.*"])
    body = "userId,alertMessage\nu1,Order placed\nu2\n,lost\nu3,a, b\n"
    status, report = await api.call(
        "POST", "/v1/uploads?name=alerts.csv", data=body, headers={"Content-Type": "text/csv"}
    )
    assert status == 202, report
    assert report == {
        "file": "alerts.csv",
        "rows": 3,
        "events": 3,
        "duplicates": 0,
        "bad_rows": 1,
        "bad": [{"line": 4, "reason": "the user id (first field) is empty"}],
    }
    rows = sorted(await file_rows(api), key=lambda r: str(r["user_id"]))
    assert rows == [
        {"user_id": "u1", "message": "Order placed", "file": "alerts.csv", "line": 2},
        {"user_id": "u2", "message": "", "file": "alerts.csv", "line": 3},
        {"user_id": "u3", "message": "a, b", "file": "alerts.csv", "line": 5},
    ]
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
