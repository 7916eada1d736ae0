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
event again, :meth:`Lookout.already_stored`:

1. kills those connections on the server (``CLIENT KILL ID <id> ADDR <addr>``): a copy
   still on its way (in a socket buffer, held by a stalled link or middlebox) can no
   longer be executed once Redis has dropped its connection; and asks ``TIME``, in the
   same round trip, after the kills;
2. reads the stream from ``TIME - (time since the first copy left) - margin`` (stream ids
   are the server's milliseconds) to its last entry at that moment (read in the same
   round trip), in pages, for an entry whose ``event`` field is byte for byte the
   event's JSON. The publishes of a burst look together (:class:`Lookout`).

Found: the publish succeeded. Not found: no copy is in Redis and none can land any more,
so sending it again stores it once. What is left (docs/transport-redis.md, "Each
publish stores its event once"): a server that refuses ``CLIENT KILL`` (ACLs) or
``CLIENT INFO``/``CLIENT ID`` leaves the copy in flight unfenced; an entry trimmed before
the look (``maxlen`` far smaller than the publishes of the window, a ``trim`` with
``retention`` near 0) is not found; a forward step of the server's clock larger than the
margin between the append and the look hides it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._outcome import OVER_SIZE, cut_by_refusal
from ._wire import EVENT_FIELD, as_text, logger, parse_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Lookout", "Publication", "identify", "send_xadds"]

#: attribute of a redis-py connection holding its (id, address) on the server, or None
_SERVER_SIDE = "_pepperpy_server_side"
#: milliseconds the search for an earlier copy starts before the first copy can have
#: been appended: the two clocks' rates and rounding, small steps of the server's clock
MARGIN_MS = 500
#: entries read per ``XRANGE`` while looking for an earlier copy
PAGE = 500
#: seconds a look waits for the other publishes of its burst to join it: the publishes
#: of a pipeline that broke fail together and retry after a jittered 25 to 50 ms
GATHER = 0.03

_EVENT = EVENT_FIELD.encode()


async def identify(connection: Any) -> None:
    """The publishing client's ``redis_connect_func``: redis-py's handshake, then learn
    the connection's id and address on the server (``CLIENT INFO``, Redis 6.2; ``CLIENT
    ID`` alone before), which :class:`Lookout` needs to kill it. A server that
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

    Redis closes the connection once it has refused an ``XADD`` over its
    ``proto-max-bulk-len``: the publications after that one get the connection error
    (marked by :func:`~._outcome.cut_by_refusal`, so their retry is no outage), not
    raised, and the refused one its ``ResponseError``.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
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
        over_size = False  # Redis refused one as too large: it closes the connection
        for publication in batch:
            try:
                await connection.read_response()
            except ResponseError as exc:
                results.append(exc)
                publication.answered(appended=False)
                over_size = over_size or OVER_SIZE in str(exc)
            except (RedisConnectionError, OSError) as exc:
                if not over_size:
                    raise
                # the close that follows the refusal: the rest get the error marked as
                # such (retried, not an outage); the connection is disconnected below
                cut_by_refusal(exc)
                results.extend(exc for _ in batch[len(results) :])
                return results
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


class Lookout:
    """Looks for earlier copies (:meth:`already_stored`), once for every publication of a
    burst: the publishes of a pipeline that broke all look within a few milliseconds, for
    copies that went out on the same connection, in the same window of the same streams.
    One look, made ``GATHER`` seconds after the first of them asked, kills that connection
    once and reads each stream's window once for all of them, where a look each would
    read it as many times as they are.
    """

    __slots__ = ("_batch", "_warned")

    def __init__(self) -> None:
        self._batch: _Batch | None = None
        self._warned = False  # that a copy could not be fenced: once per transport

    async def already_stored(self, client: Redis, publication: Publication) -> bool:
        """Whether a copy of ``publication`` sent earlier, with no reply, is in its stream.

        Kills the connections that carried those copies first (see the module's doc), so
        that once this returns False none of them can be appended any more; the
        publication then counts as not sent. Raises what the client raises while Redis is
        unreachable (a publication that joined another's look: a ``ConnectionError`` if
        that publish was cancelled before its look was done).
        """
        from redis.exceptions import ConnectionError as Unreachable

        if publication.first_sent is None:
            return False
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is not None and batch.loop is loop:  # a look about to start: join it
            batch.members.append(publication)
            return publication in await asyncio.shield(batch.found)
        batch = self._batch = _Batch(loop, publication)
        try:
            await asyncio.sleep(GATHER)  # the other publishes of the burst join
            if self._batch is batch:
                self._batch = None
            found = await self._look(client, batch.members)
        except BaseException as exc:
            if self._batch is batch:
                self._batch = None
            if not batch.found.done():
                shared = exc if isinstance(exc, Exception) else Unreachable("look cut off")
                batch.found.set_exception(shared)
                batch.found.exception()  # retrieved: the members that joined get it
            raise
        batch.found.set_result(found)
        return publication in found

    async def _look(self, client: Redis, members: list[Publication]) -> set[Publication]:
        """Kill the connections that carried ``members``' unanswered copies, then read each
        stream from the earliest moment one of them can have been appended to the stream's
        last entry at that point; returns the members found (the others are settled as not
        stored)."""
        sides = {side for member in members for side in member.unanswered if side is not None}
        unknown_side = any(side is None for member in members for side in member.unanswered)
        streams = sorted({member.stream for member in members})
        pipe = client.pipeline(transaction=False)
        for client_id, address in sorted(sides):
            pipe.execute_command(
                "CLIENT", "KILL", "ID", client_id, *(("ADDR", address) if address else ())
            )
        pipe.execute_command("TIME")
        for stream in streams:  # after the kills: no copy can land past these entries
            pipe.xrevrange(stream, count=1)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        looked = time.monotonic()
        kills, now, lasts = replies[: len(sides)], replies[len(sides)], replies[len(sides) + 1 :]
        refused = [reply for reply in kills if isinstance(reply, Exception)]
        if (refused or unknown_side) and not self._warned:
            self._warned = True
            reason = str(refused[0]) if refused else "its id on the server is unknown"
            logger.warning(
                "could not close a Redis connection that carried an XADD with no reply (%s): "
                "a copy still on its way may be appended after the transport looked for it, "
                "so a publish sent again may be stored twice (logged once per transport)",
                reason,
            )
        for reply in (now, *lasts):
            if isinstance(reply, Exception):
                raise reply
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        found: set[Publication] = set()
        for stream, last in zip(streams, lasts, strict=True):
            if not last:
                continue  # no entry at all
            wanted = [member for member in members if member.stream == stream]
            start = min(
                now_ms - int((looked - (member.first_sent or looked)) * 1000) - MARGIN_MS
                for member in wanted
            )
            found |= await _scan(client, stream, wanted, (max(0, start), 0), parse_id(last[0][0]))
        for member in members:
            if member in found:
                logger.debug(
                    "event %s had reached Redis before its connection was lost; not "
                    "appending it again",
                    member.event_id,
                )
            else:
                member.unanswered.clear()
                member.first_sent = None
        return found


class _Batch:
    __slots__ = ("found", "loop", "members")

    def __init__(self, loop: asyncio.AbstractEventLoop, first: Publication) -> None:
        self.loop = loop
        self.members = [first]
        self.found: asyncio.Future[set[Publication]] = loop.create_future()


async def _scan(
    client: Redis,
    stream: str,
    wanted: list[Publication],
    start: tuple[int, int],
    end: tuple[int, int],
) -> set[Publication]:
    """Read ``stream`` from ``start`` to ``end`` (entry ids, both included) for the
    entries of ``wanted``, a page at a time, until all are found or ``end`` is passed."""
    payloads: dict[bytes | str, Publication] = {}
    for publication in wanted:
        payloads[publication.payload] = payloads[publication.payload.decode()] = publication
    found: set[Publication] = set()
    while start <= end:
        reply = await client.xrange(
            stream, min=f"{start[0]}-{start[1]}", max=f"{end[0]}-{end[1]}", count=PAGE
        )
        entries: list[Any] = list(reply or [])
        for _, fields in entries:
            match = payloads.get(fields.get(_EVENT, fields.get(EVENT_FIELD)))
            if match is not None:
                found.add(match)
                if len(found) == len(wanted):
                    return found
        if len(entries) < PAGE:
            break
        ms, seq = parse_id(entries[-1][0])
        start = (ms, seq + 1)
    return found
