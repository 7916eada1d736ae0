"""``tail`` checks every ``--streams``/``--types`` pattern before it reads anything, and
every command names the option (or argument) holding a bad pattern.

It used to exit 0 in silence with an invalid pattern when nothing was read that would
refuse it: an empty store, or ``-n 0``. ``stats``, ``replay`` and ``streams`` refused it.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._errors import CommandError
from pepperpy.event.cli._shell import patterns

from .conftest import Cli


def _error(option: str) -> str:
    """The error naming the option that holds the bad pattern (it used to name none:
    ``invalid pattern 'a..b' at position 2``)."""
    return (
        f"pepperpy-event: error: {option} 'a..b' is not a topic pattern: empty token (two "
        "dots in a row) (at character 2); topics are dot-separated tokens, such as orders.#\n"
    )


async def _one_event(url: str) -> None:
    async with EventStore(url) as store:
        await store.append("a.1", Event("t.x", {}))


def test_tail_refuses_a_bad_pattern_on_an_empty_store(cli: Cli) -> None:
    done = cli("tail", "--streams", "a..b", "--store", "memory://")
    assert (done.code, done.out, done.err) == (1, "", _error("--streams"))


@pytest.mark.parametrize("option", ["--streams", "--types"])
def test_tail_refuses_a_bad_pattern_with_no_lines(cli: Cli, store_url: str, option: str) -> None:
    asyncio.run(_one_event(store_url))
    done = cli("tail", "-n", "0", "--streams", "a.*", option, "a..b", "--store", store_url)
    assert (done.code, done.out, done.err) == (1, "", _error(option))


def test_good_patterns_still_tail(cli: Cli, store_url: str) -> None:
    asyncio.run(_one_event(store_url))
    done = cli("tail", "--streams", "a.*", "--types", "t.#", "--store", store_url)
    assert (done.code, done.lines) == (0, ["0 a.1:0 t.x {}"]), done.err


def test_patterns_checks_each_value() -> None:
    assert patterns((), "--types") is None
    assert patterns(("a.*", "b.#"), "--types") == ["a.*", "b.#"]
    with pytest.raises(CommandError, match="--types 'b..c' is not a topic pattern"):
        patterns(("a.*", "b..c"), "--types")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("streams", ""), "PATTERN is empty: give a topic pattern"),
        (("streams", "a.b*"), "PATTERN 'a.b*' is not a topic pattern"),
        (("stats", "--streams", "x."), "--streams 'x.' is not a topic pattern: trailing dot"),
        (("replay", "--types", ""), "--types is empty: give a topic pattern"),
    ],
)
def test_every_command_names_the_option_of_a_bad_pattern(
    cli: Cli, store_url: str, args: tuple[str, ...], named: str
) -> None:
    asyncio.run(_one_event(store_url))
    done = cli(*args, "--store", store_url)
    assert (done.code, done.out) == (1, ""), done.err
    assert done.err == f"pepperpy-event: error: {named}" + done.err.partition(named)[2]
    assert done.err.count("\n") == 1


def test_count_without_follow_is_a_usage_error(cli: Cli, store_url: str) -> None:
    """``--count`` only stops ``tail -f``: without ``-f`` it was ignored, so ``tail
    --count 2`` printed the last 10 events and exited 0."""
    asyncio.run(_one_event(store_url))
    done = cli("tail", "--count", "2", "--store", store_url)
    assert (done.code, done.out) == (2, ""), done.err
    assert "--count stops tail -f after N new events: give -f too" in done.err
