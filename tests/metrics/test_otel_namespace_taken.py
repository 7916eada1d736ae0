"""One namespace on one OpenTelemetry meter provider: instruments are made once.

The SDK keeps the first instrument made under a name and hands it back to later calls
(without a warning when unit and description match), dropping the callbacks they pass.
So a second collector with the same namespace silently reported nothing (it is refused
now), and a collector instrumented again after ``close()`` (the instruments of the
first call observing nothing from then on) never reported again (it takes them over).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pepperpy.event import ConfigurationError, MetricsCollector


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    reader.provider = provider  # type: ignore[attr-defined]
    yield reader
    provider.shutdown()


def _provider(reader: InMemoryMetricReader) -> MeterProvider:
    return reader.provider  # type: ignore[attr-defined,no-any-return]


def _calls(
    reader: InMemoryMetricReader, instrument: str = "pepperpy.event.calls"
) -> dict[str, int]:
    """The ``calls`` counter's value per measured name, as the reader collects it."""
    data = reader.get_metrics_data()
    found: dict[str, int] = {}
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == instrument:
                    for point in metric.data.data_points:
                        found[str(point.attributes["name"])] = int(point.value)
    return found


def _collector(name: str, calls: int, namespace: str = "pepperpy_event") -> MetricsCollector:
    collector = MetricsCollector(namespace=namespace)
    for _ in range(calls):
        collector.record(name, 0.001)
    return collector


def test_a_second_collector_with_the_namespace_taken_is_refused(
    reader: InMemoryMetricReader,
) -> None:
    first = _collector("orders", 2)
    first.instrument_opentelemetry(_provider(reader))

    with pytest.raises(ConfigurationError, match="'pepperpy_event' is reported already"):
        _collector("payments", 3).instrument_opentelemetry(_provider(reader))

    assert _calls(reader) == {"orders": 2}
    # another namespace is another set of instruments
    _collector("payments", 3, namespace="shop").instrument_opentelemetry(_provider(reader))
    assert _calls(reader, "shop.calls") == {"payments": 3}


def test_instruments_made_for_a_collector_are_refused_to_another_once_closed(
    reader: InMemoryMetricReader,
) -> None:
    with _collector("orders", 2).instrument_opentelemetry(_provider(reader)):
        assert _calls(reader) == {"orders": 2}
    assert _calls(reader) == {}

    # its totals would take the counters back ("orders" from 2 to 1)
    with pytest.raises(ConfigurationError, match="for another collector"):
        _collector("orders", 1).instrument_opentelemetry(_provider(reader))
    assert _calls(reader) == {}


def test_the_same_collector_instrumented_again_reports_again(
    reader: InMemoryMetricReader,
) -> None:
    collector = _collector("orders", 2)
    collector.instrument_opentelemetry(_provider(reader)).close()

    again = collector.instrument_opentelemetry(_provider(reader))

    assert not again.closed
    assert _calls(reader) == {"orders": 2}
    collector.record("orders", 0.001)
    assert _calls(reader) == {"orders": 3}
    # while it reports, instrumenting it once more gives the same handle
    assert collector.instrument_opentelemetry(_provider(reader)) is again
    again.close()
    assert _calls(reader) == {}
