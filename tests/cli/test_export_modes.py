"""``export FILE`` and file modes: a new export is readable by its owner only, and an
export over an existing file (or a symbolic link's target) keeps that file's mode."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pepperpy.event import Event

from .conftest import command_env
from .test_cli import seed

pytestmark = pytest.mark.skipif(not hasattr(os, "fchmod"), reason="no POSIX file modes")


def export(tmp_path: Path, store_url: str, file: str) -> None:
    """``export FILE`` under the common umask 022, which makes new files 0644."""
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", "export", file, "--store", store_url],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
        umask=0o022,
    )
    assert done.returncode == 0, done.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def seeded(store_url: str) -> str:
    seed(store_url, [("s.1", Event("t.x", {"secret": i})) for i in range(3)])
    return store_url


@pytest.mark.parametrize("kept", [0o600, 0o640, 0o444])
def test_an_existing_file_keeps_its_mode(seeded: str, tmp_path: Path, kept: int) -> None:
    backup = tmp_path / "backup.jsonl"
    backup.write_text("old\n", encoding="utf-8")
    backup.chmod(kept)
    export(tmp_path, seeded, "backup.jsonl")
    assert mode(backup) == kept
    assert len(backup.read_text(encoding="utf-8").splitlines()) == 5  # it was replaced
    assert sorted(os.listdir(tmp_path)) == ["backup.jsonl", "store.db"]


def test_a_symlinks_target_keeps_its_mode(seeded: str, tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o600)
    (tmp_path / "backup.jsonl").symlink_to(target)
    export(tmp_path, seeded, "backup.jsonl")
    assert mode(target) == 0o600
    assert (tmp_path / "backup.jsonl").is_symlink()


def test_a_new_file_is_readable_by_its_owner_only(seeded: str, tmp_path: Path) -> None:
    export(tmp_path, seeded, "backup.jsonl")
    assert mode(tmp_path / "backup.jsonl") == 0o600


def test_a_partial_file_left_by_a_killed_export_is_reset(seeded: str, tmp_path: Path) -> None:
    stale = tmp_path / "backup.jsonl.partial"
    stale.write_text("half\n", encoding="utf-8")
    stale.chmod(0o666)
    export(tmp_path, seeded, "backup.jsonl")
    assert mode(tmp_path / "backup.jsonl") == 0o600
    assert not stale.exists()


@pytest.mark.skipif(getattr(os, "geteuid", lambda: -1)() != 0, reason="only root may chown")
def test_run_as_root_an_existing_file_keeps_its_owner(seeded: str, tmp_path: Path) -> None:
    backup = tmp_path / "backup.jsonl"
    backup.write_text("old\n", encoding="utf-8")
    os.chown(backup, 65534, 65534)  # nobody
    backup.chmod(0o600)
    export(tmp_path, seeded, "backup.jsonl")
    assert (backup.stat().st_uid, backup.stat().st_gid) == (65534, 65534)
    assert mode(backup) == 0o600
