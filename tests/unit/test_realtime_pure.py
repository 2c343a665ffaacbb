"""realtime.tokens, realtime.merge and realtime.frames: pure parts of the gateway."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.model import Appended, EventIn
from tidings.realtime import frames, tokens
from tidings.realtime.hub import (
    NUDGE,
    Connection,
    Framed,
    Hub,
    Live,
    Reusing,
    Written,
    live_messages,
)
from tidings.realtime.merge import Merger

SECRET = b"s" * 32


def test_a_token_verifies_for_its_user_until_it_expires() -> None:
    t = tokens.sign(SECRET, "user-1", 1000)
    assert tokens.verify(SECRET, t, "user-1", 999) is None
    assert tokens.verify(SECRET, t, "user-1", 1000) == "the token has expired"
    assert tokens.verify(SECRET, t, "user-2", 10) == "the token is for another user"
    assert tokens.verify(b"x" * 32, t, "user-1", 10) == "the token's signature is not valid"
    user, _, mac = t.split(".")
    forged = f"{user}.99999999999.{mac}"  # a later expiry with the old signature
    assert tokens.verify(SECRET, forged, "user-1", 10) == "the token's signature is not valid"
    for bad in ("", "a.b", "a.b.c", "x" * 2000, f"{user}.-1.{mac}"):
        assert tokens.verify(SECRET, bad, "user-1", 10) is not None


@given(st.text(min_size=1, max_size=50), st.integers(0, 2**40))
def test_tokens_round_trip(user: str, expires: int) -> None:
    assert tokens.verify(SECRET, tokens.sign(SECRET, user, expires), user, expires - 1) is None


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[int, int, list[list[int]]]:
    """A catch-up from `after` to `top` in pages, live pushes of offsets after some
    point (some dropped, some repeated), interleaved in any order."""
    after = draw(st.integers(0, 5))
    top = draw(st.integers(after, after + 30))
    live_from = draw(st.integers(after + 1, top + 1))
    live = [o for o in range(live_from, top + 1) if draw(st.booleans()) or o == top]
    live += draw(st.lists(st.sampled_from(live), max_size=5)) if live else []
    pages = [list(range(a, min(a + 7, top + 1))) for a in range(after + 1, top + 1, 7)]
    steps: list[list[int]] = []
    pages_left, live_left = list(pages), list(live)
    while pages_left or live_left:
        if pages_left and (not live_left or draw(st.booleans())):
            steps.append(pages_left.pop(0))
        else:
            steps.append([live_left.pop(draw(st.integers(0, len(live_left) - 1)))])
    return after, top, steps


@given(interleavings())
def test_any_interleaving_sends_each_offset_once_in_order(
    case: tuple[int, int, list[list[int]]],
) -> None:
    after, top, steps = case
    merger: Merger[int] = Merger(after)
    sent: list[int] = []
    for step in steps:
        sent += merger.offer((o, o) for o in step)
    assert sent == list(range(after + 1, top + 1))
    assert not merger.wants_fill


def test_a_gap_is_held_until_filled() -> None:
    merger: Merger[str] = Merger(0)
    assert merger.offer([(1, "a"), (3, "c")]) == ["a"]
    assert merger.wants_fill and merger.last == 1
    assert merger.offer([(1, "a"), (2, "b")]) == ["b", "c"]
    assert not merger.wants_fill
    bounded: Merger[int] = Merger(0, max_held=2)
    bounded.offer([(5, 5), (3, 3), (4, 4)])
    assert bounded.held == 2


def test_client_frames() -> None:
    assert frames.parse_client_frame('{"type": "ack", "up_to": 4}').up_to == 4
    assert frames.parse_client_frame(b'{"type": "ping"}').type == "ping"
    for bad in (
        "{",
        '{"type": "read", "user_id": "other"}',
        '{"type": "ack"}',
        '{"type": "ack", "up_to": -1}',
        '{"type": "ack", "up_to": 1, "user_id": "other"}',
        "x" * 5000,
    ):
        with pytest.raises(frames.FrameError):
            frames.parse_client_frame(bad)


async def test_the_hub_bounds_each_queue_and_nudges_even_a_full_one() -> None:
    hub = Hub()
    opened: list[str] = []
    closed: list[str] = []
    hub.on_first, hub.on_last = opened.append, closed.append
    slow: list[int] = []
    a = Connection("u", 2, lambda: slow.append(1))
    b = Connection("u", 10, lambda: None)
    hub.add(a)
    hub.add(b)
    assert opened == ["u"] and hub.connections("u") == 2 and hub.all_connections()
    hub.deliver([("u", 1, b"m1"), ("u", 2, b"m2")])
    hub.nudge("u")  # a full queue still takes the nudge (one slot kept for it)
    assert a.stale and a.queue.qsize() == 3 and not a.overflowed
    hub.nudge("u")  # one nudge pending is enough
    assert a.queue.qsize() == 3
    hub.deliver([("u", 3, b"m3"), ("other", 1, b"x")])
    assert a.overflowed and slow == [1]  # its 3rd message finds the queue full
    assert [a.queue.get_nowait() for _ in range(3)] == [(1, b"m1"), (2, b"m2"), (NUDGE, b"")]
    assert b.queue.qsize() == 4  # the other connection of the user got everything
    hub.remove(a)
    hub.remove(a)  # twice is harmless
    assert closed == []
    hub.remove(b)
    assert closed == ["u"] and hub.total == 0 and await hub.presence("u") == 0


async def test_a_push_builds_frames_only_for_users_it_can_reach() -> None:
    hub = Hub()
    hub.add(Connection("u2", 10, lambda: None))
    events = [
        EventIn(topic="t", key="k", payload=msgspec.Raw(b'{"n": %d}' % i), recipients=["u1", "u2"])
        for i in range(3)
    ]
    appended = [
        Appended(id=f"evt_{i}", received_at=0, deliveries=0, inbox=(("u1", i + 1), ("u2", i + 1)))
        for i in range(3)
    ]
    alone = live_messages(events, appended, hub.reaches)  # no relay: u2 only
    assert [(user, offset) for user, offset, _ in alone] == [("u2", 1), ("u2", 2), ("u2", 3)]
    assert msgspec.json.decode(alone[1][2])["payload"] == {"n": 1}
    relayed = live_messages(events, appended)  # the relay's: everyone
    assert len(relayed) == 6
    hub.remove(next(iter(hub.all_connections())))
    assert live_messages(events, appended, hub.reaches) == []


def test_a_hub_frames_a_publish_only_for_the_users_it_holds() -> None:
    hub = Hub()
    held = Connection("u2", 10, lambda: None)
    events = [
        EventIn(topic="t", key="k", payload=msgspec.Raw(b'{"n": %d}' % i), recipients=["u1", "u2"])
        for i in range(2)
    ]
    appended = [
        Appended(id="evt_0", received_at=0, deliveries=0, inbox=(("u1", 1), ("u2", 1))),
        Appended(id="evt_1", received_at=0, deliveries=0, inbox=(("u1", 2), ("u2", 2))),
        Appended(id="evt_0", received_at=0, deliveries=0, duplicate=True),
    ]
    written = Written([*events, events[0]], appended)
    assert written.users() == {"u1", "u2"}
    hub.publish(written)  # no socket: nothing framed, nothing queued
    hub.add(held)
    asked: list[str] = []

    def wanted(user: str) -> bool:
        asked.append(user)
        return hub.connections(user) > 0

    assert [(u, o) for u, o, _ in written.frames(wanted)] == [("u2", 1), ("u2", 2)]
    assert sorted(set(asked)) == ["u1", "u2"]
    hub.publish(written)
    got = [held.queue.get_nowait() for _ in range(held.queue.qsize())]
    assert [offset for offset, _ in got] == [1, 2]
    assert msgspec.json.decode(got[1][1])["id"] == "evt_1"
    framed = Framed([("u1", 5, b"a"), ("u2", 3, b"b")])
    assert framed.users() == {"u1", "u2"}
    hub.publish(framed)
    assert held.queue.get_nowait() == (3, b"b") and held.queue.empty()


def test_reusing_hands_out_the_built_frames_and_frames_only_the_others() -> None:
    asked: list[str] = []

    class Spy(Framed):
        def frames(self, wanted: Callable[[str], bool]) -> list[Live]:
            out = super().frames(wanted)
            asked.extend(user for user, _, _ in out)
            return out

    pushes = Spy([("a", 1, b"a1"), ("b", 1, b"b1"), ("a", 2, b"a2"), ("c", 4, b"c4")])
    built = [("a", 1, b"a1"), ("a", 2, b"a2")]
    reusing = Reusing(pushes, built)
    assert set(reusing.users()) == {"a", "b", "c"}
    got = reusing.frames(lambda user: user != "c")
    assert got == [("a", 1, b"a1"), ("a", 2, b"a2"), ("b", 1, b"b1")]
    assert asked == ["b"]  # "a" was built already, "c" not wanted
