"""``pepperpy-event bus``: publish to a broker's topic, and watch what flows, from the shell.

``bus publish TOPIC JSON`` publishes one event and prints its id; ``bus tail PATTERN``
prints the events published to matching topics from the moment it listens (ungrouped by
default: it takes no work from the consumers; ``--group`` consumes as a member);
``bus delete-group PATTERN GROUP`` retires a group (``EventBus.delete_group``). Each
takes ``--transport URL`` or ``PEPPERPY_EVENT_TRANSPORT``: a broker's URL, since
``memory://`` lives and dies with the command's own process.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

from .. import _json
from .._deadletter import (
    DEAD_LETTER_PREFIX,
    DL_ATTEMPTS,
    DL_GROUP,
    DL_ORIGINAL_ID,
    DL_REASON,
    partition_key,
)
from .._errors import PatternError
from .._event import Event
from .._frozen import thaw
from ._bus_logs import recoveries_shown
from ._errors import CommandError, NotPrinted, OutputClosed
from ._output import field
from ._shell import LARGEST, checked_name, confirm, emit, json_argument, note, run, why_not_printed
from ._urls import normalized, shown

if TYPE_CHECKING:
    from ..transports import Transport

__all__ = ["bus", "event_line"]

#: the broker schemes a command can use (memory:// is refused: see :func:`_transport`)
_BROKERS = {
    "redis": "redis",
    "rediss": "redis",
    "nats": "nats",
    "tls": "nats",
    "amqp": "amqp",
    "amqps": "amqp",
}
_EXAMPLES = "redis://host:6379, nats://host:4222 or amqp://user:password@host/"
#: ``DATA`` longer than this is cut (``...``) in the one-line form; ``--json`` keeps it all
DATA_WIDTH = 200


@click.group()
def bus() -> None:
    """Publish to a broker's topics and watch them (--transport URL on every command)."""


def _transport_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--transport",
        envvar="PEPPERPY_EVENT_TRANSPORT",
        metavar="URL",
        help=f"The broker: {_EXAMPLES} (env PEPPERPY_EVENT_TRANSPORT).",
    )(function)


def _transport(url: str | None) -> tuple[Transport, str]:
    """The transport ``url`` names, made (not connected), and the URL fit to print."""
    if url is None or not url.strip():
        raise CommandError(
            f"no transport: pass --transport URL ({_EXAMPLES}) or set PEPPERPY_EVENT_TRANSPORT"
        )
    url = normalized(url)  # an error quoting it shows no password from here on
    printable = shown(url)
    scheme = url.partition("://")[0].lower() if "://" in url else url.strip().rstrip(":/").lower()
    if scheme == "memory":
        raise CommandError(
            f"--transport {printable}: the memory transport lives inside one process, so "
            "nothing another program publishes or consumes could meet this command there; "
            f"give the broker your services share ({_EXAMPLES})"
        )
    if scheme not in _BROKERS:
        raise CommandError(f"--transport {printable!r} is not a broker URL: use {_EXAMPLES}")
    from ..transports import transport_from_url  # the bus is loaded by bus commands only

    return transport_from_url(url), printable


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals or not name.strip():
            raise CommandError(f"--header {value!r} is not NAME=VALUE (such as source=shell)")
        if name in headers:
            raise CommandError(f"--header {name!r} is given twice")
        headers[name] = text
    return headers


@bus.command()
@click.argument("topic")
@click.argument("data", metavar="JSON")
@_transport_option
@click.option("--key", help="Partition key: events with one key reach a group in order.")
@click.option(
    "--header",
    "header_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="Add NAME to the event's metadata, its value a string (repeatable).",
)
def publish(
    topic: str, data: str, transport: str | None, key: str | None, header_values: tuple[str, ...]
) -> None:
    """Publish one event with JSON data to TOPIC, and print its id.

    JSON may be @FILE to read it from a file, or @- to read it from stdin.
    """
    checked_name(topic, "TOPIC", "topic")
    headers = _headers(header_values)
    payload = json_argument(data)
    made, _ = _transport(transport)

    from .._bus import EventBus

    async def work() -> Event:
        async with EventBus(transport=made) as opened:
            return await opened.publish(topic, payload, key=key, headers=headers or None)

    event = run(work)
    confirm(f"published {field(event.id)} to {field(topic)}")


def _cut(text: str) -> str:
    return text if len(text) <= DATA_WIDTH else text[: DATA_WIDTH - 3] + "..."


def event_line(event: Event) -> str:
    """``TIME TOPIC KEY ID DATA``: DATA compact JSON, cut at :data:`DATA_WIDTH` (``...``).

    A dead letter (topic ``deadletter.*``) gets why and whence after DATA:
    ``dlreason=R dlid=ID dlgroup=G dlattempts=N`` (``-`` for one it does not carry),
    each value one :func:`~._output.field` (a reason with spaces is a quoted JSON
    string), the reason cut at :data:`DATA_WIDTH` too.
    """
    when = event.timestamp.astimezone(UTC).isoformat(timespec="milliseconds")
    data = _cut(_json.dumps(thaw(event.data)).decode())
    key = partition_key(event)
    line = (
        f"{when.replace('+00:00', 'Z')} {field(event.type)} {field(key)} {field(event.id)} {data}"
    )
    if event.type.startswith(DEAD_LETTER_PREFIX):
        line += "".join(
            f" {name}={_metadata_field(event, name)}"
            for name in (DL_REASON, DL_ORIGINAL_ID, DL_GROUP, DL_ATTEMPTS)
        )
    return line


def _metadata_field(event: Event, name: str) -> str:
    value = event.metadata.get(name)
    if value is None:
        return "-"
    text = value if isinstance(value, str) else _json.dumps(thaw(value)).decode()
    return field(_cut(text))


@bus.command()
@click.argument("pattern")
@_transport_option
@click.option(
    "--group",
    help="Consume as a member of this group: take a share of its events and acknowledge "
    "them once printed (they are gone for the group's other members). Without it the "
    "tail sees every new event and takes nothing from anyone.",
)
@click.option("--count", type=click.IntRange(1, LARGEST), help="Stop after N events.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print each event as a CloudEvents JSON document."
)
def tail(
    pattern: str, transport: str | None, group: str | None, count: int | None, as_json: bool
) -> None:
    """Print the events published to topics matching PATTERN, as they arrive.

    One line each, TIME TOPIC KEY ID DATA (DATA cut at 200 characters), or with --json
    one CloudEvents document per line. Only events published after the tail started
    listening are shown (it says so on stderr): 'bus tail deadletter.#' shows new dead
    letters. Ctrl-C or SIGTERM stops it (exit status 0), as does --count N.
    """
    from .._bus import EventBus
    from .._bus_subscriptions import check_group
    from .._retry import RetryPolicy

    checked_name(pattern, "PATTERN", "pattern")
    if group is not None:
        try:
            check_group(group)
        except ValueError as exc:
            raise CommandError(f"--group: {exc}") from None
    made, printable = _transport(transport)
    # a group's event that could not be printed is dead-lettered at once, not retried
    opened = EventBus(transport=made, retry_policy=RetryPolicy.NONE)
    stop = asyncio.Event()
    listening = False
    seen = 0
    failure: list[BaseException] = []

    def on_signal(signum: int) -> bool:
        """A first Ctrl-C or SIGTERM while listening stops gracefully; a second at once."""
        if not listening or stop.is_set():
            return False
        stop.set()
        return True

    async def show(event: Event) -> None:
        nonlocal seen
        try:
            emit(event.to_json().decode() if as_json else event_line(event))
        except (OutputClosed, OSError) as exc:
            failure.append(exc)
            stop.set()
            await opened.unsubscribe(pattern, show, group=group)  # marks it removed at once
            if group is not None:  # not acknowledged: the bus dead-letters it
                raise RuntimeError(f"stdout could not print the event ({_reason(exc)})") from None
            return
        seen += 1
        if count is not None and seen >= count:
            stop.set()
            await opened.unsubscribe(pattern, show, group=group)  # no event past the count

    async def work() -> None:
        nonlocal listening
        opened.subscribe(pattern, show, group=group)
        async with opened:
            how = (
                f"as a member of group {group!r}, taking its share of the events"
                if group is not None
                else "ungrouped: every new event, taking none from the consumers"
            )
            note(f"listening to {field(pattern)} on {printable}, {how} (Ctrl-C to stop)")
            listening = True
            await stop.wait()

    try:
        with recoveries_shown():  # an outage's end, when its warning was shown
            run(work, on_signal=on_signal)
    except KeyboardInterrupt:  # stopped before it listened, or a second Ctrl-C
        pass
    if failure:
        if isinstance(failure[0], OutputClosed):
            raise OutputClosed
        why = _reason(failure[0])
        raise NotPrinted(f"could not print an event to stdout ({why}); the tail stopped")


@bus.command("delete-group")
@click.argument("pattern")
@click.argument("group")
@_transport_option
@click.option(
    "--yes", is_flag=True, help="Delete without asking (needed when stdin is no terminal)."
)
def delete_group(pattern: str, group: str, transport: str | None, yes: bool) -> None:
    """Retire GROUP on PATTERN: delete it from the broker, with the events it has not handled.

    PATTERN and GROUP name the group as the services' subscribe(PATTERN, group=GROUP)
    does. Stop its members first. A group that does not exist is no error, so the
    command can stay in a deployment script (with --yes). Asks first unless --yes.
    """
    from .._bus import EventBus
    from .._bus_subscriptions import check_group

    checked_name(pattern, "PATTERN", "pattern")
    try:
        check_group(group)
    except ValueError as exc:
        raise CommandError(f"GROUP: {exc}") from None
    made, printable = _transport(transport)
    try:  # one the broker cannot express (NATS '>'): before asking, and before connecting
        made.check_pattern(pattern)  # (which makes a NATS stream, an AMQP exchange)
    except PatternError as exc:
        raise CommandError(f"PATTERN: {exc}") from None
    what = f"group {field(group)} on {field(pattern)} at {printable}"
    if not yes:
        if sys.stdin is None or not sys.stdin.isatty():  # None: started with stdin closed
            raise CommandError(
                f"not deleting {what}: it drops the events the group has not handled, and "
                "stdin is not a terminal to ask on; pass --yes to delete it"
            )
        question = f"Delete {what}, with the events it has not handled?"
        if not click.confirm(question, default=False, err=True):
            raise CommandError(f"not deleted: {what} is left as it was")

    async def work() -> None:
        async with EventBus(transport=made) as opened:
            await opened.delete_group(pattern, group)

    run(work)
    confirm(f"deleted {what} (nothing to delete if it did not exist)")


def _reason(exc: BaseException) -> str:
    return "its reader closed it" if isinstance(exc, OutputClosed) else why_not_printed(exc)
