"""Which member of a group owns which partition: a fixed shuffle of the partitions, dealt
round-robin.

Member ``i`` of ``n`` (the live members sorted by id) owns the partitions whose *rank*
``r`` has ``r % n == i``. The ranks are a permutation of ``0 .. partitions - 1``, so every
member owns ``partitions // n`` or one more, and the same in every process: a partition's
place when the partitions are sorted by SHA-256 of :data:`RANK_TAG` followed by their
number in decimal.

Why not ``p % n``, as earlier versions did: a key's partition is ``crc32(key) %
partitions`` (a wire contract), and CRC-32 is linear over GF(2). Keys that differ only in
the low bits of their last character (``customer-0`` .. ``customer-3``) land on
partitions that share their low bits (11, 13, 7, 1: all odd), so ``p % 2`` gave all of
them to one member, whatever the prefix. A permutation drawn from a hash has no such
structure: sequential keys spread over members as random ones do. The tag was chosen,
of 40 tried, for the most even split of sequential keys over 2 to 5 members with 8 to
64 partitions; ``tests/bus/test_redis_partition_assignment.py`` checks it.
"""

from __future__ import annotations

import hashlib
from functools import cache

__all__ = ["RANK_TAG", "partition_ranks"]

#: what the hash that ranks the partitions is salted with (see the module's docstring)
RANK_TAG = "pepperpy-partition-29:"


@cache
def partition_ranks(partitions: int) -> tuple[int, ...]:
    """The rank of each partition (``ranks[p]``): a fixed permutation of ``range(partitions)``."""
    order = sorted(
        range(partitions),
        key=lambda p: hashlib.sha256(f"{RANK_TAG}{p}".encode()).digest(),
    )
    ranks = [0] * partitions
    for rank, p in enumerate(order):
        ranks[p] = rank
    return tuple(ranks)
