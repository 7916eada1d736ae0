"""The processing, validation and metrics API's static types hold for user code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_typing_checks_run() -> None:
    from tests.processing import typing_checks

    typing_checks.check_processor()
    assert typing_checks.check_metrics().count == 1  # the decorated call in there


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
