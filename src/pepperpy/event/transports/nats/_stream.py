"""The JetStream stream a bus lives on: created on the first start, and checked on
every start and reconnect against what this program expects of it (the subjects under
its prefix, the number of key lanes)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..._deps import require
from ..._errors import ConfigurationError, TransportError
from ._client import close_client, drop_failed_tls, new_client
from ._outage import describe, refused_tls
from ._subjects import check_prefix
from ._tls import TlsSettings

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.api import StreamConfig

    from ._options import NatsOptions

__all__ = ["delete_stream", "ensure_stream"]

#: JetStream's error code for a stream whose subjects overlap another stream's
_SUBJECTS_OVERLAP = 10065
#: how the stream's description records the number of key lanes
_PARTITIONS = re.compile(r"partitions=(\d+)")


async def ensure_stream(
    js: JetStreamContext, options: NatsOptions, server: str
) -> tuple[str | None, datetime | None]:
    """Create the bus's stream, or check that the one there fits this program.

    A stream another process creates at the same moment is fine; one that does not
    cover ``<prefix>.>``, or was created with another number of key lanes, raises
    :class:`ConfigurationError`. Any other error of nats-py's (JetStream not enabled
    on the server, say) raises :class:`TransportError` naming ``server``.

    Returns what differs between the stream there and this program's ``retention`` and
    ``max_age`` (None if nothing): JetStream keeps the stream's own, so the options do
    not apply (the caller warns about it); and when the server created the stream (None
    from a server that does not say), which tells it from one made again under the
    same name (see ``_watch``).
    """
    from nats.errors import Error as NatsError
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    wanted = f"{options.prefix}.>"
    try:
        try:
            info = await js.stream_info(options.stream)
        except NotFoundError:
            config = StreamConfig(
                name=options.stream,
                subjects=[wanted],
                retention=RetentionPolicy(options.retention),
                storage=StorageType.FILE,
                max_age=options.max_age,
                num_replicas=options.replicas,
                description=f"pepperpy-event bus (partitions={options.partitions})",
            )
            try:
                made = await js.add_stream(config)
                return None, made.created
            except NatsError as exc:
                try:  # another process may have created it at the same moment
                    info = await js.stream_info(options.stream)
                except NotFoundError:
                    refused = await _refusal(js, options, server, exc)
                    raise ConfigurationError(refused) from exc
    except NatsError as exc:
        raise TransportError(f"JetStream is not available at {server}: {_why(exc)}") from exc
    subjects = info.config.subjects or []
    if wanted not in subjects and ">" not in subjects:
        raise ConfigurationError(
            f"JetStream stream {options.stream!r} exists but covers {subjects}, "
            f"not {wanted!r}; pick another stream name or prefix"
        )
    recorded = _PARTITIONS.search(info.config.description or "")
    if recorded is not None and int(recorded.group(1)) != options.partitions:
        raise ConfigurationError(
            f"JetStream stream {options.stream!r} was created with "
            f"partitions={recorded.group(1)}; this program uses "
            f"partitions={options.partitions}, which would break per-key order"
        )
    return _differences(info.config, options), info.created


def _differences(config: StreamConfig, options: NatsOptions) -> str | None:
    """How the existing stream's retention and max_age differ from ``options``."""
    kept = getattr(config.retention, "value", config.retention) or "limits"
    age = config.max_age or None  # JetStream's 0: no limit
    differ = []
    if kept != options.retention:
        differ.append(f"retention={kept!r} (this program: {options.retention!r})")
    if (age is None) != (options.max_age is None) or (
        age is not None and options.max_age is not None and abs(age - options.max_age) > 0.001
    ):
        differ.append(f"max_age={age!r} (this program: {options.max_age!r})")
    return ", ".join(differ) or None


async def _refusal(js: JetStreamContext, options: NatsOptions, server: str, exc: Exception) -> str:
    """Why the stream could not be created, naming the stream that already covers its
    subjects if there is one (JetStream refuses streams whose subjects overlap)."""
    wanted = f"{options.prefix}.>"
    refused = f"cannot create JetStream stream {options.stream!r} for subjects {wanted!r}"
    try:
        other = await js.find_stream_name_by_subject(wanted)
        covers = (await js.stream_info(other)).config.subjects or []
    except Exception:  # none overlaps (another refusal), or no answer: say what is known
        if getattr(exc, "err_code", None) not in (None, _SUBJECTS_OVERLAP):
            return f"{refused}: {exc}"  # JetStream said why: replicas, max_age, ...
        return f"{refused}: {exc} (does another stream cover them already?)"
    said = getattr(exc, "description", None) or exc  # JetStream's words, without the codes
    example = f"{server.split(',')[0]}?stream={options.stream}&prefix={_own_prefix(options)}"
    return (
        f"{refused}: stream {other!r} (subjects {covers}) already covers them (JetStream: "
        f"{said}). To share that bus's events, use stream={other!r}; for a bus of its own, "
        f"give each stream its own prefix= as well as its own stream=, e.g. {example}"
    )


def _own_prefix(options: NatsOptions) -> str:
    """A prefix to suggest for a stream of its own: its name in lower case if valid."""
    suggested = options.stream.lower().replace("-", "_")
    if suggested == options.prefix:
        return "myapp"
    try:
        return check_prefix(suggested)
    except ConfigurationError:
        return "myapp"


async def delete_stream(
    servers: list[str],
    server: str,
    stream: str,
    token: str | None = None,
    wait: float = 5.0,
    tls: TlsSettings | None = None,
) -> bool:
    """Delete ``stream`` with every event and consumer on it, on a connection of its
    own to ``servers`` (``server``: how errors name them; ``token``: the URL's
    ``?token=``; ``tls``: the transport's TLS settings); False if it did not exist.

    The whole of it (connecting, the deletion) takes at most ``wait`` seconds (the
    transport's ``connect_timeout``), then raises :class:`TransportError` saying why;
    the failed attempts are not logged one by one (nats-py logs each with a traceback).
    """
    require("nats", extra="nats", feature="the nats:// transport")
    from nats.errors import Error as NatsError
    from nats.js.errors import NotFoundError

    failures: list[Exception] = []

    async def error(exc: Exception) -> None:  # said in the TransportError below
        failures[:] = [exc]

    tls = tls or TlsSettings()
    nc: Any = new_client(require_tls=tls.required)  # Any: nats-py annotates seconds as int
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(wait):
            await nc.connect(
                servers,
                name="pepperpy-event",
                token=token,
                allow_reconnect=False,
                max_reconnect_attempts=1,  # nats-py's own default tries for 2 minutes
                reconnect_time_wait=0.25,
                connect_timeout=min(2.0, wait),
                error_cb=error,
                **tls.connect_options(),
            )
    except (NatsError, OSError, TimeoutError) as exc:
        last = failures[-1] if failures else exc
        refused = refused_tls(last)
        if refused is not None:
            drop_failed_tls(nc)  # else closing waits for it until the deadline
        await close_client(nc, loop.time() + wait)
        why = refused or describe(last)
        raise TransportError(
            f"cannot connect to NATS at {server} (to delete stream {stream!r}) within "
            f"{wait}s: {why}"
        ) from exc
    try:
        async with asyncio.timeout(wait):
            await nc.jetstream().delete_stream(stream)
        return True
    except NotFoundError:
        return False
    except (NatsError, TimeoutError) as exc:
        raise TransportError(f"cannot delete stream {stream!r} at {server}: {_why(exc)}") from exc
    finally:
        await close_client(nc, loop.time() + wait)


def _why(exc: Exception) -> str:
    """What a JetStream request's failure says, in words: the "no responders" a server
    without JetStream answers is, from nats-py, ``nats: ServiceUnavailableError:
    code=None err_code=None description='None'``, which names nothing to change."""
    from nats.errors import NoRespondersError
    from nats.js.errors import ServiceUnavailableError

    if isinstance(exc, ServiceUnavailableError | NoRespondersError):
        return (
            "the server has no JetStream (nothing answers its API): run nats-server with "
            "JetStream enabled (-js, or a jetstream block in its configuration), or wait "
            "for it to be ready"
        )
    return describe(exc)
