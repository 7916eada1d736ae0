"""A ``rediss://`` URL at the port of a Redis without TLS fails ``start()`` at once, saying so.

Redis answers a TLS ClientHello with nothing (it reads it as the start of an inline
command and waits for the rest), so the handshake got no answer: the transport retried
for the whole ``connect_timeout`` (60 s here, past the 20-s bound of
:func:`start_failure`) and then reported Redis "unreachable ...: no answer", while NATS
(``tls://``) and RabbitMQ (``amqps://``) name the same mistake at once.
``tests/bus/test_redis_tls.py`` covered it with a fake server greeting every connection
with ``-ERR``, which a real Redis never does. Against the real Redis of the test suite.
"""

from __future__ import annotations

import pytest

from pepperpy.event.transports.redis import RedisTransport
from tests.bus.starting import start_failure

pytestmark = pytest.mark.redis


async def test_a_rediss_url_at_a_plain_text_redis_fails_at_once_saying_so(redis_url: str) -> None:
    where = redis_url.removeprefix("redis://").split("/", 1)[0]  # 127.0.0.1:6379
    url = redis_url.replace("redis://", "rediss://", 1)
    message = await start_failure(RedisTransport(url, connect_timeout=60))
    assert message == (
        f"the server at {where} answers in plain text at this port, without TLS, and a "
        f"rediss:// URL speaks TLS: use a redis:// URL for it (redis://{where}), or the "
        "server's tls-port"
    )
