"""Unit tests for tidings.signing, checked against the `standardwebhooks` reference."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tidings.signing import (
    SECRET_BYTES,
    SECRET_PREFIX,
    new_secret,
    secret_key,
    sign,
    signature_header,
)

FAST = settings(max_examples=100, deadline=None)
SECRET = "whsec_" + base64.b64encode(bytes(range(24))).decode()
OTHER = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()

json_payloads = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)
    ),
    max_leaves=6,
)
msg_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
)


def body_for(payload: Any, topic: str = "order.created") -> bytes:
    message = {"type": topic, "timestamp": "2024-01-01T00:00:00.000000Z", "data": payload}
    return json.dumps(message, ensure_ascii=False).encode()


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


# --- new_secret ----------------------------------------------------------------------------


def test_new_secret_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert SECRET_PREFIX == "whsec_"
    assert SECRET_BYTES == 24
    encoded = secret[len("whsec_") :]
    assert re.fullmatch(r"[A-Za-z0-9+/]{32}", encoded)  # 24 bytes: 32 chars, no padding
    raw = base64.b64decode(encoded, validate=True)
    assert len(raw) == 24
    assert secret_key(secret) == raw


def test_new_secrets_differ() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50


def test_new_secret_is_accepted_by_standardwebhooks() -> None:
    secret = new_secret()
    ts = int(time.time())
    body = body_for({"a": 1})
    assert Webhook(secret).verify(body, headers("evt_1", ts, sign(secret, "evt_1", ts, body))) == {
        "type": "order.created",
        "timestamp": "2024-01-01T00:00:00.000000Z",
        "data": {"a": 1},
    }


# --- secret_key / sign ---------------------------------------------------------------------


def test_secret_key_with_and_without_prefix() -> None:
    assert secret_key(SECRET) == bytes(range(24))
    assert secret_key(SECRET[len("whsec_") :]) == bytes(range(24))


def test_sign_format_and_value() -> None:
    body = b'{"type":"a","data":null}'
    signature = sign(SECRET, "evt_01H", 1_700_000_000, body)
    assert signature.startswith("v1,")
    digest = base64.b64decode(signature[3:], validate=True)
    assert len(digest) == 32
    expected = hmac.new(bytes(range(24)), b"evt_01H.1700000000." + body, hashlib.sha256).digest()
    assert digest == expected


def test_sign_is_deterministic_and_sensitive_to_every_input() -> None:
    base = sign(SECRET, "id", 1, b"{}")
    assert sign(SECRET, "id", 1, b"{}") == base
    assert sign(OTHER, "id", 1, b"{}") != base
    assert sign(SECRET, "id2", 1, b"{}") != base
    assert sign(SECRET, "id", 2, b"{}") != base
    assert sign(SECRET, "id", 1, b"{ }") != base


@FAST
@given(msg_ids, st.integers(min_value=0, max_value=2**33), json_payloads)
def test_sign_matches_standardwebhooks_sign(msg_id: str, ts: int, payload: Any) -> None:
    body = body_for(payload)
    reference = Webhook(SECRET).sign(
        msg_id, datetime.fromtimestamp(ts, tz=UTC).replace(tzinfo=None), body.decode()
    )
    assert sign(SECRET, msg_id, ts, body) == reference


@FAST
@given(msg_ids, json_payloads, st.integers(min_value=-240, max_value=240))
def test_signature_verifies_with_standardwebhooks(msg_id: str, payload: Any, skew: int) -> None:
    ts = int(time.time()) + skew
    body = body_for(payload)
    result = Webhook(SECRET).verify(body, headers(msg_id, ts, sign(SECRET, msg_id, ts, body)))
    assert result == json.loads(body)


def test_tampering_is_detected() -> None:
    ts = int(time.time())
    body = body_for({"amount": 10})
    good = sign(SECRET, "evt_1", ts, body)
    hook = Webhook(SECRET)
    hook.verify(body, headers("evt_1", ts, good))
    with pytest.raises(WebhookVerificationError):
        hook.verify(body_for({"amount": 11}), headers("evt_1", ts, good))
    with pytest.raises(WebhookVerificationError):
        hook.verify(body, headers("evt_2", ts, good))
    with pytest.raises(WebhookVerificationError):
        hook.verify(body, headers("evt_1", ts + 1, good))
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers("evt_1", ts, good))


# --- signature_header ----------------------------------------------------------------------


def test_signature_header_single_secret() -> None:
    assert signature_header([SECRET], "id", 5, b"{}") == sign(SECRET, "id", 5, b"{}")


def test_signature_header_no_secrets() -> None:
    assert signature_header([], "id", 5, b"{}") == ""


def test_signature_header_two_secrets() -> None:
    ts = int(time.time())
    body = body_for({"rotating": True})
    header = signature_header([SECRET, OTHER], "evt_9", ts, body)
    parts = header.split(" ")
    assert len(parts) == 2
    assert all(p.startswith("v1,") for p in parts)
    assert parts == [sign(SECRET, "evt_9", ts, body), sign(OTHER, "evt_9", ts, body)]

    # Each signature on its own verifies with its own secret, and only with it.
    Webhook(SECRET).verify(body, headers("evt_9", ts, parts[0]))
    Webhook(OTHER).verify(body, headers("evt_9", ts, parts[1]))
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers("evt_9", ts, parts[0]))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers("evt_9", ts, parts[1]))

    # The full header verifies for a receiver holding either secret, and no other.
    Webhook(SECRET).verify(body, headers("evt_9", ts, header))
    Webhook(OTHER).verify(body, headers("evt_9", ts, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers("evt_9", ts, header))


@FAST
@given(st.integers(min_value=1, max_value=4), json_payloads)
def test_signature_header_every_secret_verifies(count: int, payload: Any) -> None:
    secrets = [new_secret() for _ in range(count)]
    ts = int(time.time())
    body = body_for(payload)
    header = signature_header(secrets, "evt_x", ts, body)
    assert len(header.split(" ")) == count
    for secret in secrets:
        Webhook(secret).verify(body, headers("evt_x", ts, header))
