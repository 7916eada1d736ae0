"""The conformance suite on the in-memory backend, plus URL handling."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pepperpy.event import ConfigurationError, EventStore, MissingDependencyError
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.base import from_micros, to_micros
from tests.store.conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"


def test_the_default_store_lives_in_memory() -> None:
    store = EventStore()
    assert isinstance(store.backend, MemoryBackend)
    assert repr(store) == "EventStore('memory://')"


def test_a_backend_object_can_be_passed_directly() -> None:
    backend = MemoryBackend()
    assert EventStore(backend).backend is backend


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/db",
        "events.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///",
        "sqlite:///events.db?synchronous=OFF",
        "sqlite:///events.db?journal=delete",
    ],
)
def test_unknown_or_unusable_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        EventStore(url)


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(MissingDependencyError) as caught:
        EventStore("postgresql://localhost/db")
    assert "pepperpy-event[postgres]" in str(caught.value)


def test_construction_needs_no_event_loop(tmp_path: object) -> None:
    EventStore(f"sqlite:///{tmp_path}/events.db")
    EventStore("postgresql://postgres@127.0.0.1:1/nowhere")


@pytest.mark.parametrize(
    "when",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC),
        datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=timezone(timedelta(hours=-3))),
    ],
)
def test_stored_times_round_trip_to_the_microsecond(when: datetime) -> None:
    assert from_micros(to_micros(when)) == when
    assert from_micros(to_micros(when)).utcoffset() == timedelta(0)


def test_reprs_and_errors_never_show_a_password() -> None:
    store = EventStore("postgresql://app:s3cret@db.example:5432/events")
    assert "s3cret" not in repr(store)
    assert repr(store) == "EventStore('postgresql://app:***@db.example:5432/events')"
