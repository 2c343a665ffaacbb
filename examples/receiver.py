"""A webhook receiver that checks Tidings' signature and prints each event it accepts.

Standard library only, so any Python 3.11+ runs it:

    WEBHOOK_SECRET=whsec_... python3 examples/receiver.py --port 9000

Tidings signs every request the Standard Webhooks way (https://www.standardwebhooks.com):

- the destination's secret is `whsec_` followed by the base64 of the key bytes;
- `webhook-signature` holds one or more space-separated `v1,<signature>` entries (two
  during the 24 h after a secret rotation), each the base64 of
  HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}");
- the request is genuine when one entry matches and `webhook-timestamp` (unix seconds)
  is within five minutes of now (so a captured request cannot be replayed later).

It answers 204 to a verified request and 401 to any other, which Tidings counts as a
failed attempt and retries. Verify over the raw body, before parsing it: the signature
covers those exact bytes.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300


class InvalidSignature(Exception):
    """The request is not one Tidings signed with this secret (the message says why)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: the bytes its base64 part encodes."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not a whsec_ secret: {exc}") from None


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Raise InvalidSignature unless `body` with these (lower-cased) headers was signed
    with `secret` within TOLERANCE_S of `now`."""
    try:
        msg_id = headers["webhook-id"]
        timestamp = headers["webhook-timestamp"]
        signatures = headers["webhook-signature"]
    except KeyError as exc:
        raise InvalidSignature(f"no {exc.args[0]} header") from None
    if not timestamp.isdigit():
        raise InvalidSignature("webhook-timestamp is not unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise InvalidSignature("webhook-timestamp is more than five minutes off")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.digest(secret_key(secret), signed, hashlib.sha256))
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise InvalidSignature("no signature matches")


def make_handler(secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                verify(secret, headers, body)
            except InvalidSignature as exc:
                print(f"rejected {self.path}: {exc}", file=sys.stderr, flush=True)
                self.send_response(401)
                self.end_headers()
                return
            event = json.loads(body)  # {"type", "timestamp", "data"}
            print(
                f"verified {event['type']} {headers['webhook-id']} "
                f"attempt {headers.get('tidings-attempt', '?')}: {json.dumps(event['data'])}",
                flush=True,
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per event (above) is all this example prints

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--secret",
        default=os.environ.get("WEBHOOK_SECRET"),
        help="the destination's whsec_ secret (default: $WEBHOOK_SECRET)",
    )
    args = parser.parse_args()
    if not args.secret:
        parser.error("give the destination's secret: --secret or WEBHOOK_SECRET")
    try:
        secret_key(args.secret)
    except ValueError as exc:
        parser.error(str(exc))
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.secret))
    print(f"receiver listening on http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
