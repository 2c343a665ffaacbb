"""Unit tests for tidings.policy.filters: JSON equality, paths, operators, compile errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.policy.filters import _MISSING as MISSING
from tidings.policy.filters import (
    MAX_FILTER_ENTRIES,
    OPERATORS,
    Filter,
    FilterError,
    compile_filter,
    json_equal,
    resolve,
)

FAST = settings(max_examples=200, deadline=None)

# JSON values (no NaN/inf: JSON has none). Object keys never start with '$' so that a
# literal object is never mistaken for an operator object.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
json_keys = st.text(alphabet="abcxyz01", min_size=1, max_size=3)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(json_keys, children, max_size=3),
    ),
    max_leaves=8,
)


def matches(spec: dict[str, Any], payload: Any) -> bool:
    return compile_filter(spec).matches(payload)


# --- json_equal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 1, True),
        (1, 1.0, True),
        (1.5, 1.5, True),
        (0, -0.0, True),
        (1, 2, False),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (0, False, False),
        (True, 1.0, False),
        (True, True, True),
        (False, False, True),
        (True, False, False),
        (None, None, True),
        (None, 0, False),
        (None, False, False),
        (None, "", False),
        ("1", 1, False),
        ("a", "a", True),
        ("a", "A", False),
        ([], [], True),
        ({}, {}, True),
        ([], {}, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ([1, 2], [1, 2, 3], False),
        ([1], [1.0], True),
        ([1], [True], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": [1, {"b": 2.0}]}, {"a": [1.0, {"b": 2}]}, True),
        ({"a": [1, {"b": False}]}, {"a": [1, {"b": 0}]}, False),
        ({"a": {"b": {"c": None}}}, {"a": {"b": {"c": None}}}, True),
        ({"a": {"b": {"c": None}}}, {"a": {"b": {}}}, False),
        ("1", "1.0", False),
    ],
)
def test_json_equal(a: Any, b: Any, expected: bool) -> None:
    assert json_equal(a, b) is expected
    assert json_equal(b, a) is expected


@FAST
@given(json_values)
def test_json_equal_is_reflexive(value: Any) -> None:
    assert json_equal(value, value)


@FAST
@given(json_values, json_values)
def test_json_equal_is_symmetric(a: Any, b: Any) -> None:
    assert json_equal(a, b) is json_equal(b, a)


# --- resolve -------------------------------------------------------------------------------

PAYLOAD = {
    "customer": {"tier": "gold", "id": 7, "flags": None},
    "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}],
    "matrix": [[1, 2], [3, 4]],
    "0": "zero-key",
    "n": 5,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("customer", "tier"), "gold"),
        (("customer",), PAYLOAD["customer"]),
        (("customer", "flags"), None),
        (("items", "0", "sku"), "A1"),
        (("items", "1", "qty"), 1),
        (("matrix", "1", "0"), 3),
        (("0",), "zero-key"),
        ((), PAYLOAD),
    ],
)
def test_resolve_present(path: tuple[str, ...], expected: Any) -> None:
    assert resolve(PAYLOAD, path) == expected


@pytest.mark.parametrize(
    "path",
    [
        ("nope",),
        ("customer", "nope"),
        ("customer", "tier", "x"),  # through a string
        ("n", "0"),  # through a number
        ("items", "2"),  # out of range
        ("items", "-1"),  # negative is not an index
        ("items", "first"),
        ("items", "0x1"),
        ("items", " 1"),
        ("items", "\u00b2"),  # SUPERSCRIPT TWO: isdigit() but not an index
        ("items", "\u0661"),  # ARABIC-INDIC DIGIT ONE: not an ASCII index
        ("customer", "flags", "x"),  # through null
    ],
)
def test_resolve_missing(path: tuple[str, ...]) -> None:
    assert resolve(PAYLOAD, path) is MISSING


def test_resolve_on_scalar_and_list_payloads() -> None:
    assert resolve(3, ("a",)) is MISSING
    assert resolve(None, ("a",)) is MISSING
    assert resolve([10, 20], ("1",)) == 20
    assert resolve([10, 20], ("01",)) == 20


# --- operators -----------------------------------------------------------------------------


def test_operator_names() -> None:
    assert set(OPERATORS) == {"$eq", "$ne", "$in", "$nin", "$exists"}


@pytest.mark.parametrize(
    ("spec", "payload", "expected"),
    [
        # bare literal
        ({"a": 1}, {"a": 1}, True),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": 1}, {"a": 2}, False),
        ({"a": 1}, {}, False),
        ({"a": None}, {"a": None}, True),
        ({"a": None}, {}, False),
        ({"a": "x"}, {"a": "x"}, True),
        ({"a": [1, 2]}, {"a": [1, 2]}, True),
        ({"a": [1, 2]}, {"a": [2, 1]}, False),
        ({"a": {"b": 1}}, {"a": {"b": 1.0}}, True),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, False),
        ({"a": {}}, {"a": {}}, True),
        ({"a": {}}, {"a": {"b": 1}}, False),
        # $eq
        ({"a": {"$eq": 1}}, {"a": 1.0}, True),
        ({"a": {"$eq": 1}}, {"a": True}, False),
        ({"a": {"$eq": None}}, {"a": None}, True),
        ({"a": {"$eq": None}}, {}, False),
        ({"a": {"$eq": {"$x": 1}}}, {"a": {"$x": 1}}, True),
        # $ne
        ({"a": {"$ne": 1}}, {"a": 2}, True),
        ({"a": {"$ne": 1}}, {"a": 1.0}, False),
        ({"a": {"$ne": 1}}, {"a": True}, True),
        ({"a": {"$ne": 1}}, {}, True),
        ({"a": {"$ne": None}}, {"a": None}, False),
        ({"a": {"$ne": None}}, {}, True),
        # $in
        ({"a": {"$in": [1, "x"]}}, {"a": "x"}, True),
        ({"a": {"$in": [1, "x"]}}, {"a": 1.0}, True),
        ({"a": {"$in": [1, "x"]}}, {"a": True}, False),
        ({"a": {"$in": [1, "x"]}}, {"a": "y"}, False),
        ({"a": {"$in": [1, "x"]}}, {}, False),
        ({"a": {"$in": []}}, {"a": 1}, False),
        ({"a": {"$in": [None]}}, {"a": None}, True),
        ({"a": {"$in": [None]}}, {}, False),
        ({"a": {"$in": [[1, 2], {"b": 1}]}}, {"a": {"b": 1.0}}, True),
        # $nin
        ({"a": {"$nin": [1, "x"]}}, {"a": "y"}, True),
        ({"a": {"$nin": [1, "x"]}}, {"a": 1.0}, False),
        ({"a": {"$nin": [1]}}, {"a": True}, True),
        ({"a": {"$nin": [1, "x"]}}, {}, True),
        ({"a": {"$nin": []}}, {"a": 1}, True),
        # $exists
        ({"a": {"$exists": True}}, {"a": None}, True),
        ({"a": {"$exists": True}}, {"a": False}, True),
        ({"a": {"$exists": True}}, {}, False),
        ({"a": {"$exists": False}}, {}, True),
        ({"a": {"$exists": False}}, {"a": None}, False),
        # several operators in one object are ANDed
        ({"a": {"$exists": True, "$ne": 3}}, {"a": 4}, True),
        ({"a": {"$exists": True, "$ne": 3}}, {"a": 3}, False),
        ({"a": {"$exists": True, "$ne": 3}}, {}, False),
        ({"a": {"$in": [1, 2, 3], "$nin": [2]}}, {"a": 1}, True),
        ({"a": {"$in": [1, 2, 3], "$nin": [2]}}, {"a": 2}, False),
        # several entries are ANDed
        ({"a": 1, "b": 2}, {"a": 1, "b": 2}, True),
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}, False),
        ({"a": 1, "b": 2}, {"a": 1}, False),
        # empty filter holds for anything
        ({}, {"a": 1}, True),
        ({}, None, True),
    ],
)
def test_operators(spec: dict[str, Any], payload: Any, expected: bool) -> None:
    assert matches(spec, payload) is expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"customer.tier": "gold"}, True),
        ({"customer.tier": "silver"}, False),
        ({"customer.id": {"$in": [7, 8]}}, True),
        ({"items.0.sku": "A1"}, True),
        ({"items.1.sku": "A1"}, False),
        ({"items.1.qty": 1.0}, True),
        ({"items.2.sku": {"$exists": False}}, True),
        ({"items.2.sku": {"$ne": "A1"}}, True),
        ({"items.-1.sku": {"$exists": True}}, False),
        ({"items.\u00b2.sku": {"$exists": True}}, False),
        ({"matrix.0": [1, 2]}, True),
        ({"matrix.1.1": 4}, True),
        ({"0": "zero-key"}, True),
        ({"customer.flags": None}, True),
        ({"customer.flags.x": {"$exists": True}}, False),
        ({"customer.tier.x": {"$exists": False}}, True),
        ({"customer": {"tier": "gold", "id": 7, "flags": None}}, True),
        ({"customer": {"tier": "gold"}}, False),
        ({"customer.tier": "gold", "items.0.qty": 2, "n": {"$nin": [1, 2]}}, True),
        ({"customer.tier": "gold", "items.0.qty": 3}, False),
    ],
)
def test_paths(spec: dict[str, Any], expected: bool) -> None:
    assert matches(spec, PAYLOAD) is expected


@pytest.mark.parametrize("payload", [None, 1, "s", [], [1], True])
def test_non_object_payloads(payload: Any) -> None:
    assert matches({"a": {"$exists": False}}, payload)
    assert not matches({"a": {"$exists": True}}, payload)
    assert not matches({"a": 1}, payload)


def test_compiled_filter_is_reusable_and_does_not_alias_spec() -> None:
    spec: dict[str, Any] = {"a": {"$in": [1, 2]}}
    compiled = compile_filter(spec)
    assert isinstance(compiled, Filter)
    assert len(compiled.clauses) == 1
    assert compiled.matches({"a": 1})
    assert compiled.matches({"a": 2})
    assert not compiled.matches({"a": 3})
    assert compiled.matches({"a": 1})


# --- properties ----------------------------------------------------------------------------


@FAST
@given(json_values, json_values)
def test_literal_and_eq_agree_with_json_equal(expected: Any, actual: Any) -> None:
    payload = {"k": actual}
    eq = json_equal(actual, expected)
    assert matches({"k": {"$eq": expected}}, payload) is eq
    assert matches({"k": {"$ne": expected}}, payload) is (not eq)
    # json_keys never start with '$', so a literal object is always a literal.
    assert matches({"k": expected}, payload) is eq
    assert matches({"k": expected}, {"k": expected})


@FAST
@given(st.lists(json_values, max_size=4), json_values)
def test_in_and_nin_are_complements(options: list[Any], actual: Any) -> None:
    payload = {"k": actual}
    contained = any(json_equal(actual, o) for o in options)
    assert matches({"k": {"$in": options}}, payload) is contained
    assert matches({"k": {"$nin": options}}, payload) is (not contained)


@FAST
@given(st.dictionaries(json_keys, json_values, max_size=4), json_keys)
def test_missing_path_semantics(payload: dict[str, Any], key: str) -> None:
    present = key in payload
    assert matches({key: {"$exists": True}}, payload) is present
    assert matches({key: {"$exists": False}}, payload) is (not present)
    if not present:
        assert not matches({key: {"$eq": None}}, payload)
        assert matches({key: {"$ne": None}}, payload)
        assert not matches({key: {"$in": [None]}}, payload)
        assert matches({key: {"$nin": [None]}}, payload)


# --- compile errors ------------------------------------------------------------------------


def _error(spec: Any) -> FilterError:
    with pytest.raises(FilterError) as info:
        compile_filter(spec)
    return info.value


def test_filter_error_is_value_error() -> None:
    assert issubclass(FilterError, ValueError)
    err = FilterError("a.b", "bad")
    assert (err.path, err.message, str(err)) == ("a.b", "bad", "bad")


@pytest.mark.parametrize("spec", [[], "a", 1, None, [("a", 1)]])
def test_spec_must_be_an_object(spec: Any) -> None:
    err = _error(spec)
    assert err.path == ""
    assert "object" in err.message


def test_entry_limit() -> None:
    ok = {f"k{i}": i for i in range(MAX_FILTER_ENTRIES)}
    assert matches(ok, {f"k{i}": i for i in range(MAX_FILTER_ENTRIES)})
    err = _error({f"k{i}": i for i in range(MAX_FILTER_ENTRIES + 1)})
    assert err.path == ""
    assert str(MAX_FILTER_ENTRIES) in err.message


@pytest.mark.parametrize(
    ("key", "path"), [("", ""), ("a..b", "a..b"), (".a", ".a"), ("a.", "a."), (".", "."), (1, "1")]
)
def test_bad_paths(key: Any, path: str) -> None:
    err = _error({"ok": 1, key: 1})
    assert err.path == path
    assert "path" in err.message


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"a.b": {"$in": 1}}, "a.b", "$in takes a list"),
        ({"a.b": {"$in": "xy"}}, "a.b", "$in takes a list"),
        ({"a.b": {"$nin": {"x": 1}}}, "a.b", "$nin takes a list"),
        ({"x": {"$exists": 1}}, "x", "$exists takes true or false"),
        ({"x": {"$exists": "true"}}, "x", "$exists takes true or false"),
        ({"x": {"$exists": None}}, "x", "$exists takes true or false"),
        ({"items.0": {"$gt": 1}}, "items.0", "unknown operator '$gt'"),
        ({"x": {"$regex": "a"}}, "x", "unknown operator '$regex'"),
        ({"x": {"$EQ": 1}}, "x", "unknown operator '$EQ'"),
        ({"x": {"$": 1}}, "x", "unknown operator '$'"),
        ({"x": {"$eq": 1, "$gt": 1}}, "x", "unknown operator '$gt'"),
    ],
)
def test_bad_operators(spec: dict[str, Any], path: str, fragment: str) -> None:
    err = _error({"first": 1, **spec})
    assert err.path == path
    assert fragment in err.message


def test_unknown_operator_message_lists_the_known_ones() -> None:
    err = _error({"x": {"$gt": 1}})
    for op in OPERATORS:
        assert op in err.message


@pytest.mark.parametrize(
    "condition",
    [
        {"$eq": 1, "b": 2},
        {"b": 2, "$eq": 1},
        {"$exists": True, "nested": {"$eq": 1}},
        {"$gt": 1, "b": 2},
    ],
)
def test_mixed_operator_and_literal_keys_rejected(condition: dict[str, Any]) -> None:
    err = _error({"a.b": condition})
    assert err.path == "a.b"
    assert "mix" in err.message


def test_first_bad_entry_is_named() -> None:
    err = _error({"ok": 1, "bad1": {"$gt": 1}, "bad2": {"$lt": 1}})
    assert err.path == "bad1"
