"""Shared fixtures: live services (PostgreSQL, Redis, NATS, RabbitMQ) with unique names.

A test that needs a service which is not reachable is skipped on a developer machine and
fails in CI (``CI=true``), where ``.ci/run`` starts every service first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Property tests draw new examples on every run: locally that keeps looking for bugs; in
# CI the examples are the same each run (derandomize), so a run fails for a change, not
# for a draw, and a bug a local run finds is pinned as a test of its own.
settings.register_profile("ci", derandomize=True, database=None)
if IN_CI:
    settings.load_profile("ci")

SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
    "nats": ("127.0.0.1", 4222),
    "rabbitmq": ("127.0.0.1", 5672),
}


#: fixtures and markers of tests that talk to a live server over loopback
LIVE_FIXTURES = frozenset({"postgres_url", "postgres_server", "redis_url", "nats_url", "amqp_url"})
LIVE_MARKERS = ("postgres", "redis", "nats", "rabbitmq", "slow")
LIVE_FOLDERS = ("tests/bus/", "tests/notifications/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give tests against live servers two more tries.

    They share two CPU cores with brokers, databases and each other, so a scheduling
    stall can now and then outlast a timeout. A test that fails three times in a row
    still fails the run, and every rerun is reported in pytest's summary.
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        path = item.nodeid.replace("\\", "/")
        live = (
            bool(fixtures & LIVE_FIXTURES)
            or any(item.get_closest_marker(name) for name in LIVE_MARKERS)
            or path.startswith(LIVE_FOLDERS)
        )
        if live and item.get_closest_marker("flaky") is None:
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=1))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str) -> None:
    """Skip (locally) or fail (in CI) when service ``name`` is not reachable."""
    host, port = SERVICES[name]
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}; .ci/run should have started it")
    pytest.skip(message)


def unique_name(prefix: str = "t") -> str:
    """A name no other test run uses (for databases, streams, exchanges, keys)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def fresh_postgres_database(server: str, prefix: str = "pepperpy") -> Iterator[str]:
    """A new database on ``server``, dropped on exit; made and dropped on loops of its own
    (for module-scoped fixtures and sync tests). Yields its URL."""
    asyncpg = pytest.importorskip("asyncpg")
    name = unique_name(prefix)

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(f"{server}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def unique() -> str:
    return unique_name("pep")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    require_service("postgres")
    return "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    asyncpg = pytest.importorskip("asyncpg")
    name = unique_name("pepperpy")
    admin = await asyncpg.connect(f"{postgres_server}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield f"{postgres_server}/{name}"
    admin = await asyncpg.connect(f"{postgres_server}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def redis_url() -> str:
    require_service("redis")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_socket(tmp_path: Path) -> Iterator[Path]:
    """A redis-server of the test's own, listening on a Unix socket only (its path);
    stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    path = tmp_path / "redis.sock"
    command = ["redis-server", "--port", "0", "--unixsocket", str(path), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)
        yield path
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def nats_url() -> str:
    require_service("nats")
    return "nats://127.0.0.1:4222"


@pytest.fixture
def amqp_url() -> str:
    require_service("rabbitmq")
    return "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
def sqlite_url(tmp_path: object) -> Iterator[str]:
    yield f"sqlite:///{tmp_path}/events.db"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_store_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """An event store URL of each backend: in memory, a SQLite file of the test's own, and
    a fresh PostgreSQL database (``postgres_url``, dropped after the test)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return sqlite_url
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres
