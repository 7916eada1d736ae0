"""Ctrl-C while a command's cleanup waits for long.

Closing a PostgreSQL store waits for a connection still being opened, up to its
``connect_timeout``: Ctrl-C while the command connected to a server that does not answer
took that long to stop it, and pressing it again did nothing. After a second, the command
now says it is still stopping, and a second Ctrl-C then quits at once (status 130).
"""

from __future__ import annotations

import queue
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import start_command

_WAIT = 60.0


@pytest.fixture
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server that accepts connections and never says a word; the event is set
    once a client has connected."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    connected = threading.Event()
    done = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            connected.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], connected
    finally:
        done.set()
        thread.join()
        listener.close()
        for connection in accepted:
            connection.close()


def test_a_second_ctrl_c_quits_a_slow_stop_at_once(
    tmp_path: Path, silent_server: tuple[int, threading.Event]
) -> None:
    port, connected = silent_server
    # the connection attempt would last 300 s: far past every wait below
    url = f"postgresql://postgres@127.0.0.1:{port}/x?connect_timeout=300"
    process = start_command("stats", "--store", url, cwd=tmp_path)
    try:
        assert connected.wait(_WAIT)
        process.send_signal(signal.SIGINT)
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        still = lines.get(timeout=_WAIT)
        assert still.startswith("pepperpy-event: still stopping: "), still
        assert "press Ctrl-C again to quit at once" in still
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=_WAIT) == 130
        assert lines.get(timeout=_WAIT) == "interrupted again: quitting without the cleanup\n"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=_WAIT)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
