"""Running a script on files its process cannot write, for the tests of SQLite files
(the store, checkpoints, keys) that are read-only or on a disk that fills up.

The tests run as root, and root writes through any permission bits. A script made with
:data:`DROP_WRITE_OVERRIDE` calls ``drop_write_override()`` first: its process drops only
``CAP_DAC_OVERRIDE`` (``capset``), keeping ``CAP_DAC_READ_SEARCH``, so it still reaches
and reads ``tmp_path`` (under the 0700 ``/tmp/pytest-of-root``, which ``setuid(65534)``
could not enter), while 0444 files and 0555 directories are refused to it for writing,
as to any user. Capabilities belong to a thread on Linux: the call must come before the
script starts any (a worker thread made earlier keeps the override). Not root: the
permission bits apply already, and the call does nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

DROP_WRITE_OVERRIDE = """
import ctypes, os

def drop_write_override():
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    cap_dac_override = 1 << 1
    data[0].effective &= ~cap_dac_override
    data[0].permitted &= ~cap_dac_override
    data[0].inheritable &= ~cap_dac_override
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
"""


def run_script(script: str, *args: str | Path) -> dict[str, object]:
    """Run ``script`` in a new interpreter with ``args`` (bounded); the JSON object it
    printed last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def make_writable(directory: Path) -> None:
    """Give ``directory`` and the files in it their write permission back."""
    os.chmod(directory, 0o755)
    for file in directory.iterdir():
        os.chmod(file, 0o644)
