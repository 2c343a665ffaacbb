"""The documentation agrees with the code: the generated settings table is what
`make docs` writes, docs/api.md names exactly the operations (and their query and header
parameters) of the live `/openapi.json`, every `METHOD /path` the pages mention exists,
and every link between the pages resolves (never into a checkout's ../shared)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tidings.docgen import PAGES, render_page

ROOT = Path(__file__).resolve().parents[2]
PAGES_ON_DISK = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
METHODS = "GET|POST|PUT|PATCH|DELETE"
HEADING = re.compile(rf"^### `({METHODS}) (/[^`\s]*)`\s*$")
MENTION = re.compile(rf"`({METHODS}) (/[^`\s?]*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Pages another branch writes; a link to one is checked once the page exists.
WRITTEN_ELSEWHERE: set[str] = set()


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_pages_exist() -> None:
    names = {p.name for p in PAGES_ON_DISK}
    assert {"README.md", "api.md", "configuration.md"} <= names


@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_parts_are_what_make_docs_writes(page: str) -> None:
    text = read(ROOT / page)
    assert render_page(page, text) == text, f"{page} is stale: run `make docs`"


# ------------------------------------------------------------------- docs/api.md


def api_sections(text: str) -> dict[tuple[str, str], str]:
    """(METHOD, path) of each `### `METHOD /path`` heading -> the text under it."""
    sections: dict[tuple[str, str], str] = {}
    current: tuple[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            match = HEADING.match(line)
            current = (match[1], match[2]) if match else None
            if current is not None:
                assert current not in sections, f"docs/api.md has {current} twice"
                sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


@pytest.fixture
async def openapi(api: Api) -> dict[str, Any]:
    status, document = await api.call("GET", "/openapi.json")
    assert status == 200 and isinstance(document, dict)
    return document


async def test_api_md_names_every_operation_of_the_live_document(
    openapi: dict[str, Any],
) -> None:
    documented = set(api_sections(read(ROOT / "docs" / "api.md")))
    served = set(operations(openapi))
    assert sorted(served - documented) == [], "operations docs/api.md lacks"
    assert sorted(documented - served) == [], "operations docs/api.md names but nobody serves"


async def test_api_md_names_every_parameter(openapi: dict[str, Any]) -> None:
    sections = api_sections(read(ROOT / "docs" / "api.md"))
    missing = [
        (op, p["in"], p["name"])
        for op, operation in operations(openapi).items()
        for p in operation.get("parameters", ())
        if p["in"] in ("query", "header") and f"`{p['name']}`" not in sections.get(op, "")
    ]
    assert missing == []


@pytest.mark.parametrize("page", PAGES_ON_DISK, ids=lambda p: p.name)
async def test_every_operation_a_page_mentions_exists(page: Path, openapi: dict[str, Any]) -> None:
    served = set(operations(openapi))
    mentioned = {(m[1], m[2]) for m in MENTION.finditer(read(page))}
    assert sorted(mentioned - served) == []


# ------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    in_code = False
    found = set()
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif line.startswith("#") and not in_code:
            found.add(slug(line))
    return found


@pytest.mark.parametrize("page", PAGES_ON_DISK, ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    text = read(page)
    assert "shared/" not in text, f"{page.name} points into ../shared, which no clone has"
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s)://, mailto: ...
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            if str(linked.relative_to(ROOT)) not in WRITTEN_ELSEWHERE:
                broken.append(target)
            continue
        if anchor and linked.suffix == ".md" and anchor not in anchors(read(linked)):
            broken.append(target)
    assert broken == []


def test_the_readme_stays_short() -> None:
    assert len(read(ROOT / "README.md").splitlines()) <= 250
