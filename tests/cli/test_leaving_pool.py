"""The subcommands' default executor: the work of a ThreadPoolExecutor, on daemon threads
that a stopped command leaves behind (see ``test_import_idle_pipe`` for the command)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pepperpy.event.cli._threads import LeavingPool


def test_it_runs_work_and_hands_back_results_and_errors() -> None:
    pool = LeavingPool(max_workers=3)
    futures = [pool.submit(pow, 2, n) for n in range(20)]
    assert [future.result(timeout=10) for future in futures] == [2**n for n in range(20)]
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=10)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print)


def test_asyncio_to_thread_runs_on_it() -> None:
    pool = LeavingPool()

    async def main() -> str:
        asyncio.get_running_loop().set_default_executor(pool)
        return await asyncio.to_thread(lambda: threading.current_thread().name)

    name = asyncio.run(main())
    assert name.startswith("pepperpy-event-cli-")


def test_shutdown_waits_for_its_threads_unless_left() -> None:
    release = threading.Event()
    pool = LeavingPool()
    busy = pool.submit(release.wait, 30)
    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    pool.shutdown()  # waits for the work
    assert busy.done() and time.monotonic() - started >= 0.1

    blocked = threading.Event()
    left = LeavingPool()
    stuck = left.submit(blocked.wait, 30)
    queued = [left.submit(blocked.wait, 30) for _ in range(100)]  # more than its threads
    left.leave()
    started = time.monotonic()
    left.shutdown()  # does not wait: the command stopped
    assert time.monotonic() - started < 5
    assert not stuck.done()
    assert any(future.cancelled() for future in queued)  # queued work never starts
    assert all(worker.daemon for worker in left._workers)
    blocked.set()
