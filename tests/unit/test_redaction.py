"""Redaction: secrets, API keys, Authorization credentials and URL tokens never survive."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.redaction import redact
from tidings.signing import new_secret

SECRET = new_secret()  # whsec_ + base64 (with + / =)
KEY = "tdk_Zx9-Q_e2e.key"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HTTP 500", "HTTP 500"),
        ("connection refused: 127.0.0.1:9", "connection refused: 127.0.0.1:9"),
        ("listening on http://127.0.0.1:8080", "listening on http://127.0.0.1:8080"),
        ("secret whsec_abc+/=def!", "secret whsec_***!"),
        ("key=tdk_abc-DEF_g.h,", "key=tdk_***,"),
        ("my_tdk_abc", "my_tdk_***"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: ***"),
        ("authorization=Token zz9", "authorization=***"),
        ("{'Authorization': 'hunter2'}", "{'Authorization': '***'}"),
        ('"Proxy-Authorization": "Basic dXNlcjpwYXNz"', '"Proxy-Authorization": "***"'),
        ("sent bearer abcdefgh", "sent bearer ***"),
        ("Basic dXNlcjpwYXNz here", "Basic *** here"),
        ("http://user:pw@host:81/p", "http://host:81/p"),
        ("https://host/hook?token=abc&x=1 then", "https://host/hook?*** then"),
        ("https://host/hook#frag", "https://host/hook#***"),
        ("postgresql://app:s3cret@db:5432/tidings", "postgresql://db:5432/tidings"),
        ('{"url": "http://h/p?k=v\\"x"}', '{"url": "http://h/p?***\\"x"}'),
        ("invalid url: http://u:p@h?q", "invalid url: http://h?***"),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_json_escaped_character_neither_ends_nor_splits_a_url() -> None:
    line = json.dumps({"e": "GET https://h/p?t=ab\u00e9cd-secret9 failed"})
    assert "secret9" not in redact(line)
    assert json.loads(redact(line)) == {"e": "GET https://h/p?*** failed"}


def test_a_real_secret_and_key_in_any_position() -> None:
    text = f"x{SECRET} {KEY}x Authorization: Bearer {KEY} http://a:{KEY}@h/?s={SECRET}"
    out = redact(text)
    for part in (SECRET[6:], KEY[4:], "Bearer tdk"):
        assert part not in out, out


def test_json_stays_json() -> None:
    line = json.dumps({"msg": f"failed: https://u:p@h/x?t={SECRET}", "k": KEY, "n": 1})
    assert json.loads(redact(line)) == {"msg": "failed: https://h/x?***", "k": "tdk_***", "n": 1}


_noise = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@given(before=_noise, after=_noise, token=st.from_regex(r"[A-Za-z0-9]{8,20}", fullmatch=True))
def test_never_leaks_whatever_surrounds_it(before: str, after: str, token: str) -> None:
    for shaped in (
        f"whsec_{token}",
        f"tdk_{token}",
        f"Authorization: Bearer {token}",
        f"https://u:{token}@host/p",
        f"https://host/p?token={token}",
    ):
        out = redact(before + " " + shaped + " " + after)
        assert token not in out.replace(before, "").replace(after, ""), (shaped, out)
