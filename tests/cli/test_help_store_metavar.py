"""Every subcommand's --help names its --store value as the top-level command does
(``--store URL``), not by click's type name (``--store TEXT``)."""

from __future__ import annotations

import click
from click.testing import CliRunner

from pepperpy.event.cli._app import app


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_store_option_is_shown_as_a_url() -> None:
    runner = CliRunner()
    with_store = []
    for path in _commands(app):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "--store TEXT" not in result.output, path
        if "--store URL" in result.output:
            with_store.append(path)
    assert ("read",) in with_store and ("stats",) in with_store
