"""The core API's static types hold for user code: mypy --strict over typing_checks.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_typing_checks_module_imports() -> None:
    from tests.core import typing_checks

    typing_checks.check_event_and_patterns()


@pytest.mark.slow
def test_mypy_strict_accepts_the_typing_checks() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--follow-imports=silent",
            str(HERE / "typing_checks.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
