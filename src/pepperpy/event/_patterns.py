"""The topic pattern language and its index.

Event types, topics and stream names are dot-separated tokens (``users.login``). In a
pattern ``*`` matches exactly one token and ``#`` zero or more; anything else is
literal. The same language serves the manager, the bus, the processor, replay,
notifications, store filters and access-control rules.

:class:`PatternIndex` keeps subscriptions in a token trie, so the cost of matching a
topic depends on the topic and on the subscriptions that can match it, not on how many
subscriptions exist; a bounded cache maps recently seen topics to their results and is
invalidated whenever the index changes.

An index may be shared by several threads (a manager's handlers are registered once and
emitted to from several event loops): changes take a lock and replace the cache with an
empty one, and ``match`` takes none. It stores what it found in the cache it saw *before*
walking the trie, so a result computed against an index that changed meanwhile lands in
a cache nobody reads any more, never in the current one.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import cache, lru_cache
from itertools import islice
from typing import Any, Generic, NamedTuple, TypeVar

from ._errors import PatternError
from ._options import check_count
from ._text import MAX_NAME_BYTES, name_limit, overflow_index

__all__ = [
    "PatternIndex",
    "could_overlap",
    "matches",
    "parse_name",
    "parse_pattern",
    "parse_topic",
]

T = TypeVar("T")

ONE = "*"
ANY = "#"
_WILDCARDS = frozenset((ONE, ANY))

# a valid topic, checked in C (str methods for ASCII, this for the rest): tokens of anything
# but dots, wildcards, whitespace (``\s`` is ``str.isspace()``), control characters and
# lone surrogates; _tokens() walks the text character by character only to name what is
# wrong
_TOPIC_TOKEN = r"[^.*#\s\x00-\x1f\x7f\ud800-\udfff]+"
_valid_topic = re.compile(rf"{_TOPIC_TOKEN}(?:\.{_TOPIC_TOKEN})*").fullmatch
_CHECK_BYTES_FROM = MAX_NAME_BYTES // 4  # shorter texts cannot exceed the byte limit


def _tokens(text: str, *, wildcards: bool) -> tuple[str, ...]:
    if not wildcards and text.__class__ is str and len(text) <= _CHECK_BYTES_FROM:
        if text.isascii():
            # ASCII: printable leaves out control characters and every whitespace but " "
            if text.isprintable() and " " not in text and "*" not in text and "#" not in text:
                tokens = tuple(text.split("."))
                if "" not in tokens:
                    return tokens
        elif _valid_topic(text) is not None:
            return tuple(text.split("."))
    kind = "pattern" if wildcards else "topic"
    if not isinstance(text, str):
        raise TypeError(f"a {kind} must be a str, got {type(text).__name__}")
    if not text:
        raise PatternError(text, 0, "empty", kind)
    if len(text) > _CHECK_BYTES_FROM:
        limit = name_limit(text)  # a dead-letter topic may exceed it by its prefix
        overflow = overflow_index(text, limit)
        if overflow is not None:
            raise PatternError(
                text,
                overflow,
                f"longer than {limit} bytes in UTF-8 ({len(text)} characters)",
                kind,
            )
    tokens = tuple(text.split("."))
    position = 0
    for token in tokens:
        if not token:
            if position == 0:
                reason = "leading dot"
            elif position == len(text):
                reason = "trailing dot"
                position -= 1
            else:
                reason = "empty token (two dots in a row)"
            raise PatternError(text, position, reason, kind)
        if token not in _WILDCARDS:
            for offset, char in enumerate(token):
                if char in "*#":
                    if not wildcards:
                        reason = f"wildcard {char!r} is not allowed in a topic"
                    else:
                        reason = f"wildcard {char!r} must be a whole token, not part of {token!r}"
                    raise PatternError(text, position + offset, reason, kind)
                if char.isspace():
                    raise PatternError(text, position + offset, "whitespace is not allowed", kind)
                if char < " " or char == "\x7f":
                    raise PatternError(
                        text, position + offset, f"control character {char!r} is not allowed", kind
                    )
                if "\ud800" <= char <= "\udfff":
                    raise PatternError(
                        text, position + offset, f"lone surrogate {char!r} is not valid UTF-8", kind
                    )
        elif not wildcards:
            raise PatternError(
                text, position, f"wildcard {token!r} is not allowed in a topic", kind
            )
        position += len(token) + 1
    return tokens


@lru_cache(maxsize=4096)
def parse_pattern(pattern: str) -> tuple[str, ...]:
    """Split and validate a pattern; raise :class:`PatternError` naming the position."""
    return _tokens(pattern, wildcards=True)


@lru_cache(maxsize=4096)
def parse_topic(topic: str) -> tuple[str, ...]:
    """Split and validate a concrete topic (no wildcards)."""
    return _tokens(topic, wildcards=False)


def plain_name(value: Any) -> Any:
    """A str subclass (a ``StrEnum`` member naming an event type, a topic or a pattern)
    as the plain str it holds; anything else as it is (checked where it is used).

    Types, topics and patterns are kept, compared, cached and sent as plain strs: an
    enum member would be printed as ``<T.CREATED: ...>`` by some code and as its value
    by other code, and a ``(str, Enum)`` member formats as ``T.CREATED`` on 3.12+.
    """
    if value.__class__ is not str and isinstance(value, str):
        return str.__str__(value)  # the characters it holds, whatever __str__ says
    return value


def parse_name(text: str, kind: str) -> tuple[str, ...]:
    """Check a name that has a topic's form but is another thing (``kind``: "stream
    name"), so that an error says what the caller passed."""
    if not isinstance(text, str):  # before the cache, which would call a list unhashable
        raise TypeError(f"a {kind} must be a str, got {type(text).__name__} {text!r:.100}")
    try:
        return parse_topic(text)
    except PatternError as exc:
        raise PatternError(exc.pattern, exc.position, exc.reason, kind) from None


def is_literal(pattern: str) -> bool:
    """True when ``pattern`` has no wildcard token."""
    return not any(token in _WILDCARDS for token in parse_pattern(pattern))


def _match_tokens(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    # iterative matcher with backtracking on the last '#' (like glob '*' matching)
    p = t = 0
    star_p = star_t = -1
    while t < len(topic):
        if p < len(pattern) and pattern[p] == ANY:
            star_p, star_t = p, t
            p += 1
        elif p < len(pattern) and (pattern[p] == ONE or pattern[p] == topic[t]):
            p += 1
            t += 1
        elif star_p >= 0:
            p = star_p + 1
            star_t += 1
            t = star_t
        else:
            return False
    while p < len(pattern) and pattern[p] == ANY:
        p += 1
    return p == len(pattern)


def matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches ``pattern``."""
    return _match_tokens(parse_pattern(pattern), parse_topic(topic))


def could_overlap(first: str, second: str) -> bool:
    """True when some concrete topic matches both patterns."""
    a, b = parse_pattern(first), parse_pattern(second)

    @cache
    def meet(i: int, j: int) -> bool:
        if i < len(a) and a[i] == ANY:
            if meet(i + 1, j) or (j < len(b) and meet(i, j + 1)):
                return True
        if j < len(b) and b[j] == ANY:
            if meet(i, j + 1) or (i < len(a) and meet(i + 1, j)):
                return True
        if i == len(a) or j == len(b):
            return i == len(a) and j == len(b)
        if a[i] == ANY or b[j] == ANY:
            return False
        if a[i] == ONE or b[j] == ONE or a[i] == b[j]:
            return meet(i + 1, j + 1)
        return False

    return meet(0, 0)


class _Node(Generic[T]):
    __slots__ = ("any", "children", "entries", "one")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.one: _Node[T] | None = None
        self.any: _Node[T] | None = None
        self.entries: dict[int, T] = {}

    def empty(self) -> bool:
        return not (self.children or self.one or self.any or self.entries)


class PatternIndex(Generic[T]):
    """Items registered under patterns, found by concrete topic.

    ``match(topic)`` returns the matching items in registration order, or sorted by
    ``order(item)`` when given (a stable sort: ties keep registration order). Results are cached
    per topic (at most ``cache_size`` topics); any ``add`` or ``remove`` clears the cache.
    Safe to use from several threads at once.
    """

    def __init__(self, *, cache_size: int = 4096, order: Callable[[T], Any] | None = None) -> None:
        check_count(cache_size, "cache_size", least=0, error=ValueError)
        if order is not None and not callable(order):
            # refused here, not at the first topic that matches two items, far from it
            raise TypeError(
                "order must be a function of an item returning its sort key (as sorted()'s "
                f"key=), or None, got {order!r}"
            )
        self._order = order
        self._root: _Node[T] = _Node()
        self._cache: dict[str, tuple[T, ...]] = {}
        #: results by shape: a topic with tokens no pattern names literally (ids, say)
        #: matches as the topic with each of those tokens replaced by "" (no pattern's),
        #: kept under those tokens joined by dots ("w3..w7" for "w3.d0001f2.w7")
        self._shapes: dict[str, tuple[T, ...]] = {}
        #: how many registrations name each literal token
        self._literals: dict[str, int] = {}
        #: the literal tokens as a C table (``_cevent.literal_table``), made on first use
        self._table: object | None = None
        self._cache_size = cache_size
        self._sequence = 0
        self._count = 0
        self._lock = threading.Lock()  # held to change the trie

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: str, item: T) -> int:
        """Register ``item`` under ``pattern``; return its registration key."""
        tokens = parse_pattern(pattern)
        with self._lock:
            return self._add(tokens, item)

    def _add(self, tokens: tuple[str, ...], item: T) -> int:
        node = self._root
        for token in tokens:
            if token == ANY:
                node.any = node.any or _Node()
                node = node.any
            elif token == ONE:
                node.one = node.one or _Node()
                node = node.one
            else:
                nxt = node.children.get(token)
                if nxt is None:
                    nxt = node.children[token] = _Node()
                node = nxt
                self._literals[token] = self._literals.get(token, 0) + 1
        self._sequence += 1
        node.entries[self._sequence] = item
        self._count += 1
        self._forget_results()
        return self._sequence

    def _forget_results(self) -> None:
        """Start both caches afresh, after the trie changed (see :meth:`match`)."""
        self._table = None  # first: a match that reads the new caches makes a new table
        self._cache = {}
        self._shapes = {}

    def remove(self, pattern: str, key: int) -> bool:
        """Remove the registration ``key`` made under ``pattern``; False if absent."""
        tokens = parse_pattern(pattern)
        with self._lock:
            return self._remove(tokens, key)

    def _remove(self, tokens: tuple[str, ...], key: int) -> bool:
        path: list[tuple[_Node[T], str]] = []
        node: _Node[T] | None = self._root
        for token in tokens:
            assert node is not None
            path.append((node, token))
            if token == ANY:
                node = node.any
            elif token == ONE:
                node = node.one
            else:
                node = node.children.get(token)
            if node is None:
                return False
        assert node is not None
        if node.entries.pop(key, None) is None:
            return False
        self._count -= 1
        for token in tokens:
            if token not in _WILDCARDS:
                left = self._literals[token] - 1
                if left:
                    self._literals[token] = left
                else:
                    del self._literals[token]
        for parent, token in reversed(path):  # prune empty branches
            child = parent.any if token == ANY else parent.one if token == ONE else None
            if child is None:
                child = parent.children.get(token)
            if child is None or not child.empty():
                break
            if token == ANY:
                parent.any = None
            elif token == ONE:
                parent.one = None
            else:
                del parent.children[token]
        self._forget_results()
        return True

    def remove_where(self, pattern: str, registered: Callable[[T], bool]) -> bool:
        """Remove every registration under exactly ``pattern`` whose item ``registered``
        accepts (one handler's, say); True if any was removed."""
        removed = False
        for key, item in self.items_for(pattern):
            if registered(item):
                removed = self.remove(pattern, key) or removed
        return removed

    def items_for(self, pattern: str) -> list[tuple[int, T]]:
        """The ``(key, item)`` pairs registered under exactly ``pattern``."""
        node: _Node[T] | None = self._root
        for token in parse_pattern(pattern):
            assert node is not None
            if token == ANY:
                node = node.any
            elif token == ONE:
                node = node.one
            else:
                node = node.children.get(token)
            if node is None:
                return []
        assert node is not None
        return list(node.entries.items())

    def match(self, topic: str) -> tuple[T, ...]:
        """Items whose pattern matches ``topic``, in registration order."""
        # the caches as they are before the walk: a change meanwhile replaces them, so a
        # result found in an index that changed under the walk is stored where nobody
        # reads it. Read before the literal table, which a change drops first (see
        # _forget_results): a key made with a stale table never enters current caches.
        # (not named ``cache``: CPython 3.11 compiles ``cache.get()`` as a call on the
        # module imported under that name, unspecialised, 30 ns slower)
        results = self._cache
        cached = results.get(topic)
        if cached is not None:
            return cached
        shapes = self._shapes
        if _shape_key is not None:
            # the topic's shape key, made in C for an ASCII topic without a str per token
            key = _shape_key(topic, self._table or self._make_table(), _CHECK_BYTES_FROM)
            if key is not None:
                found = shapes.get(key)
                if found is not None:
                    return found
                return self._by_shape(shapes, key, tuple(key.split(".")))
        literals = self._literals
        # not parse_topic(): its cache would only churn with topics the caches here miss
        tokens = _tokens(topic, wildcards=False)
        for token in tokens:
            if token not in literals:
                # a token no pattern names (an id): topics differing only there match
                # alike, so they share one result, kept apart from the by-topic cache
                # that such topics, often each seen once, would otherwise flush
                shape = tuple([token if token in literals else "" for token in tokens])
                return self._by_shape(shapes, ".".join(shape), shape)
        found = self._lookup(tokens)
        _remember(results, topic, found, self._cache_size)
        return found

    def _by_shape(
        self, shapes: dict[str, tuple[T, ...]], key: str, shape: tuple[str, ...]
    ) -> tuple[T, ...]:
        """The result for a topic of ``shape`` (its tokens, "" for each no pattern names)
        and its ``key`` in ``shapes`` (the tokens joined by dots: "w3..w7")."""
        found = shapes.get(key)
        if found is None:
            found = self._lookup(shape)
            _remember(shapes, key, found, self._cache_size)
        return found

    def _make_table(self) -> object:
        """The literal tokens as the C side probes them, made once after each change."""
        assert _literal_table is not None
        with self._lock:  # not from literals a change is still making
            table = self._table
            if table is None:
                table = self._table = _literal_table(self._literals)
            return table

    def _lookup(self, tokens: tuple[str, ...]) -> tuple[T, ...]:
        if _trie_lookup is None:
            return self._lookup_py(tokens)
        found: tuple[T, ...] = _trie_lookup(self._root, tokens)  # the walk below, in C
        if self._order is not None and len(found) > 1:
            return tuple(sorted(found, key=self._order))
        return found

    def _lookup_py(self, tokens: tuple[str, ...]) -> tuple[T, ...]:
        found: dict[int, T] = {}
        last = len(tokens)
        # (node, token index) still to walk: literal tokens are followed in place, '*'
        # and '#' branches wait here (a loop, not recursion: no call per branch)
        branches: list[tuple[_Node[T], int]] = [(self._root, 0)]
        branch, later = branches.pop, branches.append
        # only '#' nodes can be reached twice at one position; remembering those keeps
        # patterns with several '#' polynomial
        seen: set[tuple[int, int]] | None = None
        while branches:
            node, i = branch()
            while True:
                rest = node.any
                if rest is not None:
                    if rest.entries:  # a trailing '#' matches whatever remains
                        found.update(rest.entries)
                    if rest.children or rest.one is not None or rest.any is not None:
                        if seen is None:
                            seen = set()
                        ident = id(rest)
                        for k in range(i, last + 1):
                            if (ident, k) not in seen:
                                seen.add((ident, k))
                                later((rest, k))
                if i == last:
                    if node.entries:
                        found.update(node.entries)
                    break
                if node.one is not None:
                    later((node.one, i + 1))
                child = node.children.get(tokens[i])
                if child is None:
                    break
                node = child
                i += 1
        if not found:
            return ()
        if len(found) == 1:
            return tuple(found.values())
        ordered = list(map(found.__getitem__, sorted(found)))  # registration order
        if self._order is not None:
            ordered.sort(key=self._order)
        return tuple(ordered)

    def __iter__(self) -> Iterator[T]:
        stack: list[_Node[T]] = [self._root]
        entries: dict[int, T] = {}
        while stack:
            node = stack.pop()
            entries.update(node.entries)
            stack.extend(node.children.values())
            stack.extend(n for n in (node.one, node.any) if n is not None)
        return iter([entries[key] for key in sorted(entries)])


def _remember(results: dict[Any, Any], key: Any, found: Any, size: int) -> None:
    """Keep ``found`` under ``key`` in a cache of at most ``size`` entries (the oldest go)."""
    if len(results) >= size:
        if not size:  # caching is off
            return
        # the oldest quarter at once: finding the oldest entry walks past the slots of
        # those removed before it, so removing one at a time would cost O(size) a miss
        try:
            oldest = list(islice(results, max(1, size // 4)))
        except RuntimeError:  # another thread changed it meanwhile
            oldest = []
        for old in oldest:
            results.pop(old, None)
    results[key] = found


class _CFunctions(NamedTuple):
    """What ``PatternIndex`` takes from the ``_cevent`` extension (see :meth:`match`)."""

    literal_table: Callable[[dict[str, int]], object]
    shape_key: Callable[[str, object, int], str | None]
    trie_lookup: Callable[[_Node[Any], tuple[str, ...]], tuple[Any, ...]]


def _c_functions() -> _CFunctions | None:
    """The ``_cevent`` functions, if it was built and is not turned off
    (``PEPPERPY_EVENT_PURE_PYTHON``, as for :func:`._event._c_module`)."""
    if os.environ.get("PEPPERPY_EVENT_PURE_PYTHON"):
        return None
    try:
        from . import _cevent
    except ImportError:
        return None
    _cevent.bind_trie(_Node)
    return _CFunctions(_cevent.literal_table, _cevent.shape_key, _cevent.trie_lookup)


_C = _c_functions()
_literal_table = None if _C is None else _C.literal_table
_shape_key = None if _C is None else _C.shape_key
_trie_lookup = None if _C is None else _C.trie_lookup


def validate_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """Validate each pattern, returning them as a tuple."""
    return tuple(p for p in patterns if parse_pattern(p))
