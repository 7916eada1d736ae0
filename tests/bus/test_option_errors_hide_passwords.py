"""A bad option value in a transport URL is refused without showing the URL's password.

The Redis transport quoted the whole URL, password included, in the error for a value it
could not read (``?partitions=x``): such errors end up in logs and crash reports.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, NatsTransport, RabbitMQTransport, RedisTransport


@pytest.mark.parametrize(
    ("cls", "url"),
    [
        (RedisTransport, "redis://:s3cret@127.0.0.1:6379/0?partitions=x"),
        (RedisTransport, "redis://127.0.0.1:6379/0?password=s3cret&retention=interest"),
        (RedisTransport, "redis://u:s3cret@127.0.0.1:6379/0?max_deliveries=many"),
        (NatsTransport, "nats://u:s3cret@127.0.0.1:4222?max_deliveries=many"),
        (RabbitMQTransport, "amqp://guest:s3cret@127.0.0.1/?max_deliveries=many"),
    ],
)
def test_a_value_that_is_not_a_number_is_refused_without_the_password(cls: type, url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        cls(url)
    message = str(caught.value)
    option = url.rpartition("&" if "&" in url else "?")[2].partition("=")[0]
    assert option in message  # the error still names what was wrong
    assert "s3cret" not in message
