"""Fixtures: an SMTP server (aiosmtpd) and an HTTP server, both real, on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.notifications.servers import HttpSink, MailSink, smtp_running

pytest.importorskip("aiosmtpd")
pytest.importorskip("jinja2")


@pytest.fixture
def smtp_server() -> Iterator[tuple[MailSink, int]]:
    sink = MailSink()
    with smtp_running(sink) as port:
        yield sink, port


@pytest.fixture
async def http_server() -> AsyncIterator[HttpSink]:
    sink = await HttpSink().start()
    try:
        yield sink
    finally:
        await sink.close()


@pytest.fixture
def template_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    return folder
