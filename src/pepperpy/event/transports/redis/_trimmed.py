"""Counting the entries trimmed from a stream before a reader got to them.

Redis (7.0 and newer) numbers a stream's entries: ``XINFO STREAM`` reports
``entries-added`` (how many were ever appended), ``length``, the first entry's id and
``max-deleted-entry-id`` (the last ``XDEL``; trimming leaves it alone). From these a
snapshot can tell the logical number of the entry a reader stands on, in three cases:
the reader is at the end (``entries-added``), the stream was trimmed past it
(``entries-added - length``: what it will find next follows that many), or a read taken
right after the snapshot returned everything after it (``entries-added - that many``).
A reader that counts the entries it reads can then compare: every entry it did not get
was trimmed before it got there. Outside those cases (a reader in the middle of a
stream it reads in full batches) nothing tells how far in it is; the count waits for the
next check that can tell, so a loss is reported late but with its exact size.

The ungrouped listener keeps that count itself (``Listener.numbers``). A group's count
is Redis's own ``entries-read``, which Redis 7.0 raises only for what it delivered: the
group script sets it right where the snapshot tells, in the same step, so a loss is
reported once whichever member sees it (see ``GroupTally``).

The snapshot is one Lua script, sent in the same pipeline as a read (no round trip of
its own) and at most every ``CHECK_EVERY`` seconds: the hot path pays nothing between.
Redis 6.2 reports no counters: there, these checks find nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ._wire import parse_id

__all__ = [
    "CHECK_EVERY",
    "CREATE_GROUP",
    "GROUP_COUNTERS",
    "STREAM_COUNTERS",
    "Counters",
    "GroupTally",
    "id_text",
    "parse_counters",
    "passed_count",
]

StreamId = tuple[int, int]

#: seconds between two counter checks of one reader (each rides along with a read)
CHECK_EVERY = 0.1

# The fields of one stream, as a list: last-generated-id, entries-added (-1 when Redis
# does not report it), length, first entry id (0-0 when empty), max-deleted-entry-id.
_FIELDS = """
local function counters(key)
  local info = redis.call('XINFO', 'STREAM', key)
  local f = {}
  for j = 1, #info, 2 do f[info[j]] = info[j + 1] end
  local first = f['recorded-first-entry-id']
  if not first then first = f['first-entry'] and f['first-entry'][1] or '0-0' end
  return {f['last-generated-id'], f['entries-added'] or -1, f['length'], first,
          f['max-deleted-entry-id'] or '0-0'}
end
"""

#: KEYS = streams; returns the counters of each (a missing stream: nothing added yet; a
#: key another client replaced with something else: no counters, as on Redis 6.2, so that
#: one such key does not fail the snapshot of the others)
STREAM_COUNTERS = (
    _FIELDS
    + """
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'stream' then
    out[i] = counters(key)
  elseif kind == 'none' then
    out[i] = {'0-0', 0, 0, '0-0', '0-0'}
  else
    out[i] = {'0-0', -1, 0, '0-0', '0-0'}
  end
end
return out
"""
)

# How many entries lie up to id `at` of a stream whose counters are `out` (see
# passed_count: at the end, or trimmed past), or -1 where the counters cannot tell.
_PASSED = """
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local function passed(out, at)
  local added, length, first = out[2], out[3], out[4]
  if added < 0 then return -1 end
  if length == 0 or not before(at, out[1]) then return added end
  if before(at, first) and before(out[5], first) then return added - length end
  return -1
end
"""

#: KEYS[1] = stream, ARGV[1] = group. Where the snapshot tells how many entries lie up to
#: the group's last-delivered-id (the group is at the end, or the stream was trimmed past
#: it: see passed_count) and the group's entries-read is lower, the difference was trimmed
#: before the group read it: entries-read is set to the right count (Redis 7.0 counts only
#: what it delivered), in the same step, so that whoever checks next finds nothing to
#: report again. Where entries-read is unknown (a group made without it, by an earlier
#: version or an operator), it is set the same way, without a report: nothing tells what
#: came before, but from then on a loss shows. Returns the stream's counters, then
#: last-delivered-id, entries-read (-1: unknown) and what entries-read was before it was
#: set (-1: not set, or unknown); false without the stream (or where its key holds
#: something else) or the group.
GROUP_COUNTERS = (
    _FIELDS
    + _PASSED
    + """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then return false end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local h = {}
  for j = 1, #g, 2 do h[g[j]] = g[j + 1] end
  if h['name'] == ARGV[1] then
    local out = counters(KEYS[1])
    local at, read, was = h['last-delivered-id'], h['entries-read'] or -1, -1
    local count = passed(out, at)
    if count > read then
      redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], at, 'ENTRIESREAD', count)
      if read >= 0 then was = read end
      read = count
    end
    out[6], out[7], out[8] = at, read, was
    return out
  end
end
return false
"""
)

#: KEYS = streams, ARGV[1] = group, ARGV[2] = where it starts ('$' or an id).
#: ``XGROUP CREATE ... MKSTREAM`` on each stream, and, where the stream's counters tell
#: (Redis 7.0 and newer), the group's entries-read set in the same step. Without it Redis
#: 7.0 leaves the count unknown and, at the group's first read, estimates it from the
#: stream's first entry: entries trimmed before that read are then counted as read, and
#: their loss never shows. Returns, per stream, 1 if it made the group, 0 if the group
#: existed (it keeps its place); the first other error is the script's.
CREATE_GROUP = (
    _FIELDS
    + _PASSED
    + """
local out = {}
for i, key in ipairs(KEYS) do
  local made = redis.pcall('XGROUP', 'CREATE', key, ARGV[1], ARGV[2], 'MKSTREAM')
  if type(made) == 'table' and made['err'] then
    if not string.find(made['err'], 'BUSYGROUP', 1, true) then return made end
    out[i] = 0
  else
    local info = counters(key)
    local at = ARGV[2]
    if at == '$' then at = info[1] end
    local count = passed(info, at)
    if count >= 0 then
      redis.call('XGROUP', 'SETID', key, ARGV[1], at, 'ENTRIESREAD', count)
    end
    out[i] = 1
  end
end
return out
"""
)


@dataclass(frozen=True, slots=True)
class Counters:
    """What ``XINFO STREAM`` says about a stream's numbering at one moment."""

    last: StreamId  #: last-generated-id
    added: int | None  #: entries-added; None where Redis does not report it
    length: int
    first: StreamId  #: the first entry still in the stream (0-0 when it is empty)
    max_deleted: StreamId  #: the last entry removed with XDEL (trimming leaves it)


def parse_counters(fields: list[Any]) -> Counters:
    added = int(fields[1])
    return Counters(
        last=parse_id(fields[0]),
        added=None if added < 0 else added,
        length=int(fields[2]),
        first=parse_id(fields[3]),
        max_deleted=parse_id(fields[4]),
    )


def passed_count(counters: Counters, position: StreamId, unread: int | None) -> int | None:
    """How many entries of the stream lie at or before ``position``, trimmed ones included.

    That is Redis's logical number of the entry a reader at ``position`` stands on, once
    the entries trimmed right after it are counted as passed (its next read skips them).
    ``unread`` is how many entries followed ``position`` when ``counters`` was taken, if
    known (a read sent right behind the snapshot returned them all). None when Redis
    cannot tell: no counters (Redis 6.2), ``XDEL`` holes where they would be counted, or
    a reader in the middle of the stream without ``unread``.
    """
    added = counters.added
    if added is None:
        return None
    if counters.length == 0 or position >= counters.last:
        return added  # at the end, or everything after it is gone
    if position < counters.first:  # trimmed past it: what went first counts as passed
        return added - counters.length if counters.max_deleted < counters.first else None
    if unread is not None and counters.max_deleted <= position:
        return added - unread
    return None


def id_text(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


class GroupTally:
    """Finds the entries of one partition trimmed before a group read them.

    Redis keeps the count that matters: ``entries-read``, which Redis 7.0 raises only for
    entries it delivered to the group (whoever read them), so it falls behind the stream's
    numbering by what was trimmed unread (and ``XINFO GROUPS``'s ``lag`` stays that much
    too high). ``GROUP_COUNTERS`` sets it right where the snapshot can tell, which is the
    report. In the middle of the stream, a read that returned everything after the
    group's position tells it too; that is reported at once, and remembered (``reported``)
    until the script can set the counter.
    """

    __slots__ = ("checked_at", "next_check", "reported")

    def __init__(self) -> None:
        self.reported = 0  #: entries reported lost that Redis's counter does not show yet
        self.checked_at: StreamId | None = None  #: where the counts last agreed
        self.next_check = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_check

    def check(
        self, fields: list[Any], read: int, full: bool
    ) -> tuple[int, StreamId | None, StreamId]:
        """Compare with a ``GROUP_COUNTERS`` snapshot taken right before a read that
        returned ``read`` entries (``full``: it may have left some behind).

        Returns how many entries were trimmed before the group read them and had not
        been reported yet, and where they were: after the first id (None: not known),
        before the second.
        """
        counters = parse_counters(fields)
        position = parse_id(fields[5])
        entries_read, was = int(fields[6]), int(fields[7])
        after = self.checked_at
        lost = 0
        if was >= 0:  # the script counted the trimmed entries in
            lost = max(0, entries_read - was - self.reported)
            self.reported = 0
            self.checked_at = position
        elif entries_read >= 0 and not full:
            passed = passed_count(counters, position, read)
            if passed is not None:
                missed = passed - entries_read  # by Redis's counter
                lost = max(0, missed - self.reported)
                self.reported = max(0, missed)
                self.checked_at = position
        return lost, after, counters.first if position < counters.first else position
