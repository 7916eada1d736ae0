"""The core API's static types hold for user code: mypy --strict over typing_checks.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_mypy_strict_accepts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_typing_checks_module_imports() -> None:
    from tests.core import typing_checks

    typing_checks.check_event_and_patterns()


@pytest.mark.slow
def test_mypy_strict_accepts_the_typing_checks() -> None:
    assert_mypy_strict_accepts(HERE / "typing_checks.py", ROOT)
