"""MetricsCollector: call counts, errors, latency percentiles and throughput.

Latencies go into log-linear histograms (HDR style: 16 linear sub-buckets per power of
two, so any percentile is within ~3% of the true value) rather than a list of samples:
memory stays bounded however many calls are measured, and histograms of different
names or processes merge by adding bucket counts. Throughput is counted in a ring of
time slots covering a sliding window.

Export paths: :meth:`MetricsCollector.to_prometheus` (text exposition, no dependency),
:meth:`MetricsCollector.register_prometheus` (a ``prometheus_client`` collector) and
:meth:`MetricsCollector.instrument_opentelemetry` (observable OpenTelemetry instruments).
Exporters run on other threads (a scrape server's, a periodic reader's) while the loop's
thread adds and resets names, so the table of names is changed and copied under a lock;
recording into an existing name, the hot path, takes no lock.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._deps import require
from ._event import Event
from ._handlers import is_async_callable

if TYPE_CHECKING:
    from ._processor import NextHandler

__all__ = [
    "LatencyHistogram",
    "MeasureMiddleware",
    "MetricsCollector",
    "MetricsSnapshot",
    "OpenTelemetryInstruments",
]

F = TypeVar("F", bound=Callable[..., Any])

_SUB_BITS = 5  # 2**5 = 32 exact values, then 16 sub-buckets per power of two
_LINEAR = 1 << _SUB_BITS
_HALF = _LINEAR >> 1
_BUCKETS = _LINEAR + (64 - _SUB_BITS) * _HALF  # enough for any 64-bit nanosecond count
_SLOTS = 60  # throughput window resolution: window / 60 per slot


def _bucket(value: int) -> int:
    if value < _LINEAR:
        return value if value > 0 else 0
    shift = value.bit_length() - _SUB_BITS
    return (shift << 4) + (value >> shift)


def _whole_nanoseconds(value: object) -> int:
    """A duration given to :meth:`LatencyHistogram.record` as a whole number of ns."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"nanoseconds must be finite, got {value!r}")
        return int(value)
    if not isinstance(value, bool):
        try:
            return operator.index(value)  # type: ignore[arg-type]  # an int subclass, numpy ints
        except TypeError:
            pass
    raise TypeError(f"nanoseconds must be an int or a finite float, got {value!r}")


def _bounds(index: int) -> tuple[int, int]:
    """The ``[low, high)`` nanosecond range of bucket ``index``."""
    if index < _LINEAR:
        return index, index + 1
    shift = (index >> 4) - 1
    mantissa = (index & 15) + 16
    return mantissa << shift, (mantissa + 1) << shift


#: a namespace is a Prometheus metric name prefix; starting with a letter also keeps it a
#: valid OpenTelemetry instrument name prefix
_NAMESPACE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
#: the Prometheus families, per namespace: (name suffix, type, help)
_FAMILIES = (
    ("_calls_total", "counter", "Calls measured, failed ones included."),
    ("_errors_total", "counter", "Calls that raised."),
    ("_latency_seconds", "summary", "Call duration in seconds."),
    ("_throughput", "gauge", "Calls per second over the sliding window."),
)
#: the OpenTelemetry instruments, per namespace (dotted): suffixes of their names
_INSTRUMENTS = (".calls", ".errors", ".latency", ".throughput")
#: OpenTelemetry refuses instrument names longer than this
_OTEL_NAME_LIMIT = 255
_MAX_NAMESPACE = _OTEL_NAME_LIMIT - max(len(suffix) for suffix in _INSTRUMENTS)
#: the longest duration ``record`` takes (a year): past it, nanoseconds overflow nothing
#: but such a value is a unit mistake
_MAX_SECONDS = 365 * 24 * 3600.0


class LatencyHistogram:
    """A mergeable, fixed-size log-linear histogram of nanosecond durations.

    Recording is O(1); percentiles are reported as the midpoint of the bucket holding
    the rank (clamped to the exact minimum and maximum seen), within ~3% of the truth.
    """

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, nanoseconds: float) -> None:
        """Add one duration in nanoseconds (negative values count as 0).

        An ``int``, or a finite ``float`` such as ``(perf_counter() - start) * 1e9``,
        truncated to whole nanoseconds. Anything else is a ``TypeError`` (a bool too),
        a NaN or an infinity a ``ValueError``.
        """
        value = nanoseconds if type(nanoseconds) is int else _whole_nanoseconds(nanoseconds)
        if value < 0:
            value = 0
        index = _bucket(value)
        if index >= _BUCKETS:
            index = _BUCKETS - 1
        self.counts[index] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s counts into this histogram; returns ``self``."""
        if other.count == 0:
            return self
        counts = self.counts
        for index, n in enumerate(other.counts):
            if n:
                counts[index] += n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total
        return self

    def copy(self) -> LatencyHistogram:
        """An independent copy."""
        return LatencyHistogram().merge(self)

    def percentile(self, fraction: float) -> float:
        """The duration (ns) below which ``fraction`` (0..1) of the records fall."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {fraction!r}")
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            if n:
                seen += n
                if seen >= rank:
                    low, high = _bounds(index)
                    middle = (low + high - 1) / 2 if high - low > 1 else float(low)
                    return min(max(middle, float(self.min)), float(self.max))
        return float(self.max)

    @property
    def mean(self) -> float:
        """Mean duration in nanoseconds (0 when empty)."""
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Metrics of one measured name (or of all, when ``name`` is None) at one moment.

    Latencies are in milliseconds; ``throughput`` is calls per second over the
    collector's sliding window.
    """

    name: str | None
    count: int
    errors: int
    avg_latency: float
    p50: float
    p95: float
    p99: float
    min_latency: float
    max_latency: float
    throughput: float

    @property
    def error_rate(self) -> float:
        """Share of calls that failed (0 when nothing was measured)."""
        return self.errors / self.count if self.count else 0.0


class _Series(LatencyHistogram):
    """Everything recorded under one name: its histogram, errors and throughput slots.

    The current time slot is counted in ``slot_count``; only when a call lands in a later
    slot is the finished one written to the ring (``_roll``), so the hot path does one
    comparison for throughput.
    """

    __slots__ = (
        "errors",
        "held",
        "ring_counts",
        "ring_ids",
        "slot",
        "slot_count",
        "slot_end",
        "slot_ns",
        "started",
    )

    def __init__(self, slot_ns: int) -> None:
        super().__init__()
        self.slot_ns = slot_ns
        self.held = False  # a measured function or middleware records into it directly
        self.clear()

    def clear(self) -> None:
        """Forget everything recorded, in place: holders of ``observe`` keep recording."""
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0
        self.errors = 0
        self.ring_ids = [-1] * _SLOTS
        self.ring_counts = [0] * _SLOTS
        self.slot = -1
        self.slot_end = 0
        self.slot_count = 0
        self.started = time.perf_counter_ns()  # when measuring started

    def observe(self, elapsed_ns: int, end_ns: int, error: bool) -> None:
        """Record one call; the hot path of every measured call, kept flat."""
        if elapsed_ns < _LINEAR:
            if elapsed_ns < 0:
                elapsed_ns = 0
            index = elapsed_ns
        else:
            shift = elapsed_ns.bit_length() - _SUB_BITS
            index = (shift << 4) + (elapsed_ns >> shift)
            if index >= _BUCKETS:
                index = _BUCKETS - 1
        self.counts[index] += 1
        self.total += elapsed_ns
        if elapsed_ns > self.max:
            self.max = elapsed_ns
        if elapsed_ns < self.min or not self.count:
            self.min = elapsed_ns
        self.count += 1
        if error:
            self.errors += 1
        if end_ns < self.slot_end:
            self.slot_count += 1
        else:
            self._roll(end_ns)

    def _roll(self, end_ns: int) -> None:
        if self.slot >= 0:
            position = self.slot % _SLOTS
            self.ring_ids[position] = self.slot
            self.ring_counts[position] = self.slot_count
        self.slot = end_ns // self.slot_ns
        self.slot_end = (self.slot + 1) * self.slot_ns
        self.slot_count = 1

    def throughput(self, now_ns: int) -> float:
        """Calls per second over the window ending at ``now_ns``."""
        oldest = now_ns // self.slot_ns - _SLOTS + 1
        recent = sum(
            n
            for slot, n in zip(self.ring_ids, self.ring_counts, strict=True)
            if oldest <= slot != self.slot
        )
        if self.slot >= oldest:
            recent += self.slot_count
        if not recent:
            return 0.0
        start = max(self.started, oldest * self.slot_ns)
        span = max(now_ns - start, 1_000_000)  # at least 1 ms, so a first burst is finite
        return recent * 1e9 / span


class MetricsCollector:
    """Measures calls by name: ``@collector.measure("name")`` or as processor middleware.

    ``window`` is the span, in seconds (more than 0, at most a year), over which
    ``throughput`` is computed; ``namespace`` prefixes the exported metric names.
    """

    def __init__(self, *, window: float = 60.0, namespace: str = "pepperpy_event") -> None:
        if (
            not isinstance(window, int | float)
            or isinstance(window, bool)
            or not 0 < window <= _MAX_SECONDS  # NaN and infinities fail this too
        ):
            raise ValueError(
                "window must be a finite number of seconds, > 0 and at most 1 year "
                f"({_MAX_SECONDS:g}), got {window!r}"
            )
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                "namespace must be a valid metric name prefix (ASCII letters, digits and "
                f"underscores, starting with a letter), got {namespace!r}"
            )
        if len(namespace) > _MAX_NAMESPACE:
            raise ValueError(
                f"namespace must be at most {_MAX_NAMESPACE} characters, got {len(namespace)}: "
                f"OpenTelemetry instrument names are limited to {_OTEL_NAME_LIMIT} characters "
                f"and the longest one adds {max(_INSTRUMENTS, key=len)!r}"
            )
        self.window = float(window)
        self.namespace = namespace
        self._slot_ns = max(1, int(window * 1e9) // _SLOTS)
        self._series: dict[str, _Series] = {}
        # names reset and not recorded since: listed again once something is recorded
        self._forgotten: set[str] = set()
        # (calls, errors, latency ns) recorded before a reset, per name: exported
        # counters go on from them, since monitoring systems expect counters to only grow
        self._carried: dict[str, tuple[int, int, int]] = {}
        # held while names are added or reset, and while readers copy the table: an
        # exporter's thread never iterates a dict the loop's thread is changing
        self._lock = threading.Lock()

    # -- recording --------------------------------------------------------------------

    def _get(self, name: str) -> _Series:
        series = self._series.get(name)
        if series is None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric name must be a non-empty str, got {name!r}")
            series = _Series(self._slot_ns)
            with self._lock:
                self._series[name] = series
        elif self._forgotten:
            self._forgotten.discard(name)
        return series

    def measure(self, name: str) -> Measure:
        """Measure calls under ``name``: a decorator, or middleware for a processor.

        ``@collector.measure("x")`` wraps sync and async callables: every call is
        counted, failed ones (any exception, cancellation included) also as errors, and
        its duration recorded. ``processor.middleware(collector.measure("x"))`` measures
        the rest of the processing chain.
        """
        return Measure(self, name)

    def record(self, name: str, seconds: float, *, error: bool = False) -> None:
        """Record one call of ``seconds`` duration by hand."""
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or not 0 <= seconds <= _MAX_SECONDS
        ):
            raise ValueError(
                f"seconds must be a finite number from 0 to {_MAX_SECONDS:g}, got {seconds!r}"
            )
        self._get(name).observe(int(seconds * 1e9), time.perf_counter_ns(), error)

    def reset(self, name: str | None = None) -> None:
        """Forget what was recorded under ``name``, or everything.

        Functions decorated with ``measure`` and measure middleware keep counting: the
        next call is recorded under the same name, which ``names()`` lists again.

        A reset clears what :meth:`get_metrics`, :meth:`snapshots`, :meth:`names` and
        :meth:`histogram` show. Exported counters (Prometheus ``_calls_total``,
        ``_errors_total`` and the latency summary's ``_sum``/``_count``; OpenTelemetry
        ``calls``/``errors``) keep their totals and go on counting, because a counter
        that goes down breaks rates in Prometheus and OpenTelemetry; exported quantiles
        and throughput cover what was recorded since.
        """
        with self._lock:
            self._reset(name)

    def _reset(self, name: str | None) -> None:
        selected = list(self._series) if name is None else [name]
        for each in selected:
            series = self._series.get(each)
            if series is None:
                continue
            if series.count:
                calls, errors, total = self._carried.get(each, (0, 0, 0))
                self._carried[each] = (
                    calls + series.count,
                    errors + series.errors,
                    total + series.total,
                )
            if series.held:
                series.clear()  # in place: measured functions record into this object
                self._forgotten.add(each)
            else:
                del self._series[each]

    def names(self) -> list[str]:
        """The names measured so far (and not reset since without new calls), sorted."""
        return sorted(name for name, _ in self._listed())

    def _listed(self) -> list[tuple[str, _Series]]:
        """The listed names and their series, copied under the lock (any thread)."""
        with self._lock:
            items = list(self._series.items())
        forgotten = self._forgotten
        return [(name, series) for name, series in items if series.count or name not in forgotten]

    def histogram(self, name: str | None = None) -> LatencyHistogram:
        """A copy of the latency histogram of ``name`` (or all names merged)."""
        merged = LatencyHistogram()
        for series in self._selected(name):
            merged.merge(series)
        return merged

    # -- reading ----------------------------------------------------------------------

    def _selected(self, name: str | None) -> list[_Series]:
        if name is None:
            return [series for _, series in self._listed()]
        series = self._series.get(name)
        return [] if series is None else [series]

    def get_metrics(self, name: str | None = None) -> MetricsSnapshot:
        """A frozen snapshot of ``name``'s metrics; with no name, all names aggregated.

        A name never measured gives a snapshot of zeros.
        """
        return self._snapshot(name, self._selected(name))

    @staticmethod
    def _snapshot(name: str | None, selected: list[_Series]) -> MetricsSnapshot:
        histogram = LatencyHistogram()
        for series in selected:
            histogram.merge(series)
        now = time.perf_counter_ns()
        ms = 1e-6
        return MetricsSnapshot(
            name=name,
            count=histogram.count,
            errors=sum(s.errors for s in selected),
            avg_latency=histogram.mean * ms,
            p50=histogram.percentile(0.50) * ms,
            p95=histogram.percentile(0.95) * ms,
            p99=histogram.percentile(0.99) * ms,
            min_latency=histogram.min * ms,
            max_latency=histogram.max * ms,
            throughput=sum(s.throughput(now) for s in selected),
        )

    def snapshots(self) -> dict[str, MetricsSnapshot]:
        """One snapshot per measured name."""
        return {name: self.get_metrics(name) for name in self.names()}

    def _exported(self) -> list[_Exported]:
        """What exporters report, per name: snapshots, and counters that never go down."""
        forgotten = self._forgotten
        # counters are read together with what a reset carried over, under the lock a
        # reset holds: a total never counts a call twice or loses it, so never goes down
        with self._lock:
            totals = dict(self._carried)
            listed: dict[str, _Series] = {}
            for name, series in self._series.items():
                if series.count or name not in forgotten:
                    listed[name] = series
                calls, errors, total = totals.get(name, (0, 0, 0))
                totals[name] = (calls + series.count, errors + series.errors, total + series.total)
        rows = []
        for name in sorted(totals):  # every name, and the names reset away
            shown = listed.get(name)
            if shown is None and not totals[name][0]:
                continue  # created and reset, nothing ever recorded: not listed
            snap = self._snapshot(name, [] if shown is None else [shown])
            rows.append(_Exported(name, snap, *totals[name]))
        return rows

    # -- exporting --------------------------------------------------------------------

    def to_prometheus(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every measured name.

        Per name (label ``name``): ``<ns>_calls_total`` and ``<ns>_errors_total``
        counters, a ``<ns>_latency_seconds`` summary (quantiles 0.5, 0.95, 0.99, sum,
        count) and a ``<ns>_throughput`` gauge (calls per second over the window).
        Counters, sum and count never go down, also across :meth:`reset`.
        """
        ns = self.namespace
        rows = self._exported()
        calls, errors, latency, throughput = (f"{ns}{suffix}" for suffix, _, _ in _FAMILIES)
        latency_lines: list[str] = []
        for row in rows:
            label, snap = _label(row.name), row.snapshot
            for quantile, value in (("0.5", snap.p50), ("0.95", snap.p95), ("0.99", snap.p99)):
                latency_lines.append(
                    f'{latency}{{name={label},quantile="{quantile}"}} {_number(value / 1000)}'
                )
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
        for header, family in zip(_family_headers(ns), samples, strict=True):
            lines.extend(header)
            lines.extend(family)
        return "\n".join(lines) + "\n"

    def register_prometheus(self, registry: Any = None) -> Any:
        """Expose these metrics through a ``prometheus_client`` registry.

        Registers a custom collector (on ``registry``, default the global ``REGISTRY``)
        that reports fresh values at every scrape, and returns it (pass it to
        ``registry.unregister`` to stop). Needs ``prometheus-client`` (extra ``metrics``).

        The collector describes its four metric families, so the registry refuses it
        with ``prometheus_client``'s own ``ValueError`` ("Duplicated timeseries") when a
        family of that name is registered already: another collector with the same
        ``namespace``, or an application metric such as ``<namespace>_calls``.
        """
        client = require("prometheus_client", extra="metrics", feature="register_prometheus")
        parser = require("prometheus_client.parser", extra="metrics", feature="register_prometheus")
        target = client.REGISTRY if registry is None else registry
        exporter = _PrometheusExporter(self, parser.text_string_to_metric_families)
        target.register(exporter)
        return exporter

    def instrument_opentelemetry(self, meter_provider: Any = None) -> OpenTelemetryInstruments:
        """Report these metrics as observable OpenTelemetry instruments.

        Creates ``<prefix>.calls`` and ``<prefix>.errors`` (observable counters),
        ``<prefix>.latency`` (observable gauge in ms, attribute ``quantile`` = ``p50``,
        ``p95``, ``p99`` or ``avg``) and ``<prefix>.throughput`` (observable gauge), each
        with a ``name`` attribute; the prefix is the namespace with dots. Values are read
        at each collection; the counters never go down, also across :meth:`reset`.
        Needs ``opentelemetry-api`` (extra ``otel``).

        Returns the four instruments as an :class:`OpenTelemetryInstruments` list; its
        ``close()`` (or leaving ``with``) detaches them from this collector.
        """
        metrics = require("opentelemetry.metrics", extra="otel", feature="OpenTelemetry metrics")
        meter = metrics.get_meter("pepperpy.event", meter_provider=meter_provider)
        prefix = self.namespace.replace("_", ".")
        observation = metrics.Observation
        # the callbacks, which the meter keeps for good, hold the handle, not the collector
        handle = OpenTelemetryInstruments(self)

        def calls(options: Any) -> Iterator[Any]:
            for row in handle._exported():
                yield observation(row.calls, {"name": row.name})

        def errors(options: Any) -> Iterator[Any]:
            for row in handle._exported():
                yield observation(row.errors, {"name": row.name})

        def latency(options: Any) -> Iterator[Any]:
            for row in handle._exported():
                name, snap = row.name, row.snapshot
                for label, value in (
                    ("avg", snap.avg_latency),
                    ("p50", snap.p50),
                    ("p95", snap.p95),
                    ("p99", snap.p99),
                ):
                    yield observation(value, {"name": name, "quantile": label})

        def throughput(options: Any) -> Iterator[Any]:
            for row in handle._exported():
                yield observation(row.snapshot.throughput, {"name": row.name})

        calls_name, errors_name, latency_name, throughput_name = (
            f"{prefix}{suffix}" for suffix in _INSTRUMENTS
        )
        handle.extend(
            [
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
        )
        return handle


class OpenTelemetryInstruments(list[Any]):
    """The instruments :meth:`MetricsCollector.instrument_opentelemetry` made, and the way
    to detach them.

    OpenTelemetry cannot remove an instrument from its meter, which keeps the callbacks
    for as long as the meter provider lives. After :meth:`close` those callbacks report
    nothing and no longer reference the collector, so a collector that is dropped is
    freed even while the provider lives on. Idempotent; also a context manager.
    """

    def __init__(self, collector: MetricsCollector) -> None:
        super().__init__()
        self._collector: MetricsCollector | None = collector

    @property
    def closed(self) -> bool:
        return self._collector is None

    def snapshots(self) -> dict[str, MetricsSnapshot]:
        """The collector's snapshots by name; empty once closed."""
        collector = self._collector
        return {} if collector is None else collector.snapshots()

    def _exported(self) -> list[_Exported]:
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


class Measure:
    """What ``collector.measure(name)`` returns: a decorator that is also middleware."""

    __slots__ = ("collector", "name")

    def __init__(self, collector: MetricsCollector, name: str) -> None:
        collector._get(name)
        self.collector = collector
        self.name = name

    def __call__(self, func: F) -> F:
        """Wrap a sync or async callable so each call is measured."""
        if not callable(func):
            raise TypeError(f"measure() decorates callables, got {func!r}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"measure() cannot time generator {func!r}: calling it only creates the "
                "generator; measure the function that consumes it"
            )
        series = self.collector._get(self.name)
        series.held = True
        record = series.observe
        clock = time.perf_counter_ns

        if is_async_callable(func):

            @functools.wraps(func)
            async def measured_async(*args: Any, **kwargs: Any) -> Any:
                start = clock()
                try:
                    result = await func(*args, **kwargs)
                except BaseException:
                    end = clock()
                    record(end - start, end, True)
                    raise
                end = clock()
                record(end - start, end, False)
                return result

            return cast(F, measured_async)

        @functools.wraps(func)
        def measured(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                result = func(*args, **kwargs)
            except BaseException:
                end = clock()
                record(end - start, end, True)
                raise
            end = clock()
            record(end - start, end, False)
            return result

        return cast(F, measured)

    def as_middleware(self) -> MeasureMiddleware:
        """This measurement as an :class:`~pepperpy.event.EventProcessor` middleware."""
        return MeasureMiddleware(self.collector, self.name)


class MeasureMiddleware:
    """Processor middleware measuring the rest of the chain under ``name``."""

    def __init__(self, collector: MetricsCollector, name: str = "event_processing") -> None:
        series = collector._get(name)
        series.held = True
        self._record = series.observe
        self.collector = collector
        self.name = name

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        clock = time.perf_counter_ns
        start = clock()
        try:
            await next_handler(event)
        except BaseException:
            end = clock()
            self._record(end - start, end, True)
            raise
        end = clock()
        self._record(end - start, end, False)


class _PrometheusExporter:
    """A ``prometheus_client`` custom collector reading the text exposition."""

    def __init__(self, collector: MetricsCollector, parse: Callable[[str], Iterable[Any]]) -> None:
        self._collector = collector
        self._parse = parse

    def collect(self) -> Iterable[Any]:
        return list(self._parse(self._collector.to_prometheus()))

    def describe(self) -> Iterable[Any]:
        """The metric families, without samples: the registry checks their names."""
        lines = [line for header in _family_headers(self._collector.namespace) for line in header]
        return list(self._parse("\n".join(lines) + "\n"))


@dataclass(frozen=True, slots=True)
class _Exported:
    """One name as exporters report it: ``calls``, ``errors`` and ``latency_ns`` are
    totals since the collector was made (a reset does not take them back)."""

    name: str
    snapshot: MetricsSnapshot
    calls: int
    errors: int
    latency_ns: int


def _family_headers(namespace: str) -> list[tuple[str, str]]:
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
