"""Directories that SQLite cannot make its ``-wal`` and ``-shm`` files in, three ways.

* ``"mount"``: a read-only file system (a tmpfs mounted, filled, remounted ``ro``), as
  a Docker ``:ro`` volume or a Kubernetes ``readOnly`` one; opening a file there for
  writing fails with ``EROFS``, even for root. Needs root (``mount``).
* ``"immutable"``: a directory with the immutable attribute (``chattr +i``): ``EPERM``,
  even for root. Needs root (``CAP_LINUX_IMMUTABLE``) and a file system with
  attributes (ext4, xfs; not tmpfs).
* ``"permission"``: a 0555 directory: ``EACCES``. Root writes through permission bits, so
  the process reading it drops its override first (``tests/store/unwritable.py``).

Where one cannot be made (not root, a file system without attributes, no ``mount`` in a
container), the test using it is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

#: what the error says of each kind of directory
WHY = {
    "mount": "a read-only file system",
    "immutable": "immutable: chattr +i",
    "permission": "no permission",
}

#: why a kind of directory cannot be made without root
_ROOT_ONLY = {
    "mount": "mounting a read-only file system needs root",
    "immutable": "chattr +i needs root (CAP_LINUX_IMMUTABLE)",
}


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def unwritable_directory(directory: Path, kind: str, files: list[Path]) -> Iterator[str]:
    """``directory`` (made here) holding copies of ``files``, made unwritable as ``kind``
    says, for the block; yields what the error should say of it (:data:`WHY`)."""
    if kind in _ROOT_ONLY and os.geteuid() != 0:
        pytest.skip(_ROOT_ONLY[kind])
    directory.mkdir()
    if kind == "mount":
        mounted = _run("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(directory))
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        for file in files:
            shutil.copy2(file, directory / file.name)
        if kind == "mount":
            remounted = _run("mount", "-o", "remount,ro", str(directory))
            assert remounted.returncode == 0, remounted.stderr
        elif kind == "immutable":
            marked = _run("chattr", "+i", str(directory))
            if marked.returncode != 0:
                pytest.skip(f"chattr +i is not possible here: {marked.stderr.strip()}")
        else:
            directory.chmod(0o555)
        yield WHY[kind]
    finally:
        if kind == "mount":
            unmounted = _run("umount", str(directory))
            if unmounted.returncode != 0:
                _run("umount", "-l", str(directory))
        elif kind == "immutable":
            _run("chattr", "-i", str(directory))
        else:
            directory.chmod(0o755)
