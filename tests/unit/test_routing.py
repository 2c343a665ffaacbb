"""Unit tests for tidings.policy.routing: which destinations an event fans out to."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.policy.filters import FilterError, compile_filter
from tidings.policy.routing import Route, Router
from tidings.policy.topics import matches

FAST = settings(max_examples=300, deadline=None)


class CountingLoader:
    """A payload loader that records how often the router asked for the payload."""

    def __init__(self, payload: Any = None) -> None:
        self.payload = payload
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.payload


def failing_loader() -> Any:
    raise AssertionError("the payload must not be decoded")


def route(
    dest: str, *topics: str, flt: dict[str, Any] | None = None, enabled: bool = True
) -> Route:
    return Route(destination_id=dest, topics=tuple(topics), filter=flt, enabled=enabled)


# --- examples ------------------------------------------------------------------------------


def test_route_defaults() -> None:
    r = Route("d", ("a",))
    assert r.filter is None
    assert r.enabled is True


def test_empty_router_routes_nothing() -> None:
    router = Router.build([])
    assert router.route("a", failing_loader) == []


def test_by_topic_only_while_no_enabled_destination_has_a_filter() -> None:
    plain = [route("d1", "order.*"), route("d2", "order.paid")]
    assert Router.build(plain).by_topic_only
    assert Router.build([]).by_topic_only
    filtered = route("d3", "order.*", flt={"tier": "gold"})
    assert not Router.build([*plain, filtered]).by_topic_only
    off = route("d3", "order.*", flt={"tier": "gold"}, enabled=False)
    assert Router.build([*plain, off]).by_topic_only


def test_exact_match() -> None:
    router = Router.build([route("d1", "order.created"), route("d2", "order.paid")])
    assert router.route("order.created", failing_loader) == ["d1"]
    assert router.route("order.paid", failing_loader) == ["d2"]
    assert router.route("order", failing_loader) == []
    assert router.route("order.created.v2", failing_loader) == []


def test_wildcard_match() -> None:
    router = Router.build([route("d1", "order.*")])
    assert router.route("order.a", failing_loader) == ["d1"]
    assert router.route("order.a.b", failing_loader) == ["d1"]
    assert router.route("order", failing_loader) == []
    assert router.route("orders.a", failing_loader) == []


def test_star_matches_every_topic() -> None:
    router = Router.build([route("all", "*")])
    for topic in ("a", "order.created", "x.y.z"):
        assert router.route(topic, failing_loader) == ["all"]


def test_each_destination_once_even_when_several_patterns_match() -> None:
    router = Router.build([route("d1", "order.created", "order.*", "*")])
    assert router.route("order.created", failing_loader) == ["d1"]


def test_result_is_in_creation_order_not_pattern_kind() -> None:
    routes = [
        route("d-star", "*"),
        route("d-exact", "order.created"),
        route("d-wild", "order.*"),
        route("d-other", "billing.*"),
        route("d-exact2", "order.created"),
    ]
    router = Router.build(routes)
    assert router.route("order.created", failing_loader) == [
        "d-star",
        "d-exact",
        "d-wild",
        "d-exact2",
    ]
    reversed_router = Router.build(list(reversed(routes)))
    assert reversed_router.route("order.created", failing_loader) == [
        "d-exact2",
        "d-wild",
        "d-exact",
        "d-star",
    ]


def test_disabled_routes_are_excluded() -> None:
    router = Router.build(
        [
            route("off", "order.*", enabled=False),
            route("on", "order.*"),
            route("off-exact", "order.a", enabled=False),
        ]
    )
    assert router.route("order.a", failing_loader) == ["on"]


def test_disabled_route_with_filter_never_loads_payload() -> None:
    router = Router.build([route("off", "*", flt={"x": 1}, enabled=False), route("on", "*")])
    assert router.route("a", failing_loader) == ["on"]


def test_filters_select_destinations() -> None:
    router = Router.build(
        [
            route("gold", "order.*", flt={"customer.tier": "gold"}),
            route("any", "order.*"),
            route("big", "order.*", flt={"total": {"$in": [100, 1000]}}),
        ]
    )
    loader = CountingLoader({"customer": {"tier": "gold"}, "total": 100.0})
    assert router.route("order.created", loader) == ["gold", "any", "big"]
    assert loader.calls == 1

    loader = CountingLoader({"customer": {"tier": "silver"}, "total": 5})
    assert router.route("order.created", loader) == ["any"]
    assert loader.calls == 1

    loader = CountingLoader(None)
    assert router.route("order.created", loader) == ["any"]
    assert loader.calls == 1


def test_payload_not_loaded_without_filtered_candidates() -> None:
    router = Router.build(
        [
            route("plain", "order.*"),
            route("filtered", "billing.*", flt={"x": 1}),
            route("filtered-exact", "order", flt={"x": 1}),
        ]
    )
    loader = CountingLoader({"x": 1})
    assert router.route("order.created", loader) == ["plain"]
    assert loader.calls == 0
    assert router.route("shipping.created", loader) == []
    assert loader.calls == 0


def test_payload_loaded_once_for_many_filtered_candidates() -> None:
    router = Router.build([route(f"d{i}", "*", flt={"i": {"$ne": i}}) for i in range(20)])
    loader = CountingLoader({"i": 3})
    assert router.route("a", loader) == [f"d{i}" for i in range(20) if i != 3]
    assert loader.calls == 1


def test_payload_loaded_once_even_when_every_filter_rejects() -> None:
    router = Router.build([route("a", "*", flt={"x": 1}), route("b", "*", flt={"x": 2})])
    loader = CountingLoader({"x": 3})
    assert router.route("t", loader) == []
    assert loader.calls == 1


def test_empty_filter_holds_for_every_payload() -> None:
    router = Router.build([route("d", "*", flt={})])
    assert router.route("a", CountingLoader(None)) == ["d"]


def test_invalid_filter_fails_at_build_time() -> None:
    with pytest.raises(FilterError) as info:
        Router.build([route("d", "*", flt={"a": {"$gt": 1}})])
    assert info.value.path == "a"


def test_router_is_reusable() -> None:
    router = Router.build([route("d", "order.*", flt={"ok": True})])
    for _ in range(3):
        assert router.route("order.x", CountingLoader({"ok": True})) == ["d"]
        assert router.route("order.x", CountingLoader({"ok": 1})) == []


def test_build_accepts_any_iterable() -> None:
    router = Router.build(route(f"d{i}", "a") for i in range(3))
    assert router.route("a", failing_loader) == ["d0", "d1", "d2"]


# --- property: agrees with a brute-force reference -----------------------------------------

TOPIC_POOL = ["a", "b", "a.b", "a.c", "a.b.c", "ab", "ab.c", "b.a"]
PATTERN_POOL = [*TOPIC_POOL, "*", "a.*", "a.b.*", "ab.*", "b.*"]
FILTER_POOL: list[dict[str, Any] | None] = [
    None,
    None,
    {},
    {"n": 1},
    {"n": {"$in": [1, 2]}},
    {"n": {"$ne": 1}},
    {"tag": {"$exists": True}},
    {"tag": {"$exists": False}},
    {"tag": "x", "n": {"$nin": [3]}},
    {"list.0": True},
]
PAYLOAD_POOL: list[Any] = [
    None,
    {},
    {"n": 1},
    {"n": 1.0},
    {"n": True},
    {"n": 2, "tag": "x"},
    {"n": 3, "tag": "x"},
    {"tag": None},
    {"list": [True]},
    {"list": [1]},
    [1, 2],
]

routes_strategy = st.lists(
    st.tuples(
        st.lists(st.sampled_from(PATTERN_POOL), min_size=1, max_size=3, unique=True),
        st.sampled_from(FILTER_POOL),
        st.booleans(),
    ),
    max_size=8,
).map(
    lambda specs: [
        Route(f"d{i}", tuple(pats), flt, enabled) for i, (pats, flt, enabled) in enumerate(specs)
    ]
)


def reference_route(routes: list[Route], topic: str, payload: Any) -> tuple[list[str], bool]:
    """(destination ids, whether the payload had to be looked at)."""
    chosen, needs_payload = [], False
    for r in routes:
        if not r.enabled or not any(matches(p, topic) for p in r.topics):
            continue
        if r.filter is not None:
            needs_payload = True
            if not compile_filter(r.filter).matches(payload):
                continue
        chosen.append(r.destination_id)
    return chosen, needs_payload


@FAST
@given(
    routes_strategy,
    st.sampled_from([*TOPIC_POOL, "c", "a.b.c.d"]),
    st.sampled_from(PAYLOAD_POOL),
)
def test_router_agrees_with_brute_force(routes: list[Route], topic: str, payload: Any) -> None:
    router = Router.build(routes)
    loader = CountingLoader(payload)
    expected, needs_payload = reference_route(routes, topic, payload)
    assert router.route(topic, loader) == expected
    assert loader.calls == (1 if needs_payload else 0)
