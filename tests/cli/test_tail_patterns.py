"""``tail`` checks every ``--streams``/``--types`` pattern before it reads anything.

It used to exit 0 in silence with an invalid pattern when nothing was read that would
refuse it: an empty store, or ``-n 0``. ``stats``, ``replay`` and ``streams`` refused it.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventStore, PatternError
from pepperpy.event.cli._shell import patterns

from .conftest import Cli

ERROR = (
    "pepperpy-event: error: invalid pattern 'a..b' at position 2: empty token (two dots in a row)\n"
)


async def _one_event(url: str) -> None:
    async with EventStore(url) as store:
        await store.append("a.1", Event("t.x", {}))


def test_tail_refuses_a_bad_pattern_on_an_empty_store(cli: Cli) -> None:
    done = cli("tail", "--streams", "a..b", "--store", "memory://")
    assert (done.code, done.out, done.err) == (1, "", ERROR)


@pytest.mark.parametrize("option", ["--streams", "--types"])
def test_tail_refuses_a_bad_pattern_with_no_lines(cli: Cli, store_url: str, option: str) -> None:
    asyncio.run(_one_event(store_url))
    done = cli("tail", "-n", "0", "--streams", "a.*", option, "a..b", "--store", store_url)
    assert (done.code, done.out, done.err) == (1, "", ERROR)


def test_good_patterns_still_tail(cli: Cli, store_url: str) -> None:
    asyncio.run(_one_event(store_url))
    done = cli("tail", "--streams", "a.*", "--types", "t.#", "--store", store_url)
    assert (done.code, done.lines) == (0, ["0 a.1:0 t.x {}"]), done.err


def test_patterns_checks_each_value() -> None:
    assert patterns(()) is None
    assert patterns(("a.*", "b.#")) == ["a.*", "b.#"]
    with pytest.raises(PatternError, match="'b..c' at position 2"):
        patterns(("a.*", "b..c"))
