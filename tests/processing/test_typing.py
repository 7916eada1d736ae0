"""The processing, validation and metrics API's static types hold for user code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_mypy_strict_accepts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_typing_checks_run() -> None:
    from tests.processing import typing_checks

    typing_checks.check_processor()
    assert typing_checks.check_metrics().count == 1  # the decorated call in there


@pytest.mark.slow
def test_mypy_strict_accepts_the_typing_checks() -> None:
    assert_mypy_strict_accepts(HERE / "typing_checks.py", ROOT)
