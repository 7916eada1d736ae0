"""The log's time summary: for each block of :data:`BLOCK` global positions, the least and
the greatest ``event.timestamp`` written in it.

Timestamps are set by producers, so they are not ordered by position: a late event with an
old timestamp may come anywhere. A block's (least, greatest) pair covers every row ever
written in it (hidden ones of deleted streams too: a summary wider than its rows is still
right), so a block whose pair misses a time window holds no event of it, whatever the
order of the timestamps. :meth:`~.base.StoreBackend.time_ranges` answers from it, and
``replay_all`` reads those ranges only.

Every built-in backend keeps it in the transaction that writes the rows, appends and
``write_stored`` (copies, imports) alike: memory per block touched, SQLite with one
statement per group commit (``SUMMARIZE``), PostgreSQL with a statement-level trigger (one
upsert per insert statement, whoever runs it). Their migrations fill it for the rows
already stored, in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["BLOCK", "EARLIEST", "LATEST", "PositionRange", "note_rows", "ranges_of"]

#: global positions per block (a power of two: ``position // BLOCK`` is a shift). A block
#: read beside the window costs about two pages of a reader; the summary keeps one row per
#: block (10,000 for ten million events)
BLOCK = 1024

#: stand-ins for an open bound of a window, in microseconds (64-bit integers in SQL)
EARLIEST = -(2**63)
LATEST = 2**63 - 1

#: global positions ``[low, high)``; ``high`` None: to the end of the log, appends to come
#: included
PositionRange = tuple[int, int | None]


def note_rows(blocks: dict[int, list[int]], rows: Iterable[tuple[Any, ...]]) -> None:
    """Widen ``blocks`` (block -> [least, greatest] timestamp) by stored rows
    (global position first, timestamp ninth, as :data:`~.base.Row`)."""
    for row in rows:
        block, timestamp = row[0] // BLOCK, row[8]
        span = blocks.get(block)
        if span is None:
            blocks[block] = [timestamp, timestamp]
        elif timestamp < span[0]:
            span[0] = timestamp
        elif timestamp > span[1]:
            span[1] = timestamp


def ranges_of(
    matching: Iterable[int], last_block: int | None, from_position: int
) -> list[PositionRange]:
    """The position ranges of the blocks ``matching`` a window (ascending, at or past
    ``from_position``'s block): runs of consecutive blocks merged, the first cut at
    ``from_position``, and the last left open when it is the log's last block
    (``last_block``: appends still land there and past it)."""
    ranges: list[PositionRange] = []
    first = previous = None
    for block in matching:
        if previous is not None and block == previous + 1:
            previous = block
            continue
        if first is not None and previous is not None:
            ranges.append((first * BLOCK, (previous + 1) * BLOCK))
        first = previous = block
    if first is not None and previous is not None:
        high = None if last_block is not None and previous >= last_block else previous + 1
        ranges.append((first * BLOCK, None if high is None else high * BLOCK))
    if ranges and ranges[0][0] < from_position:
        ranges[0] = (from_position, ranges[0][1])
    return ranges
