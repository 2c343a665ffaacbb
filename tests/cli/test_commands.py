"""The shape of the `tidings` command tree, without a server: every client command takes
the same `--url` and `--api-key`, no command has a flag of another spelling for them,
`--help` names only what exists, and docs/cli.md documents every command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tidings.cli import main

SERVER_ROLES = {"serve", "api", "worker"}
ROOT = Path(__file__).resolve().parents[2]


def leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from leaves(command, path + " ")
        else:
            yield path, command


CLIENT_COMMANDS = [(p, c) for p, c in leaves(main) if p not in SERVER_ROLES]


def test_the_commands_cover_the_api() -> None:
    assert {p for p, _ in leaves(main)} == {
        "api",
        "bench",
        "consume",
        "deliveries list",
        "deliveries purge",
        "deliveries retry",
        "deliveries show",
        "destinations create",
        "destinations delete",
        "destinations list",
        "destinations pause",
        "destinations replay",
        "destinations resume",
        "destinations rotate-secret",
        "destinations show",
        "destinations update",
        "dlq list",
        "dlq retry",
        "events chain",
        "events list",
        "events show",
        "ingest",
        "publish",
        "serve",
        "upload",
        "uploads show",
        "worker",
    }


@pytest.mark.parametrize(
    "command", [c for _, c in CLIENT_COMMANDS], ids=[p for p, _ in CLIENT_COMMANDS]
)
def test_every_client_command_takes_url_and_api_key_the_same_way(command: click.Command) -> None:
    options = {o.name: o for o in command.params if isinstance(o, click.Option)}
    url, key = options["url"], options["api_key"]
    assert url.opts == ["--url"] and url.envvar == "TIDINGS_URL"
    assert url.default == "http://127.0.0.1:8080"
    assert key.opts == ["--api-key"] and key.envvar == "TIDINGS_API_KEY"
    spellings = {opt for o in options.values() for opt in o.opts}
    assert "--api-url" not in spellings
    # `--url` means the server's URL, and nothing else does.
    assert [o for o in options.values() if "--url" in o.opts] == [url]


def test_help_names_only_what_exists() -> None:
    runner = CliRunner()
    texts = [runner.invoke(main, ["--help"]).output]
    texts += [runner.invoke(main, [*path.split(), "--help"]).output for path, _ in leaves(main)]
    for group in ("destinations", "events", "deliveries", "dlq", "uploads"):
        texts.append(runner.invoke(main, [group, "--help"]).output)
    text = "\n".join(texts).lower()
    for absent in ("pull consumer", "consumer group", "dashboard"):  # not built yet
        assert absent not in text, absent
    top = texts[0]
    assert "webhooks" in top and "TIDINGS_URL" in top
    for name in main.commands:
        assert f"  {name} " in top


def test_docs_cli_md_documents_every_command() -> None:
    """Each command has a heading of its own: ### `tidings destinations create`."""
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = [
        line.removeprefix("### `tidings ").removesuffix("`")
        for line in page.splitlines()
        if line.startswith("### `tidings ")
    ]
    assert sorted(documented) == sorted(p for p, _ in leaves(main))
