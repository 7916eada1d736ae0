"""``sqlite://events.db`` (two slashes) is refused, naming the two forms that work.

It used to be taken, silently, as the file ``events.db`` relative to the working
directory, which no document promised; SQLAlchemy, whose URL forms the store's follow
(``sqlite:///relative.db``, ``sqlite:////absolute.db``), reads ``events.db`` there as a
host and refuses it. Refused the same everywhere the store's parser is used: the store,
its checkpoint store and the CLI's ``--store``; no file is made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event._checkpoints import open_checkpoint_store
from pepperpy.event.store.sqlite import parse_url

HINT = (
    "an SQLite URL has no host, so its path starts after three slashes: "
    "sqlite:///{path} for {path!r} relative to the working directory, "
    "sqlite:////abs/path/events.db for an absolute path"
)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite://events.db", "events.db"),
        ("SQLite://data/events.db?mode=ro", "data/events.db"),
        ("sqlite://localhost/var/lib/events.db", "localhost/var/lib/events.db"),
    ],
)
async def test_two_slashes_are_refused_with_both_forms_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, path: str
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = f"{url!r}: {HINT.format(path=path)}"
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url)
    assert str(caught.value) == expected
    with pytest.raises(ConfigurationError) as caught:
        EventStore(url)
    assert str(caught.value) == expected
    with pytest.raises(ConfigurationError) as caught:
        open_checkpoint_store(url)
    assert str(caught.value) == expected
    assert list(tmp_path.iterdir()) == []


def test_three_and_four_slashes_still_open_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_url("sqlite:///events.db").path == "events.db"
    assert parse_url(f"sqlite:///{tmp_path}/events.db").path == f"{tmp_path}/events.db"
    with pytest.raises(ConfigurationError, match="for a store in memory use memory://"):
        parse_url("sqlite://:memory:")


def test_the_cli_says_it_in_one_line_and_makes_no_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", "append", "s", "t", "{}"],
        cwd=tmp_path,
        env={**os.environ, "PEPPERPY_EVENT_STORE": "sqlite://events.db"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "sqlite:///events.db for 'events.db' relative to the working directory" in done.stderr
    assert list(tmp_path.iterdir()) == []
