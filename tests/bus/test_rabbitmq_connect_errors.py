"""RabbitMQ: start() errors of a URL that can never work say what is wrong, at once.

A TLS file the URL names that cannot be read (``?cafile=`` of a path that is not there)
was tried again for the whole ``connect_timeout``, as if the broker were starting, and
then reported as ``[Errno 2] No such file or directory (tried 10 times in 10.0s ...)``,
naming no file. An ``?auth=`` mechanism the broker does not offer was reported as
``[Errno PLAIN AMQPLAIN] ['PLAIN', 'EXTERNAL']; check the user and password in the
URL``, blaming the credentials. Both run against the real broker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name

pytestmark = pytest.mark.rabbitmq


async def test_a_tls_file_that_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    transport = RabbitMQTransport(
        f"amqps://guest:guest@127.0.0.1:5672/?cafile={missing}",
        exchange=unique_name("pep.x"),
        connect_timeout=30,
        reconnect_interval=0.1,
    )
    try:
        with pytest.raises(TransportError) as caught:
            await transport.start()
    finally:
        await transport.close()
    message = str(caught.value)
    assert f"cannot read a file the URL names for TLS (cafile='{missing}')" in message
    assert "No such file or directory" in message
    assert "tried" not in message  # not tried again: no retry makes the file appear
    assert "guest:***@" in message


async def test_an_auth_mechanism_the_broker_does_not_offer() -> None:
    transport = RabbitMQTransport(
        "amqp://guest:guest@127.0.0.1:5672/?auth=external",
        exchange=unique_name("pep.x"),
        connect_timeout=30,
    )
    try:
        with pytest.raises(TransportError) as caught:
            await transport.start()
    finally:
        await transport.close()
    message = str(caught.value)
    assert "does not offer the authentication mechanism EXTERNAL (?auth=external)" in message
    assert "it offers PLAIN" in message
    assert "user and password" not in message
    assert "Errno" not in message
