"""Pure logic of the dashboard: session tokens, CSRF tokens, health figures, rates."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.model import Activity, AttemptSample
from tidings.policy.health import health_by_destination, percentile, rates
from tidings.policy.sessions import check_session, csrf_ok, csrf_token, key_tag, sign_session

SECRET = b"s" * 32


def test_a_signed_session_checks_until_it_expires() -> None:
    tag = key_tag(SECRET, "digest")
    token = sign_session(SECRET, tag, "nonce1", expires_at=1000)
    session = check_session(SECRET, token, now=999)
    assert session is not None
    assert (session.nonce, session.key_tag, session.expires_at) == ("nonce1", tag, 1000)
    assert check_session(SECRET, token, now=1000) is None
    assert check_session(b"t" * 32, token, now=0) is None  # another store's secret


@given(st.text(max_size=80))
def test_no_other_text_is_a_session(text: str) -> None:
    token = sign_session(SECRET, "tag", "nonce", expires_at=2000)
    if text != token:
        assert check_session(SECRET, text, now=0) is None


def test_each_field_is_covered_by_the_signature() -> None:
    token = sign_session(SECRET, "tag", "nonce", expires_at=2000)
    parts = token.split(".")
    for i, changed in enumerate(["3000", "other", "gat"]):
        forged = ".".join([*parts[:i], changed, *parts[i + 1 :]])
        assert check_session(SECRET, forged, now=0) is None


def test_csrf_token_belongs_to_its_session() -> None:
    a = sign_session(SECRET, "tag", "a", 2000)
    b = sign_session(SECRET, "tag", "b", 2000)
    assert csrf_ok(SECRET, a, csrf_token(SECRET, a))
    assert not csrf_ok(SECRET, a, csrf_token(SECRET, b))
    assert not csrf_ok(SECRET, a, "")


def test_key_tags_differ_by_key_and_hide_the_digest() -> None:
    assert key_tag(SECRET, "d1") != key_tag(SECRET, "d2")
    assert "d1" not in key_tag(SECRET, "d1")


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_p95_is_a_value_with_95_percent_at_or_below(values: list[float]) -> None:
    p = percentile(values, 0.95)
    assert p in values
    assert sum(v <= p for v in values) >= 0.95 * len(values)
    assert sum(v < p for v in values) < 0.95 * len(values)


def test_health_per_destination() -> None:
    samples = [AttemptSample("a", "delivered", float(i)) for i in range(1, 20)]
    samples += [AttemptSample("a", "http_error", 100.0), AttemptSample("b", "timeout", 5.0)]
    health = health_by_destination(samples)
    assert health["a"].attempts == 20 and health["a"].success_rate == 19 / 20
    assert health["a"].p95_ms == 19.0
    assert health["b"].success_rate == 0.0 and health["b"].p95_ms == 5.0
    assert percentile([], 0.95) is None


def test_rates_divide_by_the_time_between_samples() -> None:
    after = Activity(event_seq=10, attempt_seq=5, events=10, outcomes={"ok": 4, "bad": 1})
    assert rates(after, 2.0) == (5.0, {"bad": 0.5, "ok": 2.0})
    assert rates(after, 0.0) == (0.0, {})
