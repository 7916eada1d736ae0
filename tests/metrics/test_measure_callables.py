"""``measure`` on every kind of callable, and from worker threads."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator

import pytest

from pepperpy.event import MetricsCollector


def counts(collector: MetricsCollector, name: str) -> tuple[int, int]:
    snapshot = collector.get_metrics(name)
    return snapshot.count, snapshot.errors


async def test_metadata_and_coroutine_function_status_are_kept() -> None:
    collector = MetricsCollector()

    async def fetch(key: str, *, retries: int = 1) -> str:
        """Fetch one key."""
        return key

    def parse(text: str) -> int:
        """Parse a number."""
        return int(text)

    measured_fetch = collector.measure("fetch")(fetch)
    measured_parse = collector.measure("parse")(parse)
    assert inspect.iscoroutinefunction(measured_fetch)
    assert not inspect.iscoroutinefunction(measured_parse)
    for measured, original in ((measured_fetch, fetch), (measured_parse, parse)):
        assert measured.__name__ == original.__name__
        assert measured.__qualname__ == original.__qualname__
        assert measured.__doc__ == original.__doc__
        assert getattr(measured, "__wrapped__", None) is original
        assert inspect.signature(measured) == inspect.signature(original)
    assert await measured_fetch("k") == "k"
    assert measured_parse("7") == 7
    assert counts(collector, "fetch") == (1, 0)
    assert counts(collector, "parse") == (1, 0)


async def test_methods_static_and_class_methods_are_measured() -> None:
    collector = MetricsCollector()

    class Service:
        factor = 3

        def __init__(self) -> None:
            self.seen: list[int] = []

        @collector.measure("method")
        def method(self, n: int) -> int:
            self.seen.append(n)
            return n

        @collector.measure("async_method")
        async def async_method(self, n: int) -> int:
            return n + 1

        @collector.measure("static")
        @staticmethod
        def static(n: int) -> int:
            return n * 2

        @collector.measure("static_async")
        @staticmethod
        async def static_async(n: int) -> int:
            return n * 4

        @collector.measure("klass")
        @classmethod
        def klass(cls, n: int) -> int:
            return n * cls.factor

    service = Service()
    assert service.method(1) == 1 and service.seen == [1]
    assert await service.async_method(1) == 2
    # a plain-function wrapper above @staticmethod bound as a method: "takes 1 positional
    # argument but 2 were given" when called on an instance; above @classmethod, refused
    assert service.static(2) == 4 and Service.static(3) == 6
    assert await service.static_async(1) == 4
    assert inspect.iscoroutinefunction(Service.static_async)
    assert service.klass(2) == 6 and Service.klass(1) == 3
    assert Service.static.__name__ == "static"
    assert [counts(collector, n) for n in collector.names()] == [
        (1, 0),  # async_method
        (2, 0),  # klass
        (1, 0),  # method
        (2, 0),  # static
        (1, 0),  # static_async
    ]


async def test_recursive_calls_are_each_counted() -> None:
    collector = MetricsCollector()

    @collector.measure("fact")
    def fact(n: int) -> int:
        return 1 if n <= 1 else n * fact(n - 1)

    @collector.measure("afact")
    async def afact(n: int) -> int:
        return 1 if n <= 1 else n * await afact(n - 1)

    assert fact(5) == 120
    assert await afact(4) == 24
    assert counts(collector, "fact") == (5, 0)
    assert counts(collector, "afact") == (4, 0)


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
async def test_base_exceptions_count_as_failed_calls_and_propagate(
    raised: type[BaseException],
) -> None:
    collector = MetricsCollector()

    @collector.measure("sync")
    def sync() -> None:
        raise raised

    @collector.measure("async")
    async def run() -> None:
        raise raised

    with pytest.raises(raised):
        sync()
    with pytest.raises(raised):
        await run()
    assert counts(collector, "sync") == (1, 1)
    assert counts(collector, "async") == (1, 1)


def test_generator_functions_are_refused_with_a_clear_error() -> None:
    collector = MetricsCollector()

    def numbers() -> Iterator[int]:
        yield 1

    async def stream() -> AsyncIterator[int]:
        yield 1

    for generator in (numbers, stream):
        with pytest.raises(TypeError, match="cannot time generator"):
            collector.measure("gen")(generator)


@pytest.mark.parametrize("bad", [b"work", ["work"], 1])
def test_reading_or_resetting_a_name_that_is_no_str_is_refused(bad: object) -> None:
    # b"work" read as a name never measured (zeros) and reset nothing, silently
    collector = MetricsCollector()
    collector.record("work", 0.001)
    for query in (collector.get_metrics, collector.histogram, collector.reset):
        with pytest.raises(TypeError, match="metric name must be a str"):
            query(bad)  # type: ignore[arg-type]
    assert collector.get_metrics("work").count == 1
