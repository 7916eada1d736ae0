"""A reset from the loop's thread never loses a call a worker thread records meanwhile.

``reset`` carried a name's totals over (exported counters never go down), then cleared
the series; the GIL may switch threads between the two (at the call of ``clear``), and a
call a measured function recorded on a worker thread right then was cleared away without
being carried: one call missing from ``_calls_total`` for good. ``record(name, ...)`` on
a worker thread lost its call the same way when a reset dropped the (unmeasured) name
between looking its series up and recording into it. Each test runs the other thread's
work at exactly that point; the last one checks exact totals under heavy switching.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import MetricsCollector
from pepperpy.event._series import Series


def _exported(collector: MetricsCollector, name: str) -> tuple[int, int]:
    """(calls, errors) as Prometheus would scrape them."""
    text = collector.to_prometheus()

    def value(metric: str) -> int:
        found = re.search(rf'^pepperpy_event_{metric}{{name="{name}"}} (\d+)$', text, re.M)
        assert found is not None, text
        return int(found.group(1))

    return value("calls_total"), value("errors_total")


def _on_a_worker_thread(work: Callable[[], Any]) -> None:
    """Run ``work`` on another thread and wait for it: a thread switch, made on purpose."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert not failures, failures


def test_measured_call_on_a_worker_thread_during_reset_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = MetricsCollector()

    @collector.measure("job")
    def job(fail: bool = False) -> None:
        if fail:
            raise RuntimeError("job failed")

    job()
    job()
    with pytest.raises(RuntimeError):
        job(fail=True)

    def failing_job() -> None:
        with pytest.raises(RuntimeError):
            job(fail=True)

    clear = Series.clear
    switched: list[bool] = []

    def clear_after_a_switch(series: Series) -> Any:
        if not switched:  # the GIL hands over to a worker as reset calls clear()
            switched.append(True)
            _on_a_worker_thread(job)
            _on_a_worker_thread(failing_job)
        return clear(series)

    monkeypatch.setattr(Series, "clear", clear_after_a_switch)
    collector.reset("job")
    assert switched
    assert _exported(collector, "job") == (5, 2)  # (3, 1) before: two calls lost
    job()
    assert _exported(collector, "job") == (6, 2)


def test_record_on_a_worker_thread_during_reset_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = MetricsCollector()
    collector.record("job", 0.001)
    collector.record("job", 0.002, error=True)

    get = collector._get
    switched: list[bool] = []

    def get_then_switch(name: str) -> Any:
        series = get(name)
        if not switched:  # the worker looked the series up; the loop's thread resets
            switched.append(True)
            _on_a_worker_thread(lambda: collector.reset("job"))
        return series

    monkeypatch.setattr(collector, "_get", get_then_switch)

    def record() -> None:
        collector.record("job", 0.003, error=True)

    _on_a_worker_thread(record)
    assert switched
    assert _exported(collector, "job") == (3, 2)  # (2, 1) before: the call lost
    assert collector.get_metrics("job").count == 1  # recorded since the reset
    assert collector.names() == ["job"]


def test_exact_totals_while_threads_record_and_the_loop_resets() -> None:
    collector = MetricsCollector()
    measured = collector.measure("measured")(lambda: None)
    threads_n, calls_n = 4, 3000
    go = threading.Barrier(threads_n + 1)

    def work(index: int) -> None:
        go.wait(10)
        for i in range(calls_n):
            measured()
            collector.record("by_hand", 0.0, error=(i + index) % 3 == 0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython lets them
    try:
        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
        for worker in workers:
            worker.start()
        go.wait(10)
        resets = 0
        while any(worker.is_alive() for worker in workers) and resets < 100_000:
            collector.reset()
            resets += 1
        for worker in workers:
            worker.join(60)
            assert not worker.is_alive()
    finally:
        sys.setswitchinterval(interval)
    errors = sum((i + n) % 3 == 0 for n in range(threads_n) for i in range(calls_n))
    assert _exported(collector, "measured") == (threads_n * calls_n, 0)
    assert _exported(collector, "by_hand") == (threads_n * calls_n, errors)
