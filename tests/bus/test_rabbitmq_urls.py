"""RabbitMQ URL mistakes get our error naming the mistake, when the transport is made or
(a virtual host only the broker can judge) when it connects.

Before: a wrong virtual host gave ``Expected one of ['Connection.OpenOk'], got
<Connection.Close object at 0x...>``; a bad port a bare yarl ``ValueError`` from inside
``start()`` plus aio-pika's "Task exception was never retrieved"; a typo'd option
(``?exchnage=shop``) or a bad driver value (``?heartbeat=soon``, read as 0: no heartbeats)
was accepted silently.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from pepperpy.event import ConfigurationError, EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name

pytest.importorskip("aio_pika")

BASE = "amqp://guest:s3cret@127.0.0.1:5672/"


@pytest.mark.parametrize("port", ["99999", "0", "65536", "abc", "-1", "+5672", "\uff15"])
def test_a_bad_port_is_refused_when_made_naming_the_url_without_its_password(
    port: str,
) -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{port}/"
    with pytest.raises(ConfigurationError) as caught:
        EventBus(transport=url)
    message = str(caught.value)
    assert f"bad port {port!r}" in message
    assert "amqp://guest:***@127.0.0.1:" in message
    assert "s3cret" not in message


def test_an_unclosed_ipv6_bracket_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"bad RabbitMQ URL amqp://guest:\*\*\*@\[::1/"):
        RabbitMQTransport("amqp://guest:s3cret@[::1/")


def test_a_typo_in_an_option_is_refused_with_the_known_names() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RabbitMQTransport(BASE + "?exchnage=shop")
    message = str(caught.value)
    assert "unknown parameter 'exchnage' in the RabbitMQ URL (did you mean 'exchange'?)" in message
    for known in ("exchange", "partitions", "heartbeat", "no_verify_ssl", "cafile"):
        assert known in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("heartbeat=soon", "heartbeat='soon' must be a whole number >= 0 and <= 65534"),
        ("heartbeat=65535", "heartbeat='65535' must be a whole number"),
        ("heartbeat=-1", "heartbeat='-1' must be a whole number"),
        ("timeout=ten", "timeout='ten' must be a whole number"),
        ("interleave=1.5", "interleave='1.5' must be a whole number"),
        ("happy_eyeballs_delay=nan", "happy_eyeballs_delay='nan' must be a finite number"),
        ("happy_eyeballs_delay=soon", "happy_eyeballs_delay='soon' must be a finite number"),
        # aiormq verifies the certificate only for the value "0": "false" turned it off
        ("no_verify_ssl=false", "no_verify_ssl='false' must be one of 0, 1"),
        ("fail_fast=maybe", "fail_fast='maybe' must be one of"),
        ("auth=kerberos", "auth='kerberos' must be one of plain, external"),
        ("cadata=not*base64", "cadata='not\\*base64' must be base64"),
    ],
)
def test_a_bad_value_of_a_driver_option_is_refused(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RabbitMQTransport(f"{BASE}?{query}")


def test_good_driver_options_pass_to_aio_pika() -> None:
    query = (
        "heartbeat=30&timeout=5&auth=PLAIN&no_verify_ssl=1&fail_fast=true&interleave=1"
        "&happy_eyeballs_delay=0.25&cafile=ca.pem&name=orders-api&exchange=shop"
    )
    transport = RabbitMQTransport(f"{BASE}?{query}")
    assert transport.url == f"{BASE}?{query.removesuffix('&exchange=shop')}"
    assert transport.exchange_name == "shop"


def test_the_name_option_names_the_connection() -> None:
    # aiormq read ?name=, but the transport's own connection_name replaced it unseen
    assert RabbitMQTransport(BASE + "?name=orders-api").connection_name == "orders-api"
    assert RabbitMQTransport(BASE).connection_name.startswith("pepperpy-event ")


# -- against the broker -------------------------------------------------------------------


def rabbitmqctl(*args: str) -> str:
    command = shutil.which("rabbitmqctl")
    if command is None:
        pytest.skip("rabbitmqctl is not installed")
    done = subprocess.run(
        [command, "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot reach the broker: {done.stderr.strip()[:200]}")
    return done.stdout


@pytest.fixture
def vhost_without_permissions() -> Iterator[str]:
    """A virtual host guest has no permissions for (deleted afterwards)."""
    name = unique_name("pep_vh")
    rabbitmqctl("add_vhost", name)
    try:
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.mark.rabbitmq
async def test_a_missing_virtual_host_is_named_with_the_brokers_reason(amqp_url: str) -> None:
    vhost = unique_name("pep_novh")
    bus = EventBus(transport=f"amqp://guest:guest@127.0.0.1:5672/{vhost}?connect_timeout=10")
    try:
        with pytest.raises(TransportError) as caught:
            await bus.start()
    finally:
        await bus.close()
    message = str(caught.value)
    assert f"refused to open virtual host {vhost!r}: NOT_ALLOWED - vhost {vhost} not found" in (
        message
    )
    assert "amqp://guest:***@127.0.0.1:5672/" in message
    assert "Connection.Close" not in message


@pytest.mark.rabbitmq
async def test_a_virtual_host_without_permission_is_named_with_the_brokers_reason(
    amqp_url: str, vhost_without_permissions: str
) -> None:
    vhost = vhost_without_permissions
    bus = EventBus(transport=f"amqp://guest:guest@127.0.0.1:5672/{vhost}?connect_timeout=10")
    try:
        with pytest.raises(TransportError) as caught:
            await bus.start()
    finally:
        await bus.close()
    message = str(caught.value)
    # the reply code differs between RabbitMQ releases (530 NOT_ALLOWED here); the text names it
    assert f"refused to open virtual host {vhost!r}: " in message
    assert f"access to vhost '{vhost}' refused for user 'guest'" in message
    assert "Connection.Close" not in message


@pytest.mark.rabbitmq
async def test_the_url_name_is_the_connections_name_in_the_broker(amqp_url: str) -> None:
    name = unique_name("pep-conn")
    exchange = unique_name("pep.x")
    transport = RabbitMQTransport(f"{amqp_url}?name={name}", exchange=exchange)
    await transport.start()
    try:
        listed = await asyncio.to_thread(rabbitmqctl, "list_connections", "client_properties")
        assert name in listed
    finally:
        await transport.close()
        await transport.delete_topology()
