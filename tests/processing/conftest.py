"""Fixtures the processing tests share."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest


class Capture(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, Capture]]:
    """A logger of its own (unique name, not propagating) and what it logged."""
    logger = logging.getLogger(f"test.processing.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    capture = Capture()
    logger.addHandler(capture)
    yield logger, capture
    logger.removeHandler(capture)
