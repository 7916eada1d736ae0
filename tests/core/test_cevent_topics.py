"""``topic_shape`` in C (``_cevent``) against the Python path of ``PatternIndex.match``.

``match`` caches a topic with a token no pattern names (an id) under its *shape*: its
tokens with "" in place of each such token. The C function builds that key for plain
ASCII topics and answers None for everything else (the Python path then validates the
topic and names what is wrong). Here the two are compared on generated topics, and whole
indexes with and without the C function must find the same items.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import PatternError, _patterns
from pepperpy.event._patterns import PatternIndex

try:
    from pepperpy.event._cevent import topic_shape
except ImportError:  # no C compiler at install: the Python path serves alone
    topic_shape = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(topic_shape is None, reason="the _cevent extension is not built")
LIMIT = _patterns._CHECK_BYTES_FROM
#: what _patterns chose at import, before the fixture below lends it the C walk
INSTALLED = (_patterns._topic_shape, _patterns._trie_lookup)


def test_match_uses_the_c_shape_where_it_was_built() -> None:
    if os.environ.get("CI"):
        assert topic_shape is not None, "the _cevent extension did not build"
    if topic_shape is not None and not os.environ.get("PEPPERPY_EVENT_PURE_PYTHON"):
        assert INSTALLED[0] is topic_shape
        assert INSTALLED[1] is not None
    else:
        assert INSTALLED == (None, None)


def _python_shape(topic: object, literals: dict[str, int]) -> tuple[str, ...] | None:
    """What the C function must answer, from the Python path's own rules."""
    if topic.__class__ is not str:
        return None
    assert isinstance(topic, str)
    if not topic.isascii() or len(topic) > LIMIT:
        return None
    try:
        tokens = _patterns._tokens(topic, wildcards=False)
    except PatternError:
        return None
    if all(token in literals for token in tokens):
        return None
    return tuple(token if token in literals else "" for token in tokens)


WORDS = ["a", "b", "orders", "w1", "d00f", "x"]
# every ASCII character and a few others: the C side decides validity byte by byte
CHARS = st.sampled_from(
    list(string.printable) + ["\x00", "\x1f", "\x7f", "\x80", "é", "\u2003", "\ud800", "."]
)
TOPICS = st.one_of(
    st.lists(st.sampled_from(WORDS + ["", "*", "#", "a b", "id9"]), min_size=1, max_size=6).map(
        ".".join
    ),
    st.text(CHARS, max_size=24),
)
LITERALS = st.sets(st.sampled_from(WORDS)).map(lambda words: dict.fromkeys(words, 1))


@needs_c
@settings(max_examples=600, deadline=None)
@given(TOPICS, LITERALS)
def test_c_shape_equals_the_python_rules(topic: str, literals: dict[str, int]) -> None:
    assert topic_shape(topic, literals, LIMIT) == _python_shape(topic, literals)


class _Topic(str):
    pass


@needs_c
@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("a.d00f1.b", ("a", "", "b")),
        ("q.r", ("", "")),
        ("a.b", None),  # every token a literal: the by-topic cache serves it
        ("a..b", None),
        (".a", None),
        ("a.", None),
        ("", None),
        ("a.*", None),
        ("a.#", None),
        ("a.b c", None),
        ("a.\x7f", None),
        ("a.\té", None),
        ("a.é", None),  # not ASCII: the Python path
        (_Topic("a.q"), None),  # a str subclass: the Python path
        ("a." + "q" * LIMIT, None),  # over the length checked without counting bytes
    ],
)
def test_c_shape_cases(topic: str, expected: tuple[str, ...] | None) -> None:
    assert topic_shape(topic, {"a": 1, "b": 2}, LIMIT) == expected


@needs_c
def test_c_shape_refuses_wrong_arguments() -> None:
    with pytest.raises(TypeError, match="literals must be a dict"):
        topic_shape("a.b", ["a"], LIMIT)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="3 arguments"):
        topic_shape("a.b", {})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        topic_shape("a.b", {}, "many")  # type: ignore[arg-type]


PATTERNS = st.lists(
    st.lists(st.sampled_from(["a", "b", "orders", "*", "#"]), min_size=1, max_size=4).map(".".join),
    max_size=12,
)


@needs_c
@settings(max_examples=300, deadline=None)
@given(PATTERNS, st.lists(TOPICS, max_size=12))
def test_indexes_with_and_without_c_find_the_same(patterns: list[str], topics: list[str]) -> None:
    index: PatternIndex[int] = PatternIndex()
    for number, pattern in enumerate(patterns):
        index.add(pattern, number)

    def outcome(topic: str) -> object:
        try:
            return index.match(topic)
        except (PatternError, TypeError) as exc:
            return type(exc), str(exc)

    saved = _patterns._topic_shape
    try:
        _patterns._topic_shape = topic_shape
        with_c = [outcome(topic) for topic in topics]
        _patterns._topic_shape = None
        index._forget_results()  # what the C path cached must not serve the Python path
        without_c = [outcome(topic) for topic in topics]
    finally:
        _patterns._topic_shape = saved
    assert with_c == without_c


try:
    from pepperpy.event._cevent import bind_trie, trie_lookup
except ImportError:
    trie_lookup = None  # type: ignore[assignment]
else:  # bound here too: PEPPERPY_EVENT_PURE_PYTHON leaves _patterns without it
    bind_trie(_patterns._Node)


@pytest.fixture(autouse=True, scope="module")
def _c_walk() -> Iterator[None]:
    """The index's walk in C for these tests, whatever PEPPERPY_EVENT_PURE_PYTHON says
    (``_lookup_py`` is the Python walk it is compared with)."""
    saved = _patterns._trie_lookup
    _patterns._trie_lookup = trie_lookup
    try:
        yield
    finally:
        _patterns._trie_lookup = saved


# '#' in the middle and several of them: the walk's branches and its (node, position) set
WALK_PATTERNS = st.lists(
    st.lists(st.sampled_from(["a", "b", "c", "*", "#"]), min_size=1, max_size=6).map(".".join),
    max_size=25,
)
WALK_TOPICS = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=8).map(tuple)


@needs_c
@settings(max_examples=500, deadline=None)
@given(WALK_PATTERNS, st.lists(WALK_TOPICS, min_size=1, max_size=6), st.booleans())
def test_c_walk_equals_the_python_walk(
    patterns: list[str], topics: list[tuple[str, ...]], ordered: bool
) -> None:
    index: PatternIndex[str] = PatternIndex(order=len if ordered else None)
    for number, pattern in enumerate(patterns):
        index.add(pattern, f"{pattern}/{number}")
    for tokens in topics:
        assert index._lookup(tokens) == index._lookup_py(tokens)


@needs_c
def test_c_walk_after_removals_and_on_many_hashes() -> None:
    index: PatternIndex[int] = PatternIndex()
    keys = [
        (pattern, index.add(pattern, n))
        for n, pattern in enumerate(
            ["#", "a.#", "#.b", "a.#.b.#", "*.#.*", "#.#.#", "a.*.b", "x.y"]
        )
    ]
    topic = tuple("ab" * 40)  # many positions for each '#' node: the seen set grows
    assert index._lookup(topic) == index._lookup_py(topic)
    for pattern, key in keys[::2]:
        assert index.remove(pattern, key)
    assert index._lookup(topic) == index._lookup_py(topic)
    # left: "a.#" (1), "a.#.b.#" (3), "#.#.#" (5), "x.y" (7)
    assert index._lookup(("x", "y")) == index._lookup_py(("x", "y")) == (5, 7)


@needs_c
def test_c_walk_keeps_reference_counts() -> None:
    import sys

    item = object()
    token = "".join(["tok", "en"])  # not interned: its count is this test's alone
    index: PatternIndex[object] = PatternIndex(cache_size=0)
    for pattern in ("token.#", "#", "*.x", "token.x", "#.x.#"):
        index.add(pattern, item)
    topic = (token, "x")
    counts = sys.getrefcount(item), sys.getrefcount(token)
    for _ in range(1_000):
        assert len(index._lookup(topic)) == 5
        assert index._lookup((token, "q", "r")) == (item, item)
    assert (sys.getrefcount(item), sys.getrefcount(token)) == counts


@needs_c
def test_c_walk_refuses_what_is_not_a_trie() -> None:
    index: PatternIndex[int] = PatternIndex()
    with pytest.raises(TypeError, match="a node and a tuple"):
        trie_lookup(object(), ("a",))
    with pytest.raises(TypeError, match="a node and a tuple"):
        trie_lookup(index._root, ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="2 arguments"):
        trie_lookup(index._root)  # type: ignore[call-arg]
