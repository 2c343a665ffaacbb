"""Input rules that span fields or need parsing, and the error shape they produce.

`FieldError` is what every layer raises for bad input: a machine-readable code, a
message for people and the dotted path of the offending field. `from_msgspec` turns
msgspec's decoding errors into one. Must never do I/O (URL checks here are syntactic;
address checks against private ranges happen at connect time in the transport, and a
bus URL's allow-list is checked by the API and the bus transports).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import msgspec

from tidings.model import (
    DestinationSpec,
    EventIn,
    GroupSpec,
    NatsSpec,
    RedisStreamSpec,
    WebhookSpec,
)
from tidings.policy.buses import bus_url_error, name_error, subject_error
from tidings.policy.filters import FilterError, compile_filter
from tidings.policy.jsontext import first_bad_string, format_path, text_problem
from tidings.policy.topics import pattern_error, topic_error


class FieldError(ValueError):
    """Bad input, naming the field (`events[3].topic`) it concerns."""

    def __init__(self, field: str | None, message: str, code: str = "invalid_field") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_NAMED = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]+)`")


def from_msgspec(error: msgspec.MsgspecError, prefix: str = "") -> FieldError:
    """Convert a msgspec decode/validation error into a FieldError naming the field."""
    if not isinstance(error, msgspec.ValidationError):
        return FieldError(None, f"body is not valid JSON: {error}", code="invalid_json")
    match = _AT.match(str(error))
    assert match is not None  # the pattern matches any string
    message = match.group("msg")
    path = (match.group("path") or "").lstrip(".")
    named = _NAMED.search(message)
    if named:
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    if prefix:
        path = f"{prefix}.{path}" if path and not path.startswith("[") else f"{prefix}{path}"
    code = (
        "missing_field" if message.startswith("Object missing required field") else "invalid_field"
    )
    return FieldError(path or None, message, code=code)


def url_error(url: str) -> str | None:
    """Why `url` cannot be a webhook target (syntax only), or None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials; put them in the receiver's own configuration"
    if parts.fragment:
        return "must not have a #fragment"
    return None


def check_destination(spec: DestinationSpec) -> None:
    """Raise FieldError for the first rule `spec` breaks beyond its shape."""
    for i, pattern in enumerate(spec.topics):
        problem = pattern_error(pattern)
        if problem:
            raise FieldError(f"topics[{i}]", f"topic pattern {pattern!r} {problem}")
    if len(set(spec.topics)) != len(spec.topics):
        raise FieldError("topics", "topics must not repeat")
    _check_kind(spec)
    if spec.alert_url is not None and (problem := url_error(spec.alert_url)):
        raise FieldError("alert_url", f"alert_url {problem}")
    if spec.filter is not None:
        try:
            compile_filter(spec.filter)
        except FilterError as exc:
            raise FieldError(
                f"filter.{exc.path}" if exc.path else "filter", f"filter {exc.message}"
            ) from None
    if spec.retry.initial_ms > spec.retry.max_ms:
        raise FieldError("retry.initial_ms", "retry.initial_ms must not exceed retry.max_ms")


def _check_kind(spec: DestinationSpec) -> None:
    """The rules of the kind's own fields (the allow-list of bus URLs is the API's)."""
    if isinstance(spec, GroupSpec):
        # Its name and lease are shapes (model.GroupSpec); nothing is sent to it, so what
        # only shapes sending has no meaning here: refused rather than silently ignored.
        if spec.rate_limit_per_s is not None:
            raise FieldError(
                "rate_limit_per_s", "a group has no rate limit: its consumers lease what they can"
            )
        if spec.alert_url is not None:
            raise FieldError("alert_url", "a group sends no alerts (yet): leave alert_url out")
        return
    if isinstance(spec, WebhookSpec):
        if problem := url_error(spec.url):
            raise FieldError("url", f"url {problem}")
        return
    if problem := bus_url_error(spec.url, spec.kind):
        raise FieldError("url", f"url {problem}")
    if isinstance(spec, NatsSpec):
        if problem := subject_error(spec.subject):
            raise FieldError("subject", f"subject {problem}")
    else:
        field, name = (
            ("stream", spec.stream)
            if isinstance(spec, RedisStreamSpec)
            else ("channel", spec.channel)
        )
        if problem := name_error(name):
            raise FieldError(field, f"{field} {problem}")


def check_event(event: EventIn, max_payload_bytes: int, field_prefix: str = "") -> None:
    """Raise FieldError (code `payload_too_large` for size) for a bad event."""
    problem = topic_error(event.topic)
    if problem:
        raise FieldError(f"{field_prefix}topic", f"topic {problem}")
    if len(event.payload) > max_payload_bytes:
        raise FieldError(
            f"{field_prefix}payload",
            f"payload is {len(event.payload)} bytes; the limit is {max_payload_bytes}",
            code="payload_too_large",
        )
    try:
        # msgspec passes a raw payload's strings through unchecked; JSON text is UTF-8
        # (RFC 8259), and the store keeps and forwards it as such.
        str(event.payload, "utf-8")
    except UnicodeDecodeError as exc:
        raise FieldError(
            f"{field_prefix}payload", f"payload is not valid UTF-8 (byte {exc.start})"
        ) from None


def unstorable_field(value: object) -> FieldError | None:
    """A FieldError for the first string (or key) of a decoded body that no store can
    keep (a NUL, a lone surrogate), outside event payloads: those are JSON kept as bytes,
    where an escaped NUL is as good as any other character."""
    found = first_bad_string(value, text_problem)
    if found is None:
        return None
    parts, problem = found
    path = format_path(parts, most=len(parts))
    return FieldError(path, f"{path or 'the body'} {problem}")
