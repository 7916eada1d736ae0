"""The console answers only requests for its own host names (DNS rebinding).

A web page can rebind its own name to 127.0.0.1 and then read a console on loopback as
if it were its own site: the console answered any Host header, so the page could read
every stream, payload and the live tail. It also set no security headers.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app
from pepperpy.event.cli._console_pages import CONTENT_SECURITY_POLICY

from .conftest import Cli, start_command

SECURE = {"x-content-type-options": "nosniff", "content-security-policy": CONTENT_SECURITY_POLICY}
FOREIGN = [
    "evil.example",
    "evil.example:8080",
    "127.0.0.1.evil.example",
    "localhost.evil.example:8080",
    "[::2]:8080",
    "[::1",
    "127.0.0.1:x",
    "127.0.0.1:8080:1",
    "",
]
LOOPBACK = ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "LocalHost", "127.0.0.1", "[::1]"]
LOOPBACK.append("[0:0:0:0:0:0:0:1]:8080")  # the same address, written long


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    events = EventStore()
    await events.append("user.1", Event("user.created", {"ssn": "123-45-6789"}))
    yield events
    await events.close()


def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


@pytest.mark.parametrize("host", FOREIGN)
async def test_a_foreign_host_gets_421(store: EventStore, host: str) -> None:
    async with _client(console_app(store)) as http:
        for path in ("/", "/api/events", "/api/tail?from=0", "/streams/user.1", "/nothing"):
            answer = await http.get(path, headers={"Host": host})
            assert answer.status_code == 421, (host, path, answer.text)
            assert "does not answer to Host" in answer.json()["error"]
            assert "123-45" not in answer.text
            assert {k: answer.headers[k] for k in SECURE} == SECURE


@pytest.mark.parametrize("host", LOOPBACK)
async def test_loopback_names_are_answered(store: EventStore, host: str) -> None:
    async with _client(console_app(store)) as http:
        answer = await http.get("/api/events", headers={"Host": host})
        assert answer.status_code == 200, (host, answer.text)
        assert answer.json()[0]["data"] == {"ssn": "123-45-6789"}
        assert {k: answer.headers[k] for k in SECURE} == SECURE


async def test_every_response_carries_the_security_headers(store: EventStore) -> None:
    async with _client(console_app(store)) as http:
        for path in ("/", "/tail", "/streams/user.1", "/streams/nobody.1", "/api/events?x=1"):
            answer = await http.get(path)
            assert answer.status_code in (200, 400, 404), path
            assert {k: answer.headers[k] for k in SECURE} == SECURE, path
        tail = await http.get("/tail")
        assert "<script>" in tail.text  # its inline script, allowed by its hash alone
        assert "'sha256-" in tail.headers["content-security-policy"]
        assert "unsafe-inline" not in tail.headers["content-security-policy"]


async def test_named_hosts_and_the_wildcard(store: EventStore) -> None:
    async with _client(console_app(store, allowed_hosts=["Console.Internal"])) as http:
        assert (await http.get("/", headers={"Host": "console.internal:80"})).status_code == 200
        assert (await http.get("/", headers={"Host": "127.0.0.1:8080"})).status_code == 421
    async with _client(console_app(store, allowed_hosts=["::1"])) as http:
        assert (await http.get("/", headers={"Host": "[::1]:8080"})).status_code == 200
    async with _client(console_app(store, allowed_hosts=["*"])) as http:
        answer = await http.get("/api/events", headers={"Host": "evil.example"})
        assert answer.status_code == 200
        assert answer.headers["x-content-type-options"] == "nosniff"


async def test_a_request_without_host_gets_421(store: EventStore) -> None:
    app = console_app(store)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.0",
        "method": "GET",
        "scheme": "http",
        "path": "/api/events",
        "raw_path": b"/api/events",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 421


@contextmanager
def serving(tmp_path: Path, *options: str) -> Iterator[str]:
    """``serve --port 0 OPTIONS`` on a store with one event; yields its port."""

    async def fill() -> None:
        async with EventStore(f"sqlite:///{tmp_path}/events.db") as events:
            await events.append("user.1", Event("user.created", {"ssn": "123-45-6789"}))

    asyncio.run(fill())
    process = start_command("serve", "--port", "0", *options, cwd=tmp_path)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("pepperpy-event console on http://127.0.0.1:"), banner
        yield banner.split()[3].rsplit(":", 1)[1].rstrip("/")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _get(port: str, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/api/events", headers={"Host": host}, timeout=10)


def test_serve_refuses_a_foreign_host_over_http(tmp_path: Path) -> None:
    with serving(tmp_path) as port:
        for host in ("evil.example", f"evil.example:{port}", "console.test"):
            answer = _get(port, host)
            assert answer.status_code == 421, (host, answer.text)
            assert "123-45" not in answer.text
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            answer = _get(port, host)
            assert answer.status_code == 200, (host, answer.text)
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert answer.headers["x-content-type-options"] == "nosniff"


def test_serve_allow_host_adds_a_name(tmp_path: Path) -> None:
    with serving(tmp_path, "--allow-host", "console.test") as port:
        assert _get(port, f"console.test:{port}").status_code == 200
        assert _get(port, f"127.0.0.1:{port}").status_code == 200
        assert _get(port, "evil.example").status_code == 421


def test_serve_allow_host_star_turns_the_check_off(tmp_path: Path) -> None:
    with serving(tmp_path, "--allow-host", "*") as port:
        assert _get(port, "evil.example").status_code == 200


def test_serve_on_all_interfaces_says_which_hosts_it_answers(tmp_path: Path) -> None:
    process = start_command("serve", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("pepperpy-event console on http://0.0.0.0:"), banner
        port = banner.split()[3].rsplit(":", 1)[1].rstrip("/")
        assert _get(port, f"127.0.0.1:{port}").status_code == 200
        assert _get(port, f"my-laptop.lan:{port}").status_code == 421
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "--allow-host NAME" in err.splitlines()[0], err


async def test_a_host_with_a_port_answers_that_port_only(store: EventStore) -> None:
    """An entry with a port (Django and Starlette compare hosts port aside) never matched."""
    allowed = ["Proxy.Test:8443", "[::2]:9000", "lan.test", "::3"]
    async with _client(console_app(store, allowed_hosts=allowed)) as http:
        for host in ("proxy.test:8443", "PROXY.TEST:08443", "[::2]:9000", "[0:0::2]:9000"):
            assert (await http.get("/", headers={"Host": host})).status_code == 200, host
        for host in ("lan.test", "lan.test:1", "[::3]", "[::3]:8080"):  # a name alone: any port
            assert (await http.get("/", headers={"Host": host})).status_code == 200, host
        refused = ("proxy.test", "proxy.test:8444", "[::2]", "[::2]:9001", "::2", "127.0.0.1")
        for host in refused:
            assert (await http.get("/", headers={"Host": host})).status_code == 421, host
        error = (await http.get("/", headers={"Host": "proxy.test"})).json()["error"]
        assert "open it as one of ::3, [::2]:9000, lan.test, proxy.test:8443 " in error, error


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("proxy:http", "the port must be a number from 1 to 65535, got 'http'"),
        ("proxy:", "the port must be a number from 1 to 65535, got ''"),
        ("proxy:0", "the port must be a number from 1 to 65535, got '0'"),
        ("proxy:65536", "the port must be a number from 1 to 65535, got '65536'"),
        ("[::1]8080", "an IPv6 address is written [address] or [address]:port"),
        ("[::1", "an IPv6 address is written [address] or [address]:port"),
        ("http://proxy:8080", "give a host name (with a port if you like), not a URL"),
        ("*.example.com", "'*' stands alone, for any host"),
        ("*:8080", "'*' stands alone, for any host"),
        (":8080", "the host name before the port is missing"),
        # a name no Host header can carry was taken, and never matched any request
        ("a b", "'a b' is not a host name (letters, digits, '-' and '.')"),
        ("a b:8080", "'a b' is not a host name"),
        ("user@proxy", "'user@proxy' is not a host name"),
        ("proxy/x", "'proxy/x' is not a host name"),
        ("[proxy]:8080", "brackets hold an IPv6 address, got 'proxy'"),
    ],
)
async def test_a_malformed_allowed_host_is_refused(
    store: EventStore, entry: str, says: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(says)):
        console_app(store, allowed_hosts=[entry])


async def test_a_non_ascii_allowed_host_answers_its_idna_form(store: EventStore) -> None:
    """Browsers send a non-ASCII host name in its IDNA form (xn--...) in ``Host``."""
    app = console_app(store, allowed_hosts=["bücher.test", "Proxy.Test"])
    async with _client(app) as http:
        for host in ("xn--bcher-kva.test", "proxy.test", "PROXY.test:8080"):
            assert (await http.get("/", headers={"Host": host})).status_code == 200, host
        assert (await http.get("/", headers={"Host": "bucher.test"})).status_code == 421


def test_serve_allow_host_with_a_port(tmp_path: Path) -> None:
    """serve --allow-host proxy:8080 was taken, and the console answered 421 to the proxy."""
    hosts = ("--allow-host", "proxy.test:8443", "--allow-host", "lan.test")
    with serving(tmp_path, *hosts) as port:
        assert _get(port, "proxy.test:8443").status_code == 200
        assert _get(port, "lan.test:8443").status_code == 200
        assert _get(port, f"lan.test:{port}").status_code == 200
        for host in ("proxy.test", f"proxy.test:{port}", "proxy.test:8444"):
            answer = _get(port, host)
            assert answer.status_code == 421, (host, answer.text)
            assert "proxy.test:8443" in answer.json()["error"]


def test_serve_refuses_a_malformed_allow_host(cli: Cli) -> None:
    """A port that is no port, or a URL, was taken as a name that matches nothing."""
    for entry, says in [
        ("proxy:http", "--allow-host 'proxy:http': the port must be a number from 1 to 65535"),
        ("http://proxy:8080", "--allow-host 'http://proxy:8080': give a host name"),
    ]:
        done = cli(
            "serve", "--port", "0", "--store", "memory://", "--allow-host", entry, timeout=20
        )
        assert done.code == 1 and done.out == "", (entry, done.out, done.err)
        assert done.err.startswith(f"pepperpy-event: error: {says}"), done.err
        assert len(done.err.splitlines()) == 1, done.err
