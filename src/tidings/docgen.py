"""The generated parts of the documentation, made from the code so the two cannot drift.

Today one part: docs/configuration.md's table of settings, built from config.py's
SETTING_DOCS (the meanings) and Settings (the defaults). `splice` puts a generated part
between its markers in a page's text. Owns rendering that text; must never read or write
files (tools/gen_docs.py writes the pages, `make docs` runs it, and tests/docs checks
that the committed pages hold what this module renders).

    python -m tidings.docgen    # prints the settings table
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tidings.config import CONFIG_FILE_DOC, SETTING_DOCS, SettingDoc, Settings

SETTINGS_PART = "settings"


def begin_marker(part: str) -> str:
    return f"<!-- BEGIN GENERATED {part}: edit src/tidings/config.py, then run `make docs` -->"


def end_marker(part: str) -> str:
    return f"<!-- END GENERATED {part} -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the table cell


def _default(doc: SettingDoc, defaults: Settings) -> str:
    if doc.default is not None:
        return doc.default
    value = getattr(defaults, doc.name)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    return f"`{value}`"


def settings_table() -> str:
    """The Markdown table of every setting: variable, default, meaning."""
    defaults = Settings()
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for doc in SETTING_DOCS:
        rows.append(f"| `{doc.env}` | {_cell(_default(doc, defaults))} | {_cell(doc.meaning)} |")
    rows.append(f"| `TIDINGS_CONFIG` | unset | {_cell(CONFIG_FILE_DOC)} |")
    return "\n".join(rows) + "\n"


class MarkersMissing(ValueError):
    pass


def splice(text: str, part: str, generated: str) -> str:
    """`text` with what lies between `part`'s markers replaced by `generated`."""
    pattern = re.compile(
        re.escape(begin_marker(part)) + r"\n.*?" + re.escape(end_marker(part)), re.DOTALL
    )
    if len(pattern.findall(text)) != 1:
        raise MarkersMissing(f"expected one {begin_marker(part)!r} ... {end_marker(part)!r}")
    body = generated if generated.endswith("\n") else generated + "\n"
    return pattern.sub(lambda _: f"{begin_marker(part)}\n{body}{end_marker(part)}", text)


# Each page (relative to the repository) and the parts generated into it, in order.
PAGES: dict[str, tuple[tuple[str, Callable[[], str]], ...]] = {
    "docs/configuration.md": ((SETTINGS_PART, settings_table),),
}


def render_page(page: str, text: str) -> str:
    """A page's text with every generated part brought up to date."""
    for part, render in PAGES[page]:
        text = splice(text, part, render())
    return text


if __name__ == "__main__":
    print(settings_table(), end="")
