"""A relative SQLite path in --store says where it points and how to write the absolute one.

``sqlite:///tmp/x/e.db`` (three slashes) is ``tmp/x/e.db`` in the working directory; the
error used to show only ``'tmp/x/e.db'``.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import Cli
from .test_cli import one_line_error


def test_a_missing_relative_store_names_the_working_directory(cli: Cli, tmp_path: Path) -> None:
    result = cli("stats", "--store", "sqlite:///var/w/events.db")
    one_line_error(
        result,
        "no event store at 'var/w/events.db'",
        f"relative to the working directory {str(tmp_path)!r}",
        "for the absolute path use sqlite:////var/w/events.db",
    )


def test_a_relative_store_in_a_missing_directory_says_so_too(cli: Cli, tmp_path: Path) -> None:
    result = cli("append", "s.1", "t.x", "{}", "--store", "sqlite:///nowhere/events.db")
    one_line_error(
        result,
        "directory 'nowhere' does not exist",
        f"relative to the working directory {str(tmp_path)!r}",
        "sqlite:////nowhere/events.db",
    )
    assert not (tmp_path / "nowhere").exists()


def test_an_absolute_path_gets_no_hint(cli: Cli, tmp_path: Path) -> None:
    result = cli("stats", "--store", f"sqlite:///{tmp_path}/missing.db")
    one_line_error(result, f"no event store at '{tmp_path}/missing.db'")
    assert "relative to" not in result.err


def test_the_default_store_gets_no_absolute_path_hint(cli: Cli, tmp_path: Path) -> None:
    """``events.db`` (the default) has no directory a fourth slash could make absolute:
    the error suggested ``sqlite:////events.db``, a file at the root, and said it came
    from --store, which was never typed."""
    result = cli("stats")
    one_line_error(
        result,
        f"no event store at 'events.db', relative to the working directory {str(tmp_path)!r}",
        "(from the default store;",
        "or pass --store",
    )
    assert "sqlite:////" not in result.err


def test_an_error_names_the_environment_variable_the_store_came_from(cli: Cli) -> None:
    env = {"PEPPERPY_EVENT_STORE": "sqlite:///nowhere/events.db"}
    result = cli("append", "s.1", "t.x", "{}", env=env)
    one_line_error(result, "directory 'nowhere' does not exist (from PEPPERPY_EVENT_STORE,")
    assert "--store" not in result.err
    result = cli("stats", env=env)
    one_line_error(result, "(from PEPPERPY_EVENT_STORE;", "or pass --store")
    result = cli("stats", "--store", "sqlite:///nowhere/events.db", env=env)
    one_line_error(result, "(from --store;")
    assert "or pass --store" not in result.err


def test_copy_names_the_argument_the_store_came_from(cli: Cli, tmp_path: Path) -> None:
    result = cli("copy", "sqlite:///missing.db", "memory://")
    one_line_error(result, "no event store at 'missing.db'", "(from SOURCE_URL;")
    assert "--store" not in result.err
    result = cli("copy", "memory://", "sqlite:///nowhere/copy.db")
    one_line_error(result, "directory 'nowhere' does not exist (from DESTINATION_URL,")
    assert "--store" not in result.err
