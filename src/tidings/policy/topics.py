"""Topic names and subscription patterns.

A topic is one or more dot-separated segments of letters, digits, `_` and `-`
(`order.created`, `billing.invoice-paid`). A pattern is a topic, or a topic whose last
segment is `*`: `order.*` matches every topic that starts with `order.` and has at least
one more segment (`order.created`, `order.created.v2`), but not `order` itself; `*` alone
matches every topic. Owns parsing and matching; must never do I/O.
"""

from __future__ import annotations

import re

MAX_TOPIC_LENGTH = 255
_SEGMENT = r"[A-Za-z0-9_-]+"
TOPIC_RE = re.compile(rf"^{_SEGMENT}(?:\.{_SEGMENT})*\Z")
PATTERN_RE = re.compile(rf"^(?:\*|{_SEGMENT}(?:\.{_SEGMENT})*(?:\.\*)?)\Z")
# The same two as JSON Schema (ECMA-262) patterns, for the OpenAPI document.
TOPIC_SCHEMA = rf"^{_SEGMENT}(\.{_SEGMENT})*$"
PATTERN_SCHEMA = rf"^(\*|{_SEGMENT}(\.{_SEGMENT})*(\.\*)?)$"


def topic_error(topic: str) -> str | None:
    """Why `topic` is not a valid topic name, or None when it is."""
    if not topic:
        return "must not be empty"
    if len(topic) > MAX_TOPIC_LENGTH:
        return f"must be at most {MAX_TOPIC_LENGTH} characters"
    if not TOPIC_RE.match(topic):
        return "must be dot-separated segments of letters, digits, '_' and '-'"
    return None


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid subscription pattern, or None when it is."""
    if not pattern:
        return "must not be empty"
    if len(pattern) > MAX_TOPIC_LENGTH:
        return f"must be at most {MAX_TOPIC_LENGTH} characters"
    if not PATTERN_RE.match(pattern):
        return "must be a topic, optionally ending in a '.*' segment wildcard, or '*'"
    return None


def matches(pattern: str, topic: str) -> bool:
    """Does subscription `pattern` match `topic`? Both are assumed valid."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        prefix = pattern[:-1]  # keep the dot: "order." must not match "orders.x"
        return topic.startswith(prefix) and len(topic) > len(prefix)
    return pattern == topic


def pattern_prefix(pattern: str) -> str | None:
    """The literal prefix a wildcard pattern requires, or None for an exact pattern.

    `*` gives "", `order.*` gives "order.". Stores use it to filter topics with an index.
    """
    if pattern == "*":
        return ""
    if pattern.endswith(".*"):
        return pattern[:-1]
    return None
