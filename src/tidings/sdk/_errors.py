"""The one exception the SDK raises: `TidingsError`, built from the API's JSON error body
(`{"error": {"code", "message", "field"}}`) or from a failure to get any answer.

Owns mapping what went wrong to `code`, `field`, `status`, `message`; httpx2's own
exceptions never leave the SDK (they are kept as `__cause__`). Must never do I/O.
"""

from __future__ import annotations

import msgspec


class TidingsError(Exception):
    """A call that failed.

    `status` is the HTTP status, None when no answer came (`code` is then
    `connection_error` or `timeout`); `code` the API's snake_case code (`invalid_field`,
    `not_found`, `conflict`, ...), or the SDK's for an answer that is not the API's:
    `http_error` (an error without the API's JSON body, a proxy's page), `not_json`,
    `unexpected_answer` (JSON without the API's fields); `field` the offending field or
    None; `message` the API's sentence.
    """

    def __init__(
        self, code: str, message: str, *, status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.field = field

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field and self.field not in self.message else ""
        status = f"HTTP {self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"TidingsError(code={self.code!r}, status={self.status!r}, "
            f"field={self.field!r}, message={self.message!r})"
        )


class _Body(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class _Wrapped(msgspec.Struct):
    error: _Body


_decode = msgspec.json.Decoder(_Wrapped).decode


def error_of(status: int, raw: bytes) -> TidingsError:
    """The error a non-2xx answer stands for; a body that is not the API's JSON error
    (a proxy's HTML page) becomes code `http_error` with the body's start as message."""
    try:
        body = _decode(raw).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = " ".join(raw[:200].decode("utf-8", "replace").split()) or "(no body)"
        return TidingsError("http_error", f"HTTP {status}: {text}", status=status)
    return TidingsError(body.code, body.message, status=status, field=body.field)
