"""Publishing an event once: an ``XADD`` whose outcome is unknown is never sent blindly again.

An ``XADD`` has no idempotency key: sent twice, it appends two entries. A publish whose
connection broke (a reset, a reply that never came) after its ``XADD`` went out does not
know whether Redis appended it. Resending it then (redis-py's own retry did, on a new
connection, and so did the transport's retry loop) stored the event twice whenever the
first copy had got there: 10 of 471,964 acknowledged publishes in a 100-minute soak.

So the transport sends ``XADD`` itself, on a connection taken from the pool, without
redis-py's retry (:func:`send_xadds`), and records each copy that went out with no reply:
the monotonic time it left and the server-side id and address of the connection that
carried it, learnt when that connection was made (:func:`identify`). Before it sends the
event again, :func:`already_stored`:

1. kills those connections on the server (``CLIENT KILL ID <id> ADDR <addr>``): a copy
   still on its way (in a socket buffer, held by a stalled link or middlebox) can no
   longer be executed once Redis has dropped its connection; and asks ``TIME``, in the
   same round trip, after the kills;
2. reads the stream from ``TIME - (time since the first copy left) - margin`` (stream ids
   are the server's milliseconds) to its end, in pages, for an entry whose ``event``
   field is byte for byte the event's JSON.

Found: the publish succeeded. Not found: no copy is in Redis and none can land any more,
so sending it again stores it once. What is left (docs/transport-redis.md, "Was it
stored?"): a server that refuses ``CLIENT KILL`` (ACLs) or ``CLIENT INFO``/``CLIENT ID``
leaves the copy in flight unfenced; an entry trimmed before the check (``maxlen`` far
smaller than the publishes of the window, a ``trim`` with ``retention`` near 0) is not
found; a forward step of the server's clock larger than the margin between the append
and the check hides it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._wire import EVENT_FIELD, as_text, logger, parse_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Publication", "already_stored", "identify", "send_xadds"]

#: attribute of a redis-py connection holding its (id, address) on the server, or None
_SERVER_SIDE = "_pepperpy_server_side"
#: milliseconds the search for an earlier copy starts before the first copy can have
#: been appended: the two clocks' rates, rounding, small steps of the server's clock
MARGIN_MS = 2000
#: entries read per ``XRANGE`` while looking for an earlier copy
PAGE = 500

_EVENT = EVENT_FIELD.encode()
_unfenced_logged = False


async def identify(connection: Any) -> None:
    """The publishing client's ``redis_connect_func``: redis-py's handshake, then learn
    the connection's id and address on the server (``CLIENT INFO``, Redis 6.2; ``CLIENT
    ID`` alone before), which :func:`already_stored` needs to kill it. A server that
    refuses both leaves them unknown: its lost copies cannot be fenced."""
    from redis.exceptions import ResponseError

    await connection.on_connect()
    setattr(connection, _SERVER_SIDE, None)
    try:
        await connection.send_command("CLIENT", "INFO", check_health=False)
        info = dict(
            item.split("=", 1)
            for item in as_text(await connection.read_response()).split()
            if "=" in item
        )
        setattr(connection, _SERVER_SIDE, (int(info["id"]), info.get("addr") or None))
        return
    except (ResponseError, KeyError, ValueError):
        pass
    try:
        await connection.send_command("CLIENT", "ID", check_health=False)
        setattr(connection, _SERVER_SIDE, (int(await connection.read_response()), None))
    except (ResponseError, ValueError):
        pass


class Publication:
    """One event being published: its ``XADD`` and the copies of it whose fate is unknown."""

    __slots__ = (
        "appended",
        "event_id",
        "fields",
        "first_sent",
        "payload",
        "stream",
        "unanswered",
    )

    def __init__(self, stream: str, fields: dict[Any, Any], event_id: str, payload: bytes):
        self.stream = stream
        self.fields = fields
        self.event_id = event_id
        self.payload = payload  # the event's JSON, as the entry's ``event`` field holds it
        #: connections (server-side id and address; None when unknown) that carried a copy
        #: no reply came for, since the last look found none stored
        self.unanswered: list[tuple[int, str | None] | None] = []
        self.first_sent: float | None = None  # monotonic time the first of those left
        #: Redis replied with the new entry's id (the round trip may have failed after,
        #: for the publications pipelined behind it)
        self.appended = False

    @property
    def unknown(self) -> bool:
        """Whether a copy may be in Redis (one went out, no reply, no look since)."""
        return bool(self.unanswered)

    def command(self, maxlen: int | None) -> list[Any]:
        xadd: list[Any] = ["XADD", self.stream]
        if maxlen is not None:
            xadd += ["MAXLEN", "~", maxlen]
        xadd.append("*")
        for pair in self.fields.items():
            xadd.extend(pair)
        return xadd

    def sending(self, connection: Any, now: float) -> None:
        """A copy is about to leave on ``connection``."""
        self.unanswered.append(getattr(connection, _SERVER_SIDE, None))
        if self.first_sent is None:
            self.first_sent = now

    def answered(self, *, appended: bool) -> None:
        """Redis replied to the last copy sent: the entry's id, or an error."""
        self.appended = appended
        self.unanswered.pop()
        if not self.unanswered:
            self.first_sent = None


async def _take(pool: Any) -> Any:
    try:
        taking = pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants the command's name
        taking = pool.get_connection("XADD")
    return await taking


async def send_xadds(
    client: Redis, batch: Sequence[Publication], maxlen: int | None
) -> list[Exception | None]:
    """``XADD`` each publication in one write on one pooled connection, and read the
    replies: None for an entry appended, the ``ResponseError`` Redis answered otherwise.

    No retry by redis-py: a connection error raises (those answered before it know it:
    :attr:`Publication.appended`), and each publication records the copy it may have left
    in Redis (unless the error came before anything was sent: no
    connection to be had, a refused connect). A connection that failed is disconnected
    before it goes back to the pool: a reply may still be on its way.
    """
    from redis.exceptions import ResponseError

    pool = client.connection_pool
    connection = await _take(pool)
    broken = True
    try:
        if not connection.is_connected:  # sending would connect it, unidentified
            await connection.connect()
        packed = connection.pack_commands([p.command(maxlen) for p in batch])
        now = time.monotonic()
        for publication in batch:
            publication.sending(connection, now)
        await connection.send_packed_command(packed, check_health=False)
        results: list[Exception | None] = []
        for publication in batch:
            try:
                await connection.read_response()
            except ResponseError as exc:
                results.append(exc)
                publication.answered(appended=False)
            else:
                results.append(None)
                publication.answered(appended=True)
        broken = False
        return results
    finally:
        try:
            if broken:
                await connection.disconnect(nowait=True)
        finally:
            await pool.release(connection)


async def already_stored(client: Redis, publication: Publication) -> bool:
    """Whether a copy of ``publication`` sent earlier, with no reply, is in its stream.

    Kills the connections that carried those copies first (see the module's doc), so that
    once this returns False none of them can be appended any more; the publication then
    counts as not sent. Raises what the client raises while Redis is unreachable.
    """
    global _unfenced_logged
    if publication.first_sent is None:
        return False
    pipe = client.pipeline(transaction=False)
    fenced = [side for side in publication.unanswered if side is not None]
    for client_id, address in fenced:
        pipe.execute_command(
            "CLIENT", "KILL", "ID", client_id, *(("ADDR", address) if address else ())
        )
    pipe.execute_command("TIME")
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    elapsed_ms = int((time.monotonic() - publication.first_sent) * 1000)
    refused = [reply for reply in replies[:-1] if isinstance(reply, Exception)]
    unfenced = bool(refused) or len(fenced) < len(publication.unanswered)
    if unfenced and not _unfenced_logged:
        _unfenced_logged = True
        reason = str(refused[0]) if refused else "its id on the server is unknown"
        logger.warning(
            "could not close a Redis connection that carried an XADD with no reply (%s): "
            "a copy still on its way may be appended after the transport looked for it, "
            "so a publish sent again may be stored twice (logged once)",
            reason,
        )
    now = replies[-1]
    if isinstance(now, Exception):
        raise now
    seconds, micros = (int(part) for part in now)
    start = max(0, seconds * 1000 + micros // 1000 - elapsed_ms - MARGIN_MS)
    found = await _find(client, publication, (start, 0))
    if not found:
        publication.unanswered.clear()
        publication.first_sent = None
    else:
        logger.debug(
            "event %s had reached Redis before its connection was lost; not appending it again",
            publication.event_id,
        )
    return found


async def _find(client: Redis, publication: Publication, start: tuple[int, int]) -> bool:
    """Read ``publication``'s stream from ``start`` to its end for the event's entry."""
    text = publication.payload.decode()
    while True:
        reply = await client.xrange(
            publication.stream, min=f"{start[0]}-{start[1]}", max="+", count=PAGE
        )
        entries: list[Any] = list(reply or [])
        for _, fields in entries:
            raw = fields.get(_EVENT, fields.get(EVENT_FIELD))
            if raw == publication.payload or raw == text:
                return True
        if len(entries) < PAGE:
            return False
        ms, seq = parse_id(entries[-1][0])
        start = (ms, seq + 1)
