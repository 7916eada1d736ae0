"""Small helpers for tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import pathlib
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests.conftest import fresh_postgres_database, unique_name

T = TypeVar("T")


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing handles it."""


async def eventually(
    condition: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.01
) -> None:
    """Wait until ``condition()`` is true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def settle(seconds: float = 0.2) -> None:
    """Give asynchronous deliveries a moment (used before asserting that nothing arrives)."""
    await asyncio.sleep(seconds)


async def before_deadline(awaitable: Awaitable[T], seconds: float) -> T:
    """Await ``awaitable``, failing the test (rather than hanging) if it is still waiting
    after ``seconds``: a bound, not a measurement."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"still waiting after {seconds:g} s") from None


class LoopThread:
    """An event loop running in a thread of its own (another thread's loop, or one that
    dies: :meth:`kill`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        #: the tasks a :meth:`kill` left unfinished
        self.left: set[asyncio.Task[Any]] = set()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def kill(self) -> None:
        """Stop and close the loop without shutting its tasks down (a thread that died)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.left = asyncio.all_tasks(self.loop)
        self.loop.close()

    def end(self) -> None:
        """Shut the loop down properly: cancel its tasks, wait for them, close it."""

        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not me]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.kill()

    def bury(self) -> None:
        """Close the coroutines a killed loop left, here rather than in a later test."""
        for task in self.left:
            task._log_destroy_pending = False  # type: ignore[attr-defined]
            with contextlib.suppress(BaseException):  # it runs outside its task and context
                task.get_coro().close()


class LosesCancellation:
    """An awaitable driver call that loses the first cancellation it gets.

    It waits until cancelled, then returns (or raises ``then``) as ``asyncio.wait_for``
    does when the awaited call completed at that moment; later calls after that first
    one wait, cancellably, for ever (a silent server).
    """

    def __init__(self, then: BaseException | None = None, result: Any = None) -> None:
        self.then = then
        self.result = result
        self.entered = asyncio.Event()
        self.lost = 0
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.entered.set()
        if self.lost:
            await asyncio.Event().wait()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.lost += 1  # the library returned instead
        if self.then is not None:
            raise self.then
        return self.result


async def in_cleanup(
    where: str,
    cleanup: Callable[[], Awaitable[Any]],
    *,
    meanwhile: Callable[[asyncio.Task[None]], Awaitable[None]] | None = None,
) -> Any:
    """Run ``cleanup`` in the ``finally:`` (or ``except CancelledError:``) of a task that
    was cancelled; return what it returned, or the exception it raised (the task itself
    still ends cancelled). ``meanwhile(task)``, if given, runs once the task was
    cancelled, while its cleanup runs (to cancel it again, say: :func:`cancel_again`)."""
    outcome: list[Any] = []
    waiting = asyncio.Event()

    async def run() -> None:
        try:
            outcome.append(await cleanup())
        except BaseException as exc:  # the task's cancellation propagates all the same
            outcome.append(exc)

    async def worker() -> None:
        if where == "finally":
            try:
                waiting.set()
                await asyncio.Event().wait()
            finally:
                await run()
        else:
            try:
                waiting.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await run()
                raise

    task = asyncio.get_running_loop().create_task(worker())
    await waiting.wait()
    task.cancel()
    async with asyncio.timeout(10):
        if meanwhile is not None:
            await meanwhile(task)
        await asyncio.wait([task])
    assert task.cancelled()
    [result] = outcome
    return result


def cancel_again(
    when: asyncio.Event,
) -> Callable[[asyncio.Task[None]], Awaitable[None]]:
    """An :func:`in_cleanup` ``meanwhile``: cancel the task again once ``when`` is set."""

    async def again(task: asyncio.Task[None]) -> None:
        await when.wait()
        task.cancel()

    return again


def keeper_tasks() -> list[asyncio.Task[Any]]:
    """The per-loop keeper tasks (notifications, checkpoints) on the running loop: their
    coroutines are all named ``_keep``."""
    return [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_keep"]  # type: ignore[union-attr]


def destroyed_pending(records: list[Any]) -> list[str]:
    """The log records (caplog's) of asyncio's "Task was destroyed but it is pending!"."""
    return [r.getMessage() for r in records if "destroyed but it is pending" in r.getMessage()]


@contextlib.contextmanager
def dropping(owner: weakref.ref[Any]) -> Iterator[list[str]]:
    """Record the resource warnings given while the block drops ``owner`` (collected on
    leaving it, if a cycle kept it); ``owner`` must then be gone."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
        gc.collect()
    assert owner() is None, "the dropped object was not collected"
    messages += [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def assert_mypy_strict_accepts(path: pathlib.Path, cwd: pathlib.Path) -> None:
    """Run ``mypy --strict`` on one file (imports followed silently); fail with its output."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--follow-imports=silent",
            str(path),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def delete_redis_keys(url: str, pattern: str) -> None:
    """Remove every Redis key matching ``pattern`` (what one test created)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def store_urls(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, prefix: str
) -> AsyncIterator[str]:
    """The URL of a new store of the kind ``request.param`` names (``memory``, ``sqlite``
    or ``postgres``): PostgreSQL in a schema named after ``prefix``, dropped after. For a
    fixture parametrized over the backends: ``async for url in store_urls(...): yield url``."""
    if request.param == "memory":
        yield "memory://"
        return
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/events.db"
        return
    server = request.getfixturevalue("postgres_server")
    schema = unique_name(prefix)
    yield f"{server}/postgres?schema={schema}"
    import asyncpg

    connection = await asyncpg.connect(f"{server}/postgres")
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def database_store_urls(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, prefix: str = "pepperpy"
) -> Iterator[str]:
    """:func:`store_urls` with PostgreSQL in a database of its own, made and dropped on
    loops of their own: for a sync fixture (``yield from``), which sync tests can take."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/events.db"
    else:
        server = request.getfixturevalue("postgres_server")
        with fresh_postgres_database(server, prefix) as url:
            yield url
