"""``shape_key`` in C (``_cevent``) against the Python path of ``PatternIndex.match``.

``match`` caches a topic with a token no pattern names (an id) under its *shape*: its
tokens with "" in place of each such token, kept under those joined by dots ("a..b").
The C function builds that key for plain ASCII topics, probing a table of the index's
literal tokens (``literal_table``) rather than making a str per token, and answers None
for everything else (the Python path then validates the topic and names what is wrong).
Here the two are compared on generated topics, and whole indexes with and without the C
function must find the same items.
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
    from pepperpy.event._cevent import literal_table, shape_key
except ImportError:  # no C compiler at install: the Python path serves alone
    literal_table = shape_key = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(shape_key is None, reason="the _cevent extension is not built")
LIMIT = _patterns._CHECK_BYTES_FROM
#: what _patterns chose at import, before the fixture below lends it the C walk
INSTALLED = (_patterns._shape_key, _patterns._literal_table, _patterns._trie_lookup)


def test_match_uses_the_c_shape_where_it_was_built() -> None:
    if os.environ.get("CI"):
        assert shape_key is not None, "the _cevent extension did not build"
    if shape_key is not None and not os.environ.get("PEPPERPY_EVENT_PURE_PYTHON"):
        assert INSTALLED[:2] == (shape_key, literal_table)
        assert INSTALLED[2] is not None
    else:
        assert INSTALLED == (None, None, None)


def topic_shape(topic: str, literals: dict[str, int], limit: int) -> tuple[str, ...] | None:
    """The shape the C key names (its tokens: "" for each unknown one), or None."""
    key = shape_key(topic, literal_table(literals), limit)
    return None if key is None else tuple(key.split("."))


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
    shape = _python_shape(topic, literals)
    expected = None if shape is None else ".".join(shape)
    assert shape_key(topic, literal_table(literals), LIMIT) == expected


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
def test_c_shape_of_many_tokens() -> None:
    """Up to 64 tokens in C; more (rare) take the Python path, which gives the shape."""
    literals = {"a": 1}
    assert topic_shape(".".join(["a"] * 63 + ["q"]), literals, LIMIT) == ("a",) * 63 + ("",)
    assert topic_shape(".".join(["a"] * 64 + ["q"]), literals, LIMIT) is None
    index: PatternIndex[int] = PatternIndex()
    index.add("a.#", 1)
    index.add("#.q", 2)
    assert index.match(".".join(["a"] * 64 + ["q"])) == (1, 2)
    assert index.match(".".join(["a"] * 64 + ["b"])) == (1,)


@needs_c
def test_c_table_of_many_literals_and_colliding_prefixes() -> None:
    """A table larger than its first size, tokens that share prefixes and lengths."""
    words = [f"t{n}" for n in range(3000)] + ["t", "tt", "é", "a b"]
    table = literal_table(dict.fromkeys(words, 1))
    for word in words[:3000]:
        assert shape_key(f"{word}.id", table, LIMIT) == f"{word}."
    assert shape_key("t3000.t2999", table, LIMIT) == ".t2999"
    assert shape_key("t.tt", table, LIMIT) is None  # both literals
    assert shape_key("t1.T1", table, LIMIT) == "t1."  # case counts


@needs_c
def test_c_shape_refuses_wrong_arguments() -> None:
    with pytest.raises(TypeError, match="literals must be a dict"):
        literal_table(["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="3 arguments"):
        shape_key("a.b", literal_table({}))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="must come from literal_table"):
        shape_key("a.b", {}, LIMIT)
    with pytest.raises(TypeError):
        shape_key("a.b", literal_table({}), "many")  # type: ignore[arg-type]


def test_a_new_literal_changes_the_shape_of_topics_seen_before() -> None:
    """The literal table is made again after each change: a token that became a
    pattern's literal is no longer an id, and one no pattern names any more is one."""
    index: PatternIndex[int] = PatternIndex()
    index.add("orders.*", 1)
    assert index.match("orders.x1") == (1,)
    key = index.add("orders.x1", 2)
    assert index.match("orders.x1") == (1, 2)
    assert index.match("orders.x2") == (1,)
    index.remove("orders.x1", key)
    assert index.match("orders.x1") == (1,)
    index.add("*.x2", 3)
    assert index.match("orders.x2") == (1, 3)
    assert index.match("other.x2") == (3,)


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

    saved = _patterns._shape_key, _patterns._literal_table
    try:
        _patterns._shape_key, _patterns._literal_table = shape_key, literal_table
        with_c = [outcome(topic) for topic in topics]
        _patterns._shape_key = _patterns._literal_table = None
        index._forget_results()  # what the C path cached must not serve the Python path
        without_c = [outcome(topic) for topic in topics]
    finally:
        _patterns._shape_key, _patterns._literal_table = saved
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
