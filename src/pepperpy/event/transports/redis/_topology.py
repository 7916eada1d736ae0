"""What a namespace holds in Redis: its layout (the partition count, recorded once and
checked by every process) and, for tests and throw-away environments, its deletion.

Every key the transport makes is under ``<namespace>:``: the partition streams
(``<namespace>:stream:<n>``, with their consumer groups), ``<namespace>:meta``, and per
group its member set, leases and handover marks (``<namespace>:group:...``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..._errors import ConfigurationError
from ..._redact import redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._config import RedisOptions

__all__ = ["check_layout", "delete_namespace"]

#: keys deleted per UNLINK
_BATCH = 500
#: what SCAN's MATCH reads as a pattern, escaped in a namespace to match it literally
_GLOB = re.compile(r"([\\*?\[\]^])")


async def check_layout(client: Redis, options: RedisOptions, url: str) -> None:
    """Record the partition count once per namespace; refuse a different one."""
    key = f"{options.namespace}:meta"
    await client.hsetnx(key, "partitions", options.partitions)
    stored = await client.hget(key, "partitions")
    if stored is not None and int(stored) != options.partitions:
        raise ConfigurationError(
            f"namespace {options.namespace!r} on {redact_url(url)} uses "
            f"{int(stored)} partitions, this transport was given {options.partitions}"
        )


async def delete_namespace(client: Redis, namespace: str) -> int:
    """Delete every key under ``<namespace>:`` (found with ``SCAN MATCH``, ``UNLINK``ed
    in batches); returns how many went. Run again after a failure, it deletes the rest."""
    pattern = _GLOB.sub(r"\\\1", namespace) + ":*"
    deleted = 0
    batch: list[bytes | str] = []
    async for key in client.scan_iter(match=pattern, count=_BATCH):
        batch.append(key)
        if len(batch) >= _BATCH:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted
