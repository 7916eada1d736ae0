"""Trimming the partition streams: deleting the entries every consumer group acknowledged.

A stream is trimmed (``XTRIM MINID``) up to the oldest entry some group still needs:
the oldest one pending with it, or else the first one after those it read; entries
younger than the retention (by Redis's clock, which made their ids) are kept whatever
the groups say, for the ungrouped readers (see :meth:`RedisTransport.trim`).
:func:`trim_periodically` is the transport's background task that does this every
``trim_interval`` seconds and reports its failures. Entries trimmed before a group or
a reader got to them are ``_trimmed``'s.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..._errors import ClosedError
from ..base import cancelled_by_caller, resume_cancellation
from ._wire import logger, parse_id, pool_exhausted

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._transport import RedisTransport

__all__ = ["trim_acknowledged", "trim_periodically"]


async def trim_acknowledged(client: Redis, streams: Sequence[str], keep: float) -> int:
    """Trim ``streams`` below what every group acknowledged, keeping the entries younger
    than ``keep`` seconds; returns how many entries went. A key that holds no stream is
    skipped."""
    removed = 0
    # entry ids are Redis's clock, in ms: this host's may be off by more than ``keep``
    # (which then trimmed entries younger than it, or kept them past it)
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    # a retention reaching back before 1970 keeps everything (a negative MINID is no
    # id); compared before it is made ms, which for 1e306 s and more is no int (inf)
    horizon = 0 if keep * 1000 >= now_ms else now_ms - math.ceil(keep * 1000)
    for stream in streams:
        if _text(await client.type(stream)) != "stream":
            continue  # none, or replaced by another client: nothing of ours to trim
        floor = (horizon, 0)
        for group in await client.xinfo_groups(stream):
            oldest = None
            if group["pending"]:
                summary = await client.xpending(stream, group["name"])
                # acks may have emptied the pending list since XINFO: min is None then
                oldest = summary["min"]
            if oldest is not None:
                floor = min(floor, parse_id(oldest))
            else:
                ms, seq = parse_id(group["last-delivered-id"])
                floor = min(floor, (ms, seq + 1))
        removed += await client.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=False)
    return removed


async def trim_periodically(transport: RedisTransport, interval: float) -> None:
    """Run ``transport``'s :meth:`~RedisTransport.trim` every ``interval`` seconds
    (jittered, so processes spread out) until it is closed."""
    while not transport._closed:
        resume_cancellation()  # one the last trim's driver calls swallowed
        await asyncio.sleep(interval * random.uniform(0.75, 1.25))
        if transport._closed:
            return
        try:
            removed = await transport._trim_once()
        except transport._unreachable as exc:
            client = transport._client
            if client is not None and transport._outages.pool_blamed(exc, transport._pool_full):
                reason = pool_exhausted(client)
                logger.warning("trimming the streams failed (%s); will try again", reason)
            else:
                transport._outages.lost(None, "the trimmer", exc)
        except transport._exceptions.RedisError as exc:
            logger.warning("trimming the streams failed (%s); will try again", exc)
        except ClosedError:
            return
        except asyncio.CancelledError:
            if cancelled_by_caller() or transport._closed:
                raise
            # not ours: a driver failed a future of its with it (a lost connection)
            logger.warning("trimming the streams was cut off; will try again")
        except Exception:  # a bug must not end trimming for the transport's life
            logger.exception("trimming the streams failed; will try again")
        else:
            transport._outages.reached("trim")
            if removed:
                logger.debug("trimmed %d acknowledged entries", removed)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
