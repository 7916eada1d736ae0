"""Redis Streams transport: ``redis://`` and ``rediss://`` URLs for :class:`EventBus`.

Events go to a fixed set of partition streams; groups are Redis consumer groups whose
members lease partitions (one member per partition at a time, which keeps per-key
order); ungrouped subscribers read the streams live with ``XREAD``. The design and its
trade-offs are written down in ``docs/transport-redis.md``.
"""

from __future__ import annotations

from ._config import RedisOptions
from ._transport import RedisTransport

__all__ = ["RedisOptions", "RedisTransport"]
