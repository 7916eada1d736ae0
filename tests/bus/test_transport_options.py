"""One name for the delivery limit on every transport, and keyword arguments checked alike.

``max_deliveries`` (deliveries without an acknowledgement before an event is
dead-lettered) is the option's name on Redis, NATS and RabbitMQ, by keyword and in the
URL; NATS's ``max_deliver`` and RabbitMQ's ``delivery_limit`` stay accepted as synonyms,
and giving both names is refused. ``NatsTransport`` takes typed keyword-only arguments
(its options' fields), and an unknown keyword names the closest option on every
transport. The option tests make transports without connecting; the dead-letter tests
run through the real brokers, each on names of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event
from pepperpy.event.transports import Subscription, Transport
from pepperpy.event.transports.nats import NatsOptions, NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys

URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
}
CLASSES: dict[str, Any] = {
    "redis": RedisTransport,
    "nats": NatsTransport,
    "rabbitmq": RabbitMQTransport,
}
#: each broker's own name for max_deliveries, where it has one
NATIVE = {"nats": "max_deliver", "rabbitmq": "delivery_limit"}


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def limit_of(transport: Transport) -> int:
    """The delivery limit ``transport`` was configured with, read by its common name."""
    if isinstance(transport, RabbitMQTransport):
        return transport.max_deliveries
    assert isinstance(transport, RedisTransport | NatsTransport)
    return transport.options.max_deliveries


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_max_deliveries_is_taken_by_keyword_and_in_the_url_on_every_transport(kind: str) -> None:
    cls, url = CLASSES[kind], URLS[kind]
    assert limit_of(cls(url, max_deliveries=3)) == 3
    assert limit_of(cls(with_query(url, "max_deliveries=4"))) == 4
    # the keyword wins over the URL, as for every option
    assert limit_of(cls(with_query(url, "max_deliveries=4"), max_deliveries=2)) == 2


@pytest.mark.parametrize("kind", sorted(NATIVE))
def test_the_brokers_own_name_stays_a_synonym(kind: str) -> None:
    cls, url, native = CLASSES[kind], URLS[kind], NATIVE[kind]
    assert limit_of(cls(url, **{native: 3})) == 3
    assert limit_of(cls(with_query(url, f"{native}=4"))) == 4
    # one option: the keyword under one name wins over the URL under the other
    assert limit_of(cls(with_query(url, f"{native}=4"), max_deliveries=2)) == 2
    assert limit_of(cls(with_query(url, "max_deliveries=4"), **{native: 2})) == 2
    # read back under the old name too
    transport = cls(url, max_deliveries=6)
    assert getattr(transport.options if kind == "nats" else transport, native) == 6


@pytest.mark.parametrize("kind", sorted(NATIVE))
def test_both_names_at_once_are_refused_naming_both(kind: str) -> None:
    cls, url, native = CLASSES[kind], URLS[kind], NATIVE[kind]
    with pytest.raises(ConfigurationError, match=f"'max_deliveries' and '{native}'.*keyword"):
        cls(url, max_deliveries=3, **{native: 3})  # even when they agree
    with pytest.raises(ConfigurationError, match=f"'max_deliveries' and '{native}'.*URL"):
        cls(with_query(url, f"max_deliveries=3&{native}=4"))


def test_each_transport_keeps_its_default_delivery_limit() -> None:
    defaults = {kind: limit_of(cls(URLS[kind])) for kind, cls in CLASSES.items()}
    assert defaults == {"redis": 5, "nats": 5, "rabbitmq": 10}


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_an_unknown_keyword_names_the_closest_option(kind: str) -> None:
    cls = CLASSES[kind]
    with pytest.raises(TypeError) as caught:
        cls(URLS[kind], max_deliverys=3)
    message = str(caught.value)
    assert f"{cls.__name__}() got an unexpected keyword argument 'max_deliverys'" in message
    assert "(did you mean 'max_deliveries'?)" in message
    assert "partitions" in message  # the options are listed
    with pytest.raises(TypeError, match="did you mean 'connect_timeout'"):
        cls(URLS[kind], conect_timeout=3.0)


def test_nats_options_are_typed_keyword_only_arguments_from_its_options() -> None:
    parameters = inspect.signature(NatsTransport).parameters
    assert list(parameters)[0] == "url"
    keywords = {name: p for name, p in parameters.items() if name != "url"}
    assert all(p.kind is p.KEYWORD_ONLY for p in keywords.values())
    # tls: an ssl.SSLContext, no URL option (so no NatsOptions field)
    assert set(keywords) == {f.name for f in fields(NatsOptions)} | {"max_deliver", "tls"}
    defaults = NatsOptions()
    for field in fields(NatsOptions):
        assert keywords[field.name].default == getattr(defaults, field.name), field.name
        assert keywords[field.name].annotation == field.type, field.name


def test_a_type_checker_sees_the_nats_keywords(tmp_path: Path) -> None:
    """mypy accepts NATS's keywords with the right types and refuses a typo or a wrong type
    (``**options: Any`` accepted both)."""
    from mypy import api

    checked = tmp_path / "uses_nats.py"
    checked.write_text(
        textwrap.dedent(
            """
            from pepperpy.event.transports.nats import NatsTransport

            NatsTransport("nats://h", max_deliveries=3, ack_wait=2.5, max_age=None)
            NatsTransport("nats://h", max_deliver=3)
            NatsTransport("nats://h", max_deliverys=3)
            NatsTransport("nats://h", ack_wait="soon")
            """
        )
    )
    # mypy raises the process-wide recursion limit (to 2**14) and leaves it so: put it
    # back, or later tests of depth limits run under a limit that is not Python's
    limit = sys.getrecursionlimit()
    try:
        out, err, status = api.run(
            [
                "--strict",
                "--no-incremental",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--follow-imports",
                "silent",
                str(checked),
            ]
        )
    finally:
        sys.setrecursionlimit(limit)
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out + err
    assert [line.split(":")[1] for line in errors] == ["6", "7"], out
    assert 'Unexpected keyword argument "max_deliverys"' in errors[0]
    assert '"ack_wait"' in errors[1] and '"str"' in errors[1]


# -- through the brokers: max_deliveries=2 dead-letters on the third delivery --------------


async def dead_letter_of_a_failing_event(transport: Transport) -> tuple[int, Event, Event]:
    """Deliver one event to a group handler that always raises, until ``transport``
    dead-letters it; returns how often the handler ran, the event and its dead letter."""
    calls: list[str] = []
    dead: list[Event] = []
    lettered = asyncio.Event()

    async def poison(event: Event) -> None:
        calls.append(event.id)
        raise RuntimeError("fails every time")

    async def collect(event: Event) -> None:
        dead.append(event)
        lettered.set()

    await transport.start()
    try:
        await transport.subscribe(Subscription("jobs.*", poison, group="workers", name="p"))
        await transport.subscribe(Subscription("deadletter.jobs.*", collect, name="d"))
        sent = Event("jobs.poison", {"n": 1})
        await transport.publish(sent)
        await asyncio.wait_for(lettered.wait(), 30)
        await asyncio.sleep(0.2)  # a delivery after the dead letter would show here
    finally:
        await transport.close()
    assert set(calls) == {sent.id}
    return len(calls), sent, dead[0]


def check_logged(caplog: pytest.LogCaptureFixture, sent: Event) -> None:
    """The transport's ERROR for the event it dead-lettered carries its fields (for JSON
    logs: docs/bus.md, "Log records and their fields")."""
    [record] = [r for r in caplog.records if vars(r).get("kind") == "broker_dead_letter"]
    assert record.levelno == logging.ERROR
    fields = vars(record)
    assert (fields["event_id"], fields["event_type"]) == (sent.id, "jobs.poison")
    assert (fields["group"], fields["deliveries"]) == ("workers", 2)
    assert "127.0.0.1" in fields["transport"] and "guest:guest" not in fields["transport"]
    failed = [vars(r) for r in caplog.records if vars(r).get("kind") == "delivery_failed"]
    assert [(f["event_id"], f["group"]) for f in failed] == [(sent.id, "workers")] * 2


def check_dead_letter(result: tuple[int, Event, Event]) -> None:
    """Handled twice, then dead-lettered; the letter's ``dlattempts`` counts the two
    deliveries the handler had, on every transport (RabbitMQ said 3, counting the
    delivery that dead-letters it)."""
    calls, sent, letter = result
    assert calls == 2, "delivered twice, then dead-lettered instead of a third time"
    assert letter.type == "deadletter.jobs.poison"
    assert letter.metadata["dlid"] == sent.id
    assert letter.metadata["dlattempts"] == 2
    assert letter.metadata["dlgroup"] == "workers"


HOW = ["keyword", "url"]


@pytest.mark.redis
@pytest.mark.parametrize("how", HOW)
async def test_redis_dead_letters_after_max_deliveries(
    redis_url: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = unique_name("pepopts")
    url, keywords = given_as(redis_url, "max_deliveries", how)
    transport = RedisTransport(url, namespace=namespace, partitions=1, max_backoff=0.05, **keywords)
    try:
        result = await dead_letter_of_a_failing_event(transport)
        check_dead_letter(result)
        check_logged(caplog, result[1])
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.nats
@pytest.mark.parametrize("name", ["max_deliveries", "max_deliver"])
@pytest.mark.parametrize("how", HOW)
async def test_nats_dead_letters_after_max_deliveries(
    nats_url: str, name: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = unique_name("pep_opts")
    url, keywords = given_as(nats_url, name, how)
    transport = NatsTransport(url, stream=stream.upper(), prefix=stream, partitions=1, **keywords)
    try:
        result = await dead_letter_of_a_failing_event(transport)
        check_dead_letter(result)
        check_logged(caplog, result[1])
    finally:
        await NatsTransport(nats_url, stream=stream.upper()).delete_stream()


@pytest.mark.rabbitmq
@pytest.mark.parametrize("name", ["max_deliveries", "delivery_limit"])
@pytest.mark.parametrize("how", HOW)
async def test_rabbitmq_dead_letters_after_max_deliveries(
    amqp_url: str, name: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, keywords = given_as(amqp_url, name, how)
    transport = RabbitMQTransport(url, exchange=unique_name("pep.opts"), partitions=1, **keywords)
    try:
        result = await dead_letter_of_a_failing_event(transport)
        check_dead_letter(result)
        check_logged(caplog, result[1])
    finally:
        await transport.delete_topology()


def given_as(url: str, name: str, how: str) -> tuple[str, dict[str, int]]:
    """``name=2`` in ``url``'s query or as a keyword argument."""
    if how == "url":
        return with_query(url, f"{name}=2"), {}
    return url, {name: 2}
