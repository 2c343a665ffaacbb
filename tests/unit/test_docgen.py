"""tidings.docgen: the settings table names every setting with its default, and
`splice` replaces exactly what lies between a part's markers."""

from __future__ import annotations

import pytest

from tidings import docgen
from tidings.config import SETTING_DOCS, SettingDoc, Settings
from tidings.docgen import (
    PAGES,
    SETTINGS_PART,
    MarkersMissing,
    begin_marker,
    end_marker,
    render_page,
    settings_table,
    splice,
)


def rows() -> dict[str, list[str]]:
    """variable -> its cells, from the rendered table."""
    found = {}
    for line in settings_table().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        found[cells[0].strip("`")] = cells
    return found


def test_every_setting_has_a_row_in_order() -> None:
    assert list(rows()) == [d.env for d in SETTING_DOCS] + ["TIDINGS_CONFIG"]


def test_defaults_come_from_settings() -> None:
    table, defaults = rows(), Settings()
    assert table["TIDINGS_PORT"][1] == f"`{defaults.port}`"
    assert table["TIDINGS_DATABASE_URL"][1] == f"`{defaults.database_url}`"
    assert table["TIDINGS_ALLOW_PRIVATE_TARGETS"][1] == "`0`"
    assert table["TIDINGS_REDIS_URL"][1] == "unset"
    assert table["TIDINGS_SENDER_PROCESSES"][1].startswith("one per CPU")


def test_meanings_come_from_setting_docs() -> None:
    table = rows()
    for doc in SETTING_DOCS:
        assert table[doc.env][2] == doc.meaning.replace("|", "\\|")


def test_a_bar_in_a_meaning_does_not_split_the_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docgen, "SETTING_DOCS", (SettingDoc("port", "json | text"),))
    assert "| `TIDINGS_PORT` | `8080` | json \\| text |" in docgen.settings_table()


def test_splice_replaces_only_between_the_markers() -> None:
    text = f"before\n{begin_marker('p')}\nold\nlines\n{end_marker('p')}\nafter\n"
    assert splice(text, "p", "new\n") == (
        f"before\n{begin_marker('p')}\nnew\n{end_marker('p')}\nafter\n"
    )


def test_splice_is_idempotent_and_adds_a_final_newline() -> None:
    text = f"{begin_marker('p')}\n{end_marker('p')}"
    once = splice(text, "p", "table")
    assert once == f"{begin_marker('p')}\ntable\n{end_marker('p')}"
    assert splice(once, "p", "table") == once


def test_generated_text_is_taken_literally() -> None:
    text = f"{begin_marker('p')}\n{end_marker('p')}"
    assert r"\1 \g<0>" in splice(text, "p", r"\1 \g<0>")


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all",
        f"{begin_marker('p')}\nno end",
        f"{begin_marker('p')}\n{end_marker('p')}\n{begin_marker('p')}\n{end_marker('p')}",
        f"{begin_marker('other')}\n{end_marker('other')}",
    ],
)
def test_splice_refuses_text_without_exactly_one_pair(text: str) -> None:
    with pytest.raises(MarkersMissing):
        splice(text, "p", "x")


def test_the_configuration_page_holds_the_settings_part() -> None:
    assert PAGES["docs/configuration.md"] == ((SETTINGS_PART, settings_table),)
    page = f"# Configuration\n{begin_marker(SETTINGS_PART)}\n{end_marker(SETTINGS_PART)}\n"
    assert settings_table() in render_page("docs/configuration.md", page)
