"""The topic pattern language (SPEC section 2) and the PatternIndex behind every router."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import PatternError, PatternIndex, matches
from pepperpy.event._patterns import could_overlap, parse_pattern, parse_topic

# -- SPEC examples ---------------------------------------------------------------------

SPEC_EXAMPLES = [
    ("users.*", "users.login", True),
    ("users.*", "users", False),
    ("users.*", "users.login.failed", False),
    ("users.#", "users", True),
    ("users.#", "users.login", True),
    ("users.#", "users.login.failed", True),
    ("#", "users", True),
    ("#", "users.login.failed", True),
    ("#.failed", "login.failed", True),
    ("#.failed", "failed", True),
    ("#.failed", "login.failed.again", False),
    ("users.login", "users.login", True),
    ("users.login", "users.logout", False),
    ("user.123", "user.123", True),
    ("*", "users", True),
    ("*", "users.login", False),
    ("*.*", "a.b", True),
    ("a.#.z", "a.z", True),
    ("a.#.z", "a.b.c.z", True),
    ("a.#.z", "a.b.c", False),
    ("#.#", "a", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c.d", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
    ("*.#.*", "a", False),
    ("*.#.*", "a.b", True),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), SPEC_EXAMPLES)
def test_spec_examples(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected
    index: PatternIndex[str] = PatternIndex()
    index.add(pattern, "hit")
    assert index.match(topic) == (("hit",) if expected else ())


def test_literals_are_case_sensitive_and_exact() -> None:
    assert not matches("Users.login", "users.login")
    assert not matches("users.log", "users.login")
    assert matches("user-1.a_b", "user-1.a_b")


# -- invalid patterns -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "position", "reason"),
    [
        ("", 0, "empty"),
        (".", 0, "leading dot"),
        (".users", 0, "leading dot"),
        ("users.", 5, "trailing dot"),
        ("a..b", 2, "empty token"),
        ("us*rs", 2, "whole token"),
        ("users*", 5, "whole token"),
        ("a.#b", 2, "whole token"),
        ("a.b#", 3, "whole token"),
        ("a.**", 2, "whole token"),
        ("a.##.c", 2, "whole token"),
        ("a b", 1, "whitespace"),
        ("a.\tb", 2, "whitespace"),
        ("a.b\x00c", 3, "control character"),
        ("a\x1b", 1, "control character"),
        ("a.\x7f", 2, "control character"),
        ("a.x\ud800", 3, "lone surrogate"),
    ],
)
def test_invalid_patterns_name_position_and_reason(
    pattern: str, position: int, reason: str
) -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern(pattern)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.pattern == pattern
    assert error.position == position
    assert reason in error.reason
    assert f"position {position}" in str(error) and reason in str(error)
    for use in (
        lambda: matches(pattern, "a"),
        lambda: PatternIndex[int]().add(pattern, 1),
        lambda: could_overlap(pattern, "a"),
    ):
        with pytest.raises(PatternError):
            use()


@pytest.mark.parametrize("topic", ["users.*", "#", "a.#.b", "", "a..b", "a."])
def test_topics_may_not_hold_wildcards_or_be_malformed(topic: str) -> None:
    with pytest.raises(PatternError):
        parse_topic(topic)
    with pytest.raises(PatternError):
        matches("#", topic)
    with pytest.raises(PatternError):
        PatternIndex[int]().match(topic)


async def test_errors_name_what_the_text_was_meant_to_be() -> None:
    """An event type or a stream name was reported as an "invalid pattern": the caller
    had passed no pattern, so the message pointed at the wrong argument."""
    from pepperpy.event import EventManager, EventStore

    with pytest.raises(PatternError, match=r"^invalid topic ' user' at position 0"):
        await EventManager().emit(" user", {})
    async with EventStore() as store:
        with pytest.raises(PatternError, match=r"^invalid stream name '' at position 0: empty"):
            await store.append("", [{"type": "a.b", "data": {}}])
        with pytest.raises(PatternError, match=r"^invalid stream name 'a\.\*'") as caught:
            await store.get_stream("a.*")
    assert caught.value.kind == "stream name" and caught.value.position == 2
    with pytest.raises(PatternError, match=r"^invalid pattern 'us\*r'"):
        parse_pattern("us*r")


def test_a_pattern_error_survives_pickling() -> None:
    """It could not be unpickled before (its constructor takes four arguments), so it
    could not cross a process boundary."""
    import pickle

    with pytest.raises(PatternError) as caught:
        parse_topic("a..b")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.pattern, copy.position, copy.reason, copy.kind) == (
        "a..b",
        2,
        caught.value.reason,
        "topic",
    )
    assert str(copy) == str(caught.value)


@pytest.mark.parametrize("value", [None, 1, b"users", ["users"]])
def test_non_strings_are_type_errors(value: Any) -> None:
    with pytest.raises(TypeError):
        parse_pattern(value)


# -- could_overlap --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("users.*", "users.login", True),
        ("users.*", "orders.*", False),
        ("users.*", "users", False),
        ("users.#", "users", True),
        ("#", "anything.at.all", True),
        ("*.login", "users.*", True),
        ("a.*.c", "a.b.d", False),
        ("#.failed", "users.*", True),
        ("#.failed", "users.ok", False),
        ("a.#", "#.z", True),
        ("*.*", "*", False),
        ("*.*", "#", True),
        ("a.#.b", "a.b", True),
        ("a.*.#", "a", False),
    ],
)
def test_could_overlap(first: str, second: str, expected: bool) -> None:
    assert could_overlap(first, second) is expected
    assert could_overlap(second, first) is expected


# -- a reference matcher and random checks against it -----------------------------------


def reference_match(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    """The definition, recursively: '*' eats one token, '#' eats zero or more."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference_match(rest, topic[i:]) for i in range(len(topic) + 1))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and reference_match(rest, topic[1:])


LITERALS = ["a", "b", "c"]
pattern_tokens = st.lists(st.sampled_from([*LITERALS, "*", "#"]), min_size=1, max_size=5)
topic_tokens = st.lists(st.sampled_from(LITERALS), min_size=1, max_size=6)


def _all_topics(max_length: int) -> list[tuple[str, ...]]:
    alphabet = [*LITERALS, "z"]  # "z" stands for a token no pattern names
    return [
        topic
        for length in range(1, max_length + 1)
        for topic in itertools.product(alphabet, repeat=length)
    ]


SMALL_TOPICS = _all_topics(5)


# no per-example deadline: CI runs on two shared cores, where timing says nothing
RELAXED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=300, **RELAXED)
@given(pattern_tokens, topic_tokens)
def test_matches_agrees_with_the_reference(pattern: list[str], topic: list[str]) -> None:
    assert matches(".".join(pattern), ".".join(topic)) is reference_match(
        tuple(pattern), tuple(topic)
    )


@settings(max_examples=150, **RELAXED)
@given(
    st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=3),
    st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=3),
)
def test_could_overlap_agrees_with_brute_force(first: list[str], second: list[str]) -> None:
    # a witness, if one exists, needs at most len(first) + len(second) - 1 tokens (<= 5)
    a, b = tuple(first), tuple(second)
    witness = any(reference_match(a, t) and reference_match(b, t) for t in SMALL_TOPICS)
    assert could_overlap(".".join(first), ".".join(second)) is witness


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), pattern_tokens),
        st.tuples(st.just("remove"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("match"), topic_tokens),
    ),
    max_size=40,
)


@settings(max_examples=200, **RELAXED)
@given(operations, st.integers(min_value=1, max_value=4))
def test_index_agrees_with_the_reference_across_changes(
    steps: list[tuple[str, Any]], cache_size: int
) -> None:
    index: PatternIndex[int] = PatternIndex(cache_size=cache_size)
    live: dict[int, tuple[str, int]] = {}  # key -> (pattern, item), in registration order
    item = 0
    for op, arg in steps:
        if op == "add":
            pattern = ".".join(arg)
            item += 1
            key = index.add(pattern, item)
            assert key not in live
            live[key] = (pattern, item)
        elif op == "remove" and live:
            key = list(live)[arg % len(live)]
            pattern, _ = live.pop(key)
            assert index.remove(pattern, key) is True
            assert index.remove(pattern, key) is False, "a second removal finds nothing"
        elif op == "match":
            topic = ".".join(arg)
            expected = tuple(
                it for p, it in live.values() if reference_match(tuple(p.split(".")), tuple(arg))
            )
            assert index.match(topic) == expected
            assert index.match(topic) == expected, "the cached answer is the same"
        assert len(index) == len(live)
        assert list(index) == [it for _, it in live.values()]
    for topic in SMALL_TOPICS[:40]:
        expected = tuple(
            it for p, it in live.values() if reference_match(tuple(p.split(".")), topic)
        )
        assert index.match(".".join(topic)) == expected


# -- PatternIndex behaviour -------------------------------------------------------------


def test_index_returns_items_in_registration_order() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("users.#", "any")
    index.add("users.login", "exact")
    index.add("*.login", "star")
    index.add("orders.*", "other")
    assert index.match("users.login") == ("any", "exact", "star")
    assert index.match("orders.new") == ("other",)
    assert index.match("nothing.here") == ()


def test_the_same_item_under_several_patterns_appears_once_per_registration() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("users.#", "h")
    index.add("users.*", "h")
    assert index.match("users.login") == ("h", "h")
    assert index.match("users") == ("h",)


def test_order_function_sorts_stably() -> None:
    index: PatternIndex[tuple[str, int]] = PatternIndex(order=lambda item: -item[1])
    index.add("#", ("low", 0))
    index.add("a", ("high", 5))
    index.add("a", ("low2", 0))
    index.add("*", ("mid", 1))
    assert [name for name, _ in index.match("a")] == ["high", "mid", "low", "low2"]


def test_adding_and_removing_invalidate_cached_results() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("a.*", "first")
    assert index.match("a.b") == ("first",)
    key = index.add("#", "second")
    assert index.match("a.b") == ("first", "second")
    assert index.remove("#", key)
    assert index.match("a.b") == ("first",)


def test_remove_needs_the_right_pattern_and_key() -> None:
    index: PatternIndex[str] = PatternIndex()
    key = index.add("a.b", "x")
    assert index.remove("a.*", key) is False
    assert index.remove("a.b", key + 100) is False
    assert index.remove("zzz", key) is False
    assert index.match("a.b") == ("x",)
    assert index.remove("a.b", key) is True
    assert index.match("a.b") == ()
    assert len(index) == 0


def test_items_for_lists_registrations_under_exactly_that_pattern() -> None:
    index: PatternIndex[str] = PatternIndex()
    k1 = index.add("a.*", "x")
    k2 = index.add("a.*", "y")
    index.add("a.b", "z")
    assert index.items_for("a.*") == [(k1, "x"), (k2, "y")]
    assert index.items_for("a.#") == []
    assert index.items_for("q") == []


def test_removing_prunes_without_disturbing_siblings() -> None:
    index: PatternIndex[str] = PatternIndex()
    deep = index.add("a.b.c.d", "deep")
    index.add("a.b", "short")
    index.add("a.#", "any")
    assert index.remove("a.b.c.d", deep)
    assert index.match("a.b") == ("short", "any")
    assert index.match("a.b.c.d") == ("any",)
    index.add("a.b.c.d", "again")
    assert index.match("a.b.c.d") == ("any", "again")


def test_a_full_cache_stays_bounded_and_correct() -> None:
    index: PatternIndex[str] = PatternIndex(cache_size=3)
    index.add("t.*", "star")
    index.add("t.5", "five")
    for round_ in range(3):
        for n in range(10):
            expected = ("star", "five") if n == 5 else ("star",)
            assert index.match(f"t.{n}") == expected, (round_, n)
            assert len(index._cache) <= 3
    index.add("#", "all")
    assert index.match("t.1") == ("star", "all")
    assert index.match("t.5") == ("star", "five", "all")


def test_matching_cost_does_not_grow_with_non_matching_subscriptions() -> None:
    """Counted in visited trie nodes, not time: unrelated subscriptions are never walked."""
    small: PatternIndex[int] = PatternIndex(cache_size=1)
    large: PatternIndex[int] = PatternIndex(cache_size=1)
    for index in (small, large):
        index.add("users.*", 0)
        index.add("#.failed", 1)
    for n in range(5_000):
        large.add(f"orders{n}.*.x", n)
        large.add(f"svc.{n}.#", n)

    def visits(index: PatternIndex[int]) -> int:
        seen = 0
        original = index._lookup

        class Counting(dict[str, Any]):
            def get(self, key: str, default: Any = None) -> Any:
                nonlocal seen
                seen += 1
                return super().get(key, default)

        def walk(node: Any) -> None:
            node.children = Counting(node.children)
            for child in list(node.children.values()) + [node.one, node.any]:
                if child is not None:
                    walk(child)

        walk(index._root)
        assert original(("users", "login")) == (0,)
        return seen

    assert visits(large) == visits(small)


def test_cache_size_zero_turns_caching_off() -> None:
    index: PatternIndex[str] = PatternIndex(cache_size=0)
    index.add("a.*", "x")
    assert index.match("a.b") == ("x",)
    assert index.match("a.b") == ("x",)
    assert index._cache == {}


@pytest.mark.parametrize(
    ("size", "error"),
    [(-1, ValueError), (1.5, TypeError), ("10", TypeError), (None, TypeError), (True, TypeError)],
)
def test_bad_cache_sizes_are_refused(size: Any, error: type[Exception]) -> None:
    # a size that is no int is a wrong type (docs/errors.md), a negative one a bad value
    with pytest.raises(error, match="cache_size must be an int >= 0") as caught:
        PatternIndex(cache_size=size)
    assert type(caught.value) is error
