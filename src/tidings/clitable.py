"""Text for a person at a terminal: tables with a header row, records, masked secrets.

Owns turning the API's JSON values into lines: one cell per value (None as `-`, lists
joined, objects as compact JSON, times to the second), control characters escaped (a
receiver's error text must not drive the terminal), long cells cut with `…` by display
width (wide characters count two). Must never do I/O: no printing, no HTTP, no click;
the commands print what it returns.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ELLIPSIS = "…"
NONE = "-"
GAP = "  "
SECRET_PREFIX = "whsec_"
SECRET_FIELDS = frozenset({"secret"})
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_SPACES = re.compile(r"[^\S ]")  # whitespace but the plain space
_JOINERS = frozenset("\u200c\u200d")  # zero-width (non-)joiners: parts of emoji and scripts


def char_width(ch: str) -> int:
    """Columns a character takes: 2 for wide East Asian ones, 0 for combining marks."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def clean(text: str) -> str:
    """One line, safe to print: each line break or tab becomes a space, and other control
    or format characters (ESC, bidi overrides, ...) are shown as escapes."""
    out: list[str] = []
    for ch in _SPACES.sub(" ", text):
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs") or (category == "Cf" and ch not in _JOINERS):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def truncate(text: str, most: int | None) -> str:
    """`text` cut to at most `most` columns, its end replaced by `…` when cut."""
    if most is None or width(text) <= most:
        return text
    if most <= 0:
        return ""
    kept: list[str] = []
    used = 0
    for ch in text:
        w = char_width(ch)
        if used + w > most - 1:
            break
        kept.append(ch)
        used += w
    return "".join(kept) + ELLIPSIS


def when(value: str) -> str:
    """An ISO-8601 time to the second (`2026-11-26T10:11:12Z`): fractions only clutter."""
    match = _ISO.match(value)
    return f"{match[1]}T{match[2]}{match[3]}" if match else value


def cell(value: Any) -> str:
    """One value as a cell: None and "" `-`, booleans yes/no, lists of strings joined by
    commas, other lists and objects as compact JSON, everything on one clean line."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return clean(",".join(value)) if value else NONE
    if isinstance(value, dict | list):
        return clean(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    return clean(str(value))


Getter = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Column:
    """A column: its header, the field it shows (a key, or a function of the row), the
    most columns a cell may take (longer ones are cut), its alignment, and whether it
    holds times (shown to the second)."""

    header: str
    field: str | Getter
    most: int | None = None
    align: Literal["left", "right"] = "left"
    time: bool = False

    def value(self, row: Mapping[str, Any]) -> str:
        raw = self.field(row) if callable(self.field) else row.get(self.field)
        if self.time and isinstance(raw, str):
            raw = when(raw)
        return truncate(cell(raw), self.most)


def _pad(text: str, columns: int, align: str) -> str:
    fill = " " * (columns - width(text))
    return fill + text if align == "right" else text + fill


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A header row, then one line per row; columns as wide as their widest cell, two
    spaces apart; no trailing spaces. With no rows, the header row alone."""
    cells = [[c.value(row) for c in columns] for row in rows]
    headers = [c.header for c in columns]
    widths = [max([width(h), *(width(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = []
    for line in [headers, *cells]:
        parts = [_pad(text, widths[i], columns[i].align) for i, text in enumerate(line)]
        lines.append(GAP.join(parts).rstrip())
    return "\n".join(lines)


def record(pairs: Iterable[tuple[str, Any]]) -> str:
    """One labelled line per field (`label  value`), labels padded to the longest; values
    whole (a record is for the details a table cuts), each on one clean line."""
    items = [(label, cell(value)) for label, value in pairs]
    if not items:
        return ""
    pad = max(width(label) for label, _ in items)
    return "\n".join(f"{_pad(label, pad, 'left')}{GAP}{value}".rstrip() for label, value in items)


def mask_secret(secret: str) -> str:
    """`whsec_…`: the kind of secret stays visible, the key bytes do not."""
    if secret.startswith(SECRET_PREFIX):
        return SECRET_PREFIX + ELLIPSIS
    return ELLIPSIS if secret else secret


def masked(value: Any) -> Any:
    """A copy of a JSON value with every `secret` field masked, at any depth."""
    if isinstance(value, dict):
        return {
            k: mask_secret(v) if k in SECRET_FIELDS and isinstance(v, str) else masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def plural(n: int, one: str, many: str | None = None) -> str:
    """`1 delivery`, `2 deliveries`."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def duration(seconds: float) -> str:
    """`42 s`, `3 min 5 s`, `2 h 10 min`: how long, to the unit a person reads."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def rate_and_eta(done: int, total: int | None, elapsed_s: float, unit: str) -> str:
    """`12,300 rows/s, ETA 5 s` for a run `done` of `total` into `elapsed_s` seconds;
    no ETA without a total, or before anything is done."""
    if elapsed_s <= 0 or done <= 0:
        return f"- {unit}/s"
    rate = done / elapsed_s
    text = f"{rate:,.0f} {unit}/s"
    if total is not None and total > done:
        text += f", ETA {duration((total - done) / rate)}"
    return text
