"""A bus started on one event loop, used after that loop ended (a second ``asyncio.run``).

Its connections and consumers ended with the first loop, so every use from the second
one fails at once with a ClosedError that says why and what to do, on every transport
alike (memory:// included, so code tested in memory fails the same way), and close()
from the second loop completes. Run in a subprocess: what the first loop leaves behind
is garbage-collected there, not inside another test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unique_name

WORKER = Path(__file__).with_name("second_loop_worker.py")
URL_FIXTURE = {"memory": None, "redis": "redis_url", "nats": "nats_url", "rabbitmq": "amqp_url"}


@pytest.mark.parametrize("kind", list(URL_FIXTURE))
def test_a_bus_used_after_its_event_loop_ended_fails_fast_and_closes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    fixture = URL_FIXTURE[kind]
    url = "" if fixture is None else request.getfixturevalue(fixture)
    result = subprocess.run(
        [sys.executable, "-m", "tests.bus.second_loop_worker", kind, url, unique_name("pep")],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for operation in ("publish", "start", "unsubscribe", "subscribe"):
        outcome = report[operation]["outcome"]
        assert outcome.startswith("ClosedError: this EventBus was started on an event loop"), (
            operation,
            outcome,
        )
        assert "has ended" in outcome and "asyncio.run" in outcome
        assert report[operation]["seconds"] < 1, (operation, report[operation])
    for operation in ("close", "close again"):
        assert report[operation]["outcome"] == "ok", (operation, report[operation])
        assert report[operation]["seconds"] < 1, (operation, report[operation])
    # the old loop's connections are closed by close(), not left to the garbage collector
    # (a process running many event loops would hold a descriptor per connection)
    assert report["sockets left"] == 0, report
