"""Named SQL queries, one file per dialect (`-- name: foo` before each statement), and
versioned migrations (`migrations/<dialect>/NNNN_title.sql`)."""

from __future__ import annotations

import re
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.M)


def load_queries(dialect: str) -> dict[str, str]:
    text = resources.files(__package__).joinpath(f"{dialect}.sql").read_text()
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip()
    return queries


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) in version order."""
    folder = resources.files(__package__).joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)
