"""Small helpers for tests."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable


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
