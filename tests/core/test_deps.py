"""Optional extras: a missing driver gives an install hint, other import errors pass through."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pepperpy.event import EventError, MissingDependencyError
from pepperpy.event._deps import require


def test_a_missing_module_names_the_extra_to_install() -> None:
    with pytest.raises(MissingDependencyError) as caught:
        require("pepperpy_no_such_driver_xyz", extra="postgres", feature="The PostgreSQL store")
    error = caught.value
    assert isinstance(error, ImportError) and isinstance(error, EventError)
    assert "pip install 'pepperpy-event[postgres]'" in str(error)
    assert "The PostgreSQL store" in str(error)
    assert error.extra == "postgres"
    assert error.name == "pepperpy_no_such_driver_xyz"
    assert isinstance(error.__cause__, ModuleNotFoundError)


def test_a_missing_submodule_of_a_missing_package_names_the_package() -> None:
    with pytest.raises(MissingDependencyError) as caught:
        require("pepperpy_no_such_pkg.sub", extra="nats", feature="NATS")
    assert caught.value.name == "pepperpy_no_such_pkg"
    assert "pepperpy-event[nats]" in str(caught.value)


def test_an_installed_module_is_returned() -> None:
    import json

    assert require("json", extra="x", feature="y") is json


def test_a_broken_installed_package_is_not_reported_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the driver is installed but one of *its* imports fails, that error is the truth."""
    (tmp_path / "pepperpy_broken_driver.py").write_text("import pepperpy_its_missing_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("pepperpy_broken_driver", extra="redis", feature="Redis")
    assert not isinstance(caught.value, MissingDependencyError)
    assert caught.value.name == "pepperpy_its_missing_dep"
    sys.modules.pop("pepperpy_broken_driver", None)


@pytest.mark.parametrize(
    ("driver", "url", "extra"),
    [
        ("redis", "redis://127.0.0.1:6379/0", "redis"),
        ("nats", "nats://127.0.0.1:4222", "nats"),
        ("aio_pika", "amqp://guest:guest@127.0.0.1:5672/", "rabbitmq"),
    ],
)
def test_a_bus_on_a_transport_without_its_driver_names_the_extra(
    driver: str, url: str, extra: str
) -> None:
    """Run in a fresh interpreter where the driver cannot be imported."""
    import subprocess

    code = f"""
import asyncio, sys
sys.modules[{driver!r}] = None  # as if the package were not installed
from pepperpy.event import EventBus, MissingDependencyError

async def main():
    try:
        bus = EventBus(transport={url!r})
    except MissingDependencyError as exc:
        print("HINT at EventBus()", exc)
        return
    try:
        await bus.start()
    except MissingDependencyError as exc:  # too late: a service started half-way
        print("HINT at start()", exc)
    else:
        await bus.close()
        print("NO ERROR")

asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'pepperpy-event[{extra}]'" in result.stdout, result.stdout
    # named where the bus is made, for every transport alike (NATS said it at start())
    assert result.stdout.startswith("HINT at EventBus()"), result.stdout
