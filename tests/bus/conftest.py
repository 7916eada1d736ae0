"""Fixtures shared by the bus tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.bus.nats_fixtures import nats_jetstream, nats_namespace  # noqa: F401 - fixtures
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys

#: a body the patched decoder fails on with something other than SerializationError
TRAP = b'{"trap": true}'


@pytest.fixture
def decoder_that_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Event.from_json`` fails on :data:`TRAP` as a decoder bug would (RecursionError)."""
    real = Event.from_json

    def from_json(data: Any) -> Event:
        if bytes(data) == TRAP:
            raise RecursionError("maximum recursion depth exceeded")
        return real(data)

    monkeypatch.setattr(Event, "from_json", staticmethod(from_json))


@pytest.fixture
async def namespace(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A Redis key namespace of this test's own (named after its module), deleted after it.
    The NATS modules use ``nats_namespace`` (tests/bus/nats_fixtures.py); the conformance
    modules define their own ``namespace``."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_redis_")
    name = unique_name(f"pep{module.replace('_', '')}")
    yield name
    await delete_redis_keys(redis_url, f"{name}:*")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    """A plain redis-py client (decode_responses off), closed after the test."""
    import redis.asyncio as aioredis

    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


# -- the fault proxy ----------------------------------------------------------------------

#: each broker marker: the local server's port, and the fixture that skips without it
BROKERS = {"redis": (6379, "redis_url"), "rabbitmq": (5672, "amqp_url"), "nats": (4222, "nats_url")}


def broker_of(request: pytest.FixtureRequest) -> str:
    """The broker a test is marked for (``pytest.mark.redis``, ``rabbitmq`` or ``nats``)."""
    marked = [name for name in BROKERS if request.node.get_closest_marker(name)]
    if len(marked) != 1:
        raise pytest.UsageError(
            f"{request.node.nodeid}: the proxy fixtures need exactly one broker marker "
            f"of {sorted(BROKERS)}, found {marked}"
        )
    return marked[0]


@pytest.fixture
async def proxy(request: pytest.FixtureRequest) -> AsyncIterator[FaultProxy]:
    """A fault proxy (tests/faultproxy.py) in front of the broker of the test's marker:
    only the connections made through it are broken, never the shared server."""
    port, url_fixture = BROKERS[broker_of(request)]
    request.getfixturevalue(url_fixture)  # skips the test when that server is not running
    async with FaultProxy(port) as made:
        yield made


@pytest.fixture
def through_proxy(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Makes transports of the broker of the test's marker, connecting through ``proxy``:
    :func:`redis_through_proxy`, :func:`rabbitmq_through_proxy` or
    :func:`nats_through_proxy`."""
    made: Callable[..., Any] = request.getfixturevalue(f"{broker_of(request)}_through_proxy")
    return made


@pytest.fixture
async def redis_through_proxy(
    proxy: FaultProxy, redis_url: str
) -> AsyncIterator[Callable[..., RedisTransport]]:
    """Redis transports through the proxy, in a key namespace of the test's own."""
    namespace = unique_name("pep_fault")
    made: list[RedisTransport] = []

    def make(**options: Any) -> RedisTransport:
        options.setdefault("namespace", namespace)
        options.setdefault("trim_interval", None)
        transport = RedisTransport(f"redis://127.0.0.1:{proxy.port}/0", **options)
        made.append(transport)
        return transport

    yield make
    proxy.resume()
    proxy.heal()
    for transport in made:
        await finishes(transport.close(), 30)
    await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.fixture
async def rabbitmq_through_proxy(
    proxy: FaultProxy, amqp_url: str
) -> AsyncIterator[Callable[..., RabbitMQTransport]]:
    """RabbitMQ transports through the proxy, on one exchange of the test's own; what
    they declared is deleted after the test, through the healed proxy."""
    exchange = unique_name("pep.fault")
    made: list[RabbitMQTransport] = []

    def make(query: str = "", **options: Any) -> RabbitMQTransport:
        options.setdefault("exchange", exchange)
        options.setdefault("reconnect_interval", 0.2)
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{query}"
        transport = RabbitMQTransport(url, **options)
        made.append(transport)
        return transport

    yield make
    proxy.resume()
    proxy.heal()
    for transport in made:
        await finishes(transport.close(), 15)
        await finishes(transport.delete_topology(), 15)


@pytest.fixture
async def names(nats_url: str) -> AsyncIterator[dict[str, str]]:
    """NATS: a stream and subject prefix of the test's own, the stream deleted after it."""
    name = unique_name("pep_fault")
    yield {"stream": name.upper(), "prefix": name}
    await finishes(NatsTransport(nats_url, stream=name.upper()).delete_stream(), 15)


@pytest.fixture
def nats_through_proxy(proxy: FaultProxy, names: dict[str, str]) -> Callable[..., NatsTransport]:
    """NATS transports through the proxy, on the stream and prefix of ``names``."""

    def make(**options: Any) -> NatsTransport:
        options.setdefault("reconnect_wait", 0.2)
        return NatsTransport(f"nats://127.0.0.1:{proxy.port}", **names, **options)

    return make


@pytest.fixture
async def rabbitmq_transports(amqp_url: str) -> AsyncIterator[Callable[..., RabbitMQTransport]]:
    """RabbitMQ transports on one exchange unique to the test; their topology is deleted
    after it."""
    exchange = unique_name("pep.x")
    made: list[RabbitMQTransport] = []

    def make(**options: Any) -> RabbitMQTransport:
        options.setdefault("exchange", exchange)
        transport = RabbitMQTransport(amqp_url, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()
        await transport.delete_topology()
