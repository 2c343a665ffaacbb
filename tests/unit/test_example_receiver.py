"""examples/receiver.py, the quick start's receiver: it accepts exactly what
tidings.signing signs with its secret, and refuses anything tampered with."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.signing import new_secret, signature_header

RECEIVER_PATH = Path(__file__).resolve().parents[2] / "examples" / "receiver.py"


def load_receiver() -> ModuleType:
    """The example is a script, not a package module: load it from its file."""
    spec = importlib.util.spec_from_file_location("example_receiver", RECEIVER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("example_receiver", module)
    spec.loader.exec_module(module)
    return module


receiver = load_receiver()
SECRET = new_secret()
NOW = 1_800_000_000
BODY = b'{"type":"order.created","timestamp":"2027-01-15T08:00:00Z","data":{"total":12}}'
MSG_ID = "evt_01M96B936S895KA2QQXMPA0000"


def signed_headers(
    body: bytes = BODY, secrets: list[str] | None = None, ts: int = NOW, msg_id: str = MSG_ID
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets or [SECRET], msg_id, ts, body),
        "tidings-attempt": "1",
    }


def test_it_accepts_what_tidings_signs() -> None:
    receiver.verify(SECRET, signed_headers(), BODY, now=NOW)


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=2048),
    msg_id=st.text(min_size=1, max_size=40),
    skew=st.integers(-300, 300),
)
def test_it_accepts_any_body_tidings_signs(body: bytes, msg_id: str, skew: int) -> None:
    receiver.verify(SECRET, signed_headers(body, msg_id=msg_id), body, now=NOW + skew)


def test_either_secret_of_a_rotation_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers(secrets=[new, old])
    receiver.verify(old, headers, BODY, now=NOW)
    receiver.verify(new, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (signed_headers(), BODY.replace(b"12", b"13"), "no signature matches"),
        (signed_headers(), BODY + b" ", "no signature matches"),
        ({**signed_headers(), "webhook-id": "evt_other"}, BODY, "no signature matches"),
        ({**signed_headers(), "webhook-timestamp": str(NOW + 1)}, BODY, "no signature matches"),
        (signed_headers(secrets=[new_secret()]), BODY, "no signature matches"),
        ({**signed_headers(), "webhook-signature": "v1,"}, BODY, "no signature matches"),
        (
            {**signed_headers(), "webhook-signature": signed_headers()["webhook-signature"][3:]},
            BODY,
            "no signature matches",
        ),
        (signed_headers(ts=NOW - 301), BODY, "five minutes"),
        (signed_headers(ts=NOW + 301), BODY, "five minutes"),
        ({**signed_headers(), "webhook-timestamp": "soon"}, BODY, "unix seconds"),
        (
            {k: v for k, v in signed_headers().items() if k != "webhook-signature"},
            BODY,
            "no webhook-signature",
        ),
        ({k: v for k, v in signed_headers().items() if k != "webhook-id"}, BODY, "no webhook-id"),
    ],
)
def test_it_refuses_what_tidings_did_not_sign(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(receiver.InvalidSignature, match=reason):
        receiver.verify(SECRET, headers, body, now=NOW)


def test_the_key_is_the_base64_part_of_the_secret() -> None:
    assert receiver.secret_key("whsec_AAEC") == bytes([0, 1, 2])
    assert receiver.secret_key("AAEC") == bytes([0, 1, 2])  # the prefix is optional
    with pytest.raises(ValueError, match="not a whsec_ secret"):
        receiver.secret_key("whsec_not base64!")
