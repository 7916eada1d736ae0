"""Exporting a collector's metrics: Prometheus text and collector, OpenTelemetry instruments.

Exporters read the collector through :class:`Source` (what :class:`MetricsCollector
<pepperpy.event.MetricsCollector>` offers them), on whatever thread scrapes or collects.
Counters report totals since the collector was made (:class:`Exported`): a reset never
takes them back.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ._deps import require
from ._errors import ConfigurationError
from ._series import MetricsSnapshot

__all__ = [
    "INSTRUMENTS",
    "OTEL_NAME_LIMIT",
    "Exported",
    "OpenTelemetryInstruments",
    "PrometheusExporter",
    "Source",
    "family_headers",
    "opentelemetry_instruments",
    "prometheus_collector",
    "prometheus_text",
]

#: the Prometheus families, per namespace: (name suffix, type, help)
_FAMILIES = (
    ("_calls_total", "counter", "Calls measured, failed ones included."),
    ("_errors_total", "counter", "Calls that raised."),
    ("_latency_seconds", "summary", "Call duration in seconds."),
    ("_throughput", "gauge", "Calls per second over the sliding window."),
)
#: the OpenTelemetry instruments, per namespace (dotted): suffixes of their names
INSTRUMENTS = (".calls", ".errors", ".latency", ".throughput")
#: OpenTelemetry refuses instrument names longer than this
OTEL_NAME_LIMIT = 255


class Source(Protocol):
    """What the exporters read of a collector (``MetricsCollector``)."""

    @property
    def namespace(self) -> str: ...

    def to_prometheus(self) -> str: ...

    def snapshots(self) -> dict[str, MetricsSnapshot]: ...

    def _exported(self) -> list[Exported]: ...


@dataclass(frozen=True, slots=True)
class Exported:
    """One name as exporters report it: ``calls``, ``errors`` and ``latency_ns`` are
    totals since the collector was made (a reset does not take them back)."""

    name: str
    snapshot: MetricsSnapshot
    calls: int
    errors: int
    latency_ns: int


def prometheus_text(ns: str, rows: list[Exported]) -> str:
    """The Prometheus text exposition of ``rows``, metric names prefixed with ``ns``."""
    calls, errors, latency, throughput = (f"{ns}{suffix}" for suffix, _, _ in _FAMILIES)
    latency_lines: list[str] = []
    for row in rows:
        label, snap = _label(row.name), row.snapshot
        for quantile, value in (("0.5", snap.p50), ("0.95", snap.p95), ("0.99", snap.p99)):
            # nothing recorded since a reset: no quantile, NaN as Prometheus' own clients
            # write it (0 would chart as a latency that fell to nothing)
            shown = _number(value / 1000) if snap.count else "NaN"
            latency_lines.append(f'{latency}{{name={label},quantile="{quantile}"}} {shown}')
        latency_lines.append(f"{latency}_sum{{name={label}}} {_number(row.latency_ns / 1e9)}")
        latency_lines.append(f"{latency}_count{{name={label}}} {row.calls}")
    samples = (
        [f"{calls}{{name={_label(row.name)}}} {row.calls}" for row in rows],
        [f"{errors}{{name={_label(row.name)}}} {row.errors}" for row in rows],
        latency_lines,
        [
            f"{throughput}{{name={_label(row.name)}}} {_number(row.snapshot.throughput)}"
            for row in rows
        ],
    )
    lines: list[str] = []
    for header, family in zip(family_headers(ns), samples, strict=True):
        lines.extend(header)
        lines.extend(family)
    return "\n".join(lines) + "\n"


def prometheus_collector(collector: Source, registry: Any) -> Any:
    """``collector`` registered on a ``prometheus_client`` registry (default the global one)."""
    client = require("prometheus_client", extra="metrics", feature="register_prometheus")
    parser = require("prometheus_client.parser", extra="metrics", feature="register_prometheus")
    target = client.REGISTRY if registry is None else registry
    if not callable(getattr(target, "register", None)):
        # a wrong argument failed with "'str' object has no attribute 'register'"
        raise TypeError(
            "registry must be a prometheus_client CollectorRegistry (or None for the "
            f"global REGISTRY), got {registry!r}"
        )
    exporter = PrometheusExporter(collector, parser.text_string_to_metric_families)
    target.register(exporter)
    return exporter


def opentelemetry_instruments(collector: Source, meter_provider: Any) -> OpenTelemetryInstruments:
    """The four observable OpenTelemetry instruments reporting ``collector``."""
    metrics = require(
        "opentelemetry.metrics", extra="otel", feature="exporting OpenTelemetry metrics"
    )
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        # a wrong argument failed inside OpenTelemetry with "'str' object has no
        # attribute 'get_meter'"
        raise TypeError(
            "meter_provider must be an OpenTelemetry MeterProvider (or None for the "
            f"global one), got {meter_provider!r}"
        )
    meter = metrics.get_meter("pepperpy.event", meter_provider=meter_provider)
    prefix = collector.namespace.replace("_", ".")
    observation = metrics.Observation
    handle = OpenTelemetryInstruments(collector)
    # the callbacks, which the meter keeps for good, hold this, not the collector
    reporting = _Reporting(handle, collector)

    def calls(options: Any) -> Iterator[Any]:
        for row in reporting.handle._exported():
            yield observation(row.calls, {"name": row.name})

    def errors(options: Any) -> Iterator[Any]:
        for row in reporting.handle._exported():
            yield observation(row.errors, {"name": row.name})

    def latency(options: Any) -> Iterator[Any]:
        for row in reporting.handle._exported():
            name, snap = row.name, row.snapshot
            if not snap.count:  # nothing recorded since a reset: no latency to report
                continue
            for label, value in (
                ("avg", snap.avg_latency),
                ("p50", snap.p50),
                ("p95", snap.p95),
                ("p99", snap.p99),
            ):
                yield observation(value, {"name": name, "quantile": label})

    def throughput(options: Any) -> Iterator[Any]:
        for row in reporting.handle._exported():
            yield observation(row.snapshot.throughput, {"name": row.name})

    calls_name, errors_name, latency_name, throughput_name = (
        f"{prefix}{suffix}" for suffix in INSTRUMENTS
    )
    # None, or the provider that is the global one now: the global provider is
    # OpenTelemetry's proxy until the application sets one, and the proxy makes new
    # instruments at every call, whose callbacks the real provider drops once set
    on_global = meter_provider is None or meter_provider is metrics.get_meter_provider()
    unset = on_global and _global_unset(metrics)
    with _MAKING:
        instruments = [
            meter.create_observable_counter(
                calls_name,
                callbacks=[calls],
                unit="{call}",
                description="Calls measured",
            ),
            meter.create_observable_counter(
                errors_name,
                callbacks=[errors],
                unit="{call}",
                description="Failed calls",
            ),
            meter.create_observable_gauge(
                latency_name, callbacks=[latency], unit="ms", description="Call latency"
            ),
            meter.create_observable_gauge(
                throughput_name,
                callbacks=[throughput],
                unit="{call}/s",
                description="Calls per second over the sliding window",
            ),
        ]
        return _taken_over(instruments, reporting, collector, on_global=on_global, unset=unset)


#: the attribute of an instrument holding what its callbacks report (a :class:`_Reporting`)
_REPORTING = "_pepperpy_event_reporting"
#: held while instruments are made and claimed: two threads instrumenting one namespace
_MAKING = threading.Lock()
#: per namespace, what the instruments made on the global meter provider report. Those
#: made on OpenTelemetry's proxy (before the application sets a provider) are new objects
#: at every call, and the real instruments the set provider makes for them carry no
#: attribute of ours: only the first callbacks made under a name are ever called, so the
#: first ``_Reporting`` is kept here, for the process's life as the provider keeps it
_ON_GLOBAL: dict[str, _Reporting] = {}


class _Reporting:
    """Whose metrics the callbacks of one namespace's instruments on one meter report.

    The OpenTelemetry SDK makes an instrument once per name on a meter and hands it back
    to later calls, dropping the callbacks they pass: the first callbacks are those for
    good. They report the handle here, which a later handle of the same collector takes
    over once it was closed. ``made_for`` is that collector, weakly (a closed handle
    does not keep it alive).
    """

    __slots__ = ("handle", "made_for")

    def __init__(self, handle: OpenTelemetryInstruments, collector: Source) -> None:
        self.handle = handle
        self.made_for = weakref.ref(collector)


def _global_unset(metrics: Any) -> bool:
    """Whether the global meter provider is still OpenTelemetry's proxy: no provider set,
    so nothing its instruments observe was reported yet."""
    try:
        from opentelemetry.metrics._internal import _PROXY_METER_PROVIDER
    except ImportError:  # another layout: taken as set, the stricter answer
        return False
    return bool(metrics.get_meter_provider() is _PROXY_METER_PROVIDER)


def _taken_over(
    instruments: list[Any],
    reporting: _Reporting,
    collector: Source,
    *,
    on_global: bool,
    unset: bool = False,
) -> OpenTelemetryInstruments:
    """The handle for ``instruments``: the one just made, unless the meter handed back
    instruments made before for this collector, whose callbacks then report it
    (or its handle still open, returned as it is).

    Instruments made for another collector are refused with ``ConfigurationError``:
    this one's metrics would never be reported, and once the other's handle was closed,
    reporting this one's totals on them would take the counters back. On the global
    meter provider (``on_global``), the instruments made earlier are known by namespace
    (:data:`_ON_GLOBAL`), whether they were made on OpenTelemetry's proxy or not; while
    no provider is set (``unset``), nothing was reported, so another collector may take
    them over once the earlier handle was closed (an application made twice in one
    process, its tests say).
    """
    handle = reporting.handle
    earlier = getattr(instruments[0], _REPORTING, None)
    if on_global:
        if not isinstance(earlier, _Reporting):
            earlier = _ON_GLOBAL.get(collector.namespace)
        _ON_GLOBAL.setdefault(
            collector.namespace, earlier if isinstance(earlier, _Reporting) else reporting
        )
    if isinstance(earlier, _Reporting):
        # the handle just made reports nothing, nor holds the collector: OpenTelemetry's
        # proxy keeps its callbacks for good, though they are never called
        if earlier.made_for() is not collector and unset and earlier.handle.closed:
            earlier.made_for = weakref.ref(collector)  # no counter reported to go back
        if earlier.made_for() is not collector:
            handle.close()
            raise ConfigurationError(
                f"the namespace {collector.namespace!r} is reported already on this meter "
                "provider, for another collector: OpenTelemetry keeps the first instruments "
                "made under a name (for good, even once closed), so this collector's "
                "metrics would never be reported (and, reported on those instruments, "
                "their counters would go back). Give it another namespace, or another "
                "meter provider"
            )
        if not earlier.handle.closed:
            handle.close()
            return earlier.handle
        earlier.handle = handle  # the meter kept the callbacks of the closed handle
    else:
        for instrument in instruments:
            with contextlib.suppress(AttributeError, TypeError):  # an instrument with slots
                setattr(instrument, _REPORTING, reporting)
    handle.extend(instruments)
    return handle


class OpenTelemetryInstruments(list[Any]):
    """The instruments :meth:`MetricsCollector.instrument_opentelemetry` made, and the way
    to detach them.

    OpenTelemetry cannot remove an instrument from its meter, which keeps the callbacks
    for as long as the meter provider lives. After :meth:`close` those callbacks report
    nothing and no longer reference the collector, so a collector that is dropped is
    freed even while the provider lives on. Idempotent; also a context manager.
    """

    def __init__(self, collector: Source) -> None:
        super().__init__()
        self._collector: Source | None = collector

    @property
    def closed(self) -> bool:
        return self._collector is None

    def snapshots(self) -> dict[str, MetricsSnapshot]:
        """The collector's snapshots by name; empty once closed."""
        collector = self._collector
        return {} if collector is None else collector.snapshots()

    def _exported(self) -> list[Exported]:
        """What the instruments observe, per name; empty once closed."""
        collector = self._collector
        return [] if collector is None else collector._exported()

    def close(self) -> None:
        """Stop reporting: the instruments stay in the meter but observe nothing."""
        self._collector = None

    def __enter__(self) -> OpenTelemetryInstruments:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PrometheusExporter:
    """A ``prometheus_client`` custom collector reading the text exposition."""

    def __init__(self, collector: Source, parse: Callable[[str], Iterable[Any]]) -> None:
        self._collector = collector
        self._parse = parse

    def collect(self) -> Iterable[Any]:
        return list(self._parse(self._collector.to_prometheus()))

    def describe(self) -> Iterable[Any]:
        """The metric families, without samples: the registry checks their names."""
        lines = [line for header in family_headers(self._collector.namespace) for line in header]
        return list(self._parse("\n".join(lines) + "\n"))


def family_headers(namespace: str) -> list[tuple[str, str]]:
    """The ``# HELP`` and ``# TYPE`` lines of each Prometheus family, in order."""
    return [
        (f"# HELP {namespace}{suffix} {help_text}", f"# TYPE {namespace}{suffix} {kind}")
        for suffix, kind, help_text in _FAMILIES
    ]


def _label(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'"{escaped}"'


def _number(value: float) -> str:
    return repr(float(value))
