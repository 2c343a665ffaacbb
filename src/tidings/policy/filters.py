"""Payload filters: which events a destination wants beyond its topics.

A filter is a JSON object; every entry must hold (they are ANDed). Each key is a dotted
path into the payload (`customer.tier`, `items.0.sku`: digits index arrays) and each
value is either a literal, which must equal the value at that path, or an object of
operators:

    {"$eq": v}        equal to v (same as the bare literal)
    {"$ne": v}        present and not equal to v, or absent
    {"$in": [a, b]}   equal to one of the list
    {"$nin": [a, b]}  equal to none of the list (or absent)
    {"$exists": true} the path exists (false: it does not)

Equality is JSON equality: `1` equals `1.0` but not `true`; objects and arrays compare
deeply. Several operators in one object are ANDed. Owns compiling and evaluating
filters; must never do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_FILTER_ENTRIES = 64
_MISSING: Any = object()
OPERATORS = ("$eq", "$ne", "$in", "$nin", "$exists")


class FilterError(ValueError):
    """A filter that cannot be compiled; `path` names the offending entry."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def json_equal(a: Any, b: Any) -> bool:
    """Equality with JSON semantics (Python treats True == 1; JSON does not)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def resolve(payload: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in `payload`, or `_MISSING`."""
    current = payload
    for segment in path:
        if isinstance(current, dict):
            if segment not in current:
                return _MISSING
            current = current[segment]
        elif isinstance(current, list) and segment.isascii() and segment.isdigit():
            index = int(segment)
            if index >= len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


Predicate = Callable[[Any], bool]


def _contains(options: list[Any], value: Any) -> bool:
    return any(json_equal(value, option) for option in options)


def _operator(path: str, op: str, arg: Any) -> Predicate:
    if op == "$eq":
        return lambda v: v is not _MISSING and json_equal(v, arg)
    if op == "$ne":
        return lambda v: v is _MISSING or not json_equal(v, arg)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise FilterError(path, f"{op} takes a list")
        if op == "$in":
            return lambda v: v is not _MISSING and _contains(arg, v)
        return lambda v: v is _MISSING or not _contains(arg, v)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise FilterError(path, "$exists takes true or false")
        return (lambda v: v is not _MISSING) if arg else (lambda v: v is _MISSING)
    raise FilterError(path, f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")


@dataclass(frozen=True)
class _Clause:
    path: tuple[str, ...]
    predicates: tuple[Predicate, ...]

    def holds(self, payload: Any) -> bool:
        value = resolve(payload, self.path)
        return all(p(value) for p in self.predicates)


@dataclass(frozen=True)
class Filter:
    """A compiled filter; call `matches(payload)` with the decoded event payload."""

    clauses: tuple[_Clause, ...]

    def matches(self, payload: Any) -> bool:
        return all(clause.holds(payload) for clause in self.clauses)


def compile_filter(spec: Mapping[str, Any]) -> Filter:
    """Compile a filter object, raising FilterError that names the bad entry."""
    if not isinstance(spec, Mapping):
        raise FilterError("", "must be an object mapping payload paths to conditions")
    if len(spec) > MAX_FILTER_ENTRIES:
        raise FilterError("", f"may hold at most {MAX_FILTER_ENTRIES} entries")
    clauses = []
    for key, condition in spec.items():
        if not isinstance(key, str) or not key or any(not s for s in key.split(".")):
            raise FilterError(str(key), "a path is dot-separated non-empty keys")
        is_operator_object = isinstance(condition, dict) and any(
            isinstance(k, str) and k.startswith("$") for k in condition
        )
        if is_operator_object:
            if not all(isinstance(k, str) and k.startswith("$") for k in condition):
                raise FilterError(key, "do not mix operators and literal keys in one object")
            predicates = tuple(_operator(key, op, arg) for op, arg in condition.items())
        else:
            predicates = (_operator(key, "$eq", condition),)
        clauses.append(_Clause(tuple(key.split(".")), predicates))
    return Filter(tuple(clauses))
