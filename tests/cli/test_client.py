"""The CLI against servers that are not Tidings (a real HTTP server on 127.0.0.1 that
answers what each test asks): whatever comes back, the command ends in one
`tidings: ...` line and exit code 1, never a traceback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from tidings.cli import main


class _Server(ThreadingHTTPServer):
    answer: tuple[int, str, bytes] = (200, "application/json", b"{}")


class _Canned(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        status, content_type, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _run(server: _Server, answer: tuple[int, str, bytes], *args: str) -> str:
    server.answer = answer
    url = f"http://127.0.0.1:{server.server_address[1]}"
    result = CliRunner().invoke(main, [*args, "--url", url], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tidings: "), result.stderr
    assert result.stdout == ""
    return lines[0].replace(url, "URL")


def test_json_without_the_api_fields(canned: _Server) -> None:
    line = _run(canned, (200, "application/json", b'{"hello": 1}'), "events", "list")
    assert line == (
        "tidings: unexpected answer from URL (Object missing required field `items`): "
        "is --url (TIDINGS_URL) a Tidings of this version?"
    )


def test_an_answer_that_is_not_json(canned: _Server) -> None:
    line = _run(canned, (200, "text/html", b"<html>hi</html>"), "destinations", "show", "x")
    assert line == (
        "tidings: the answer of URL/v1/destinations/x is not JSON: "
        "is --url (TIDINGS_URL) a Tidings?"
    )


def test_an_error_without_the_api_error_body(canned: _Server) -> None:
    page = b"<html>\n  <h1>502 Bad Gateway</h1>\n</html>"
    line = _run(canned, (502, "text/html", page), "deliveries", "show", "dlv_1")
    assert line == "tidings: HTTP 502: <html> <h1>502 Bad Gateway</h1> </html>"


def test_an_api_error_names_its_field_when_the_message_does_not(
    canned: _Server,
) -> None:
    body = b'{"error": {"code": "invalid_field", "message": "too long", "field": "key"}}'
    line = _run(canned, (400, "application/json", body), "events", "list")
    assert line == "tidings: invalid_field: too long (field key)"
