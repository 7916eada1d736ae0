"""Stream names and event types that hold invisible, C1 or bidi characters.

The store takes them (only C0 controls are refused in names), and the command printed
them raw: ``role.gran\\u200bted`` looked exactly like ``role.granted``, and a C1 control
(U+009B, CSI) or a bidi override (U+202E) went to the terminal as it was.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pepperpy.event import Event, EventStore, EventValidator
from pepperpy.event.cli._output import global_line, stream_line
from pepperpy.event.cli._validate import check_store

from .conftest import Cli

ZWSP, BIDI, CSI = "\u200b", "\u202e", "\x9b"
UNSAFE = (ZWSP, BIDI, CSI)


async def _fill(url: str) -> None:
    async with EventStore(url) as store:
        await store.append("user.1", Event("role.granted", {"role": "admin"}))
        await store.append("user.1", Event(f"role.gran{ZWSP}ted", {"role": "admin"}))
        await store.append(f"user{BIDI}.1", Event(f"x{CSI}2J", {}))


def test_tail_prints_unsafe_names_and_types_escaped(cli: Cli, store_url: str) -> None:
    asyncio.run(_fill(store_url))
    done = cli("tail", "--store", store_url)
    assert done.code == 0, done.err
    assert not any(char in done.out for char in UNSAFE), ascii(done.out)
    assert done.lines == [
        '0 user.1:0 role.granted {"role":"admin"}',
        '1 user.1:1 "role.gran\\u200bted" {"role":"admin"}',
        '2 "user\\u202e.1":0 "x\\u009b2J" {}',
    ]
    read = cli("read", f"user{BIDI}.1", "--store", store_url)
    assert read.code == 0, read.err
    assert read.lines == ['0 "x\\u009b2J" {}']


@pytest.mark.parametrize("char", UNSAFE)
async def test_lines_quote_an_unsafe_stream_or_type(char: str) -> None:
    store = EventStore()
    await store.append(f"s{char}.1", Event(f"t{char}", {"k": 1}))
    [event] = await store.read_all(0)
    assert char not in global_line(event) and char not in stream_line(event)
    escaped = ascii(char)[1:-1].replace("\\x", "\\u00")
    assert global_line(event) == f'0 "s{escaped}.1":0 "t{escaped}" {{"k":1}}'
    assert stream_line(event) == f'0 "t{escaped}" {{"k":1}}'


async def test_plain_names_are_printed_as_they_are() -> None:
    store = EventStore()
    await store.append("shop.order.o1-1", Event("order.placed", {"amount": 5}))
    [event] = await store.read_all(0)
    assert global_line(event) == '0 shop.order.o1-1:0 order.placed {"amount":5}'
    assert stream_line(event) == '0 order.placed {"amount":5}'


async def test_validate_names_an_invalid_event_escaped(tmp_path: Path) -> None:
    store = EventStore()
    await store.append(f"user{BIDI}.1", Event(f"user{ZWSP}.created", {}))
    validator = EventValidator()
    validator.register(f"user{ZWSP}.created", {"type": "object", "required": ["name"]})
    said: list[str] = []
    found = await check_store(store, validator, None, None, said.append)
    assert (found.checked, found.invalid) == (1, 1)
    [line] = said
    assert not any(char in line for char in UNSAFE), ascii(line)
    assert line.startswith('0 "user\\u202e.1":0 "user\\u200b.created": '), ascii(line)
