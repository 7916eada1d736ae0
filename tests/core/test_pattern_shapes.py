"""PatternIndex on topics that carry ids, and the one-call topic check.

A token no registered pattern names literally (an id: ``devices.7f3a.telemetry``) can
only be matched by a wildcard, so topics that differ only in such tokens match alike:
the index walks its trie once per *shape* and caches that, instead of once per topic.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from pepperpy.event import PatternError, PatternIndex, matches
from pepperpy.event._patterns import _tokens


def _counting_walks(index: PatternIndex[Any]) -> list[tuple[str, ...]]:
    """Record every trie walk ``index`` makes from now on."""
    walks: list[tuple[str, ...]] = []
    original = index._lookup

    def lookup(tokens: tuple[str, ...]) -> tuple[Any, ...]:
        walks.append(tokens)
        return original(tokens)

    index._lookup = lookup  # type: ignore[method-assign]
    return walks


def test_topics_differing_only_in_ids_share_one_walk() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("devices.*.telemetry", "telemetry")
    index.add("devices.#", "all")
    index.add("*.*.alarm", "alarms")
    walks = _counting_walks(index)
    for n in range(1_000):
        assert index.match(f"devices.id{n}.telemetry") == ("telemetry", "all")
    assert len(walks) == 1, "one walk for the shape devices.<id>.telemetry"
    assert index.match("devices.id5.alarm") == ("all", "alarms")
    assert index.match("devices.id6.alarm") == ("all", "alarms")
    assert len(walks) == 2
    # the by-topic cache is left to topics made of named tokens only
    assert not any(topic.startswith("devices.id") for topic in index._cache)


def test_a_pattern_naming_an_id_is_seen_once_added_and_forgotten_once_removed() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("devices.*.telemetry", "any device")
    assert index.match("devices.d42.telemetry") == ("any device",)
    key = index.add("devices.d42.#", "d42 only")
    assert index.match("devices.d42.telemetry") == ("any device", "d42 only")
    assert index.match("devices.d43.telemetry") == ("any device",)
    assert index.remove("devices.d42.#", key)
    assert index.match("devices.d42.telemetry") == ("any device",)
    assert index._literals == {"devices": 1, "telemetry": 1}


def test_a_token_named_twice_stays_named_until_both_are_removed() -> None:
    index: PatternIndex[str] = PatternIndex()
    first = index.add("a.x", "first")
    second = index.add("x.#", "second")
    assert index.match("a.x") == ("first",)
    assert index.remove("a.x", first)
    assert index._literals == {"x": 1}
    assert index.match("x.a") == ("second",)
    assert index.remove("x.#", second)
    assert index._literals == {}
    assert index.match("x.a") == ()


def test_the_shape_cache_is_bounded_and_can_be_turned_off() -> None:
    bounded: PatternIndex[int] = PatternIndex(cache_size=3)
    bounded.add("#.end", 1)
    for n in range(10):
        assert bounded.match(".".join(f"t{n}" for _ in range(n + 1)) + ".end") == (1,)
        assert len(bounded._shapes) <= 3
    off: PatternIndex[int] = PatternIndex(cache_size=0)
    off.add("a.*", 1)
    assert off.match("a.id1") == (1,)
    assert off._shapes == {}


def test_matching_by_shape_agrees_with_matches_on_every_pattern() -> None:
    patterns = ["a.*.c", "a.#", "#.c", "*.b.*", "a.b.c", "*.*", "#", "x.#.c", "*.#.*.c"]
    index: PatternIndex[str] = PatternIndex(cache_size=8)
    for pattern in patterns:
        index.add(pattern, pattern)
    tokens = ["a", "b", "c", "x", "id1", "id2"]
    for first in tokens:
        for second in tokens:
            for third in [*tokens, None]:
                topic = ".".join(t for t in (first, second, third) if t is not None)
                expected = tuple(p for p in patterns if matches(p, topic))
                assert index.match(topic) == expected, topic


def _valid_alone(char: str) -> bool:
    """The character rules of docs/patterns.md, written out one by one."""
    return not (
        char in "*#"
        or char.isspace()
        or char < " "
        or char == "\x7f"
        or "\ud800" <= char <= "\udfff"
    )


def test_the_one_call_topic_check_follows_the_character_rules() -> None:
    for code in [*range(0x10000), *range(0x10000, sys.maxunicode + 1, 97)]:
        char = chr(code)
        topic = f"a{char}b"
        if char == ".":
            assert _tokens(topic, wildcards=False) == ("a", "b")
        elif _valid_alone(char):
            assert _tokens(topic, wildcards=False) == (topic,), hex(code)
        else:
            with pytest.raises(PatternError) as caught:
                _tokens(topic, wildcards=False)
            assert caught.value.position == 1, hex(code)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("a..b", "empty token"),
        (".a", "leading dot"),
        ("a.", "trailing dot"),
        ("a.*", "wildcard '*' is not allowed in a topic"),
        ("a b", "whitespace"),
        ("", "empty"),
    ],
)
def test_malformed_topics_still_name_what_is_wrong(topic: str, reason: str) -> None:
    with pytest.raises(PatternError, match=re.escape(reason)):
        _tokens(topic, wildcards=False)


def test_long_topics_are_measured_in_bytes() -> None:
    assert _tokens("a" * 300 + ".b", wildcards=False) == ("a" * 300, "b")
    with pytest.raises(PatternError, match="whitespace"):
        _tokens("a" * 300 + " b", wildcards=False)
    assert len(_tokens("é" * 500, wildcards=False)[0]) == 500  # 1,000 bytes: allowed
    with pytest.raises(PatternError, match="longer than 1024 bytes"):
        _tokens("€" * 400, wildcards=False)  # 1,200 bytes
