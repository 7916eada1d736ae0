"""In-process dispatch and topic routing, side by side with pyee, blinker and psygnal.

Run: ``python -m benchmarks.bench_dispatch`` (``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import blinker
import psygnal
import pyee
import pyee.asyncio
from paho.mqtt.matcher import MQTTMatcher

from benchmarks._harness import Result, Runner, compare, machine, table
from pepperpy.event import Event, EventManager, PatternIndex

PAYLOAD = {"id": "123", "name": "John"}


# -- contenders ---------------------------------------------------------------------------


def _async_handlers(count: int) -> list[Callable[[Any], Any]]:
    """``count`` distinct async handlers that do nothing (registering one function ten
    times would be one handler for pyee, which keys its handlers by function)."""

    def make() -> Callable[[Any], Any]:
        async def handler(event: Any) -> None:
            return None

        return handler

    return [make() for _ in range(count)]


def _sync_handlers(count: int) -> list[Callable[[Any], Any]]:
    """``count`` distinct sync handlers that do nothing."""

    def make() -> Callable[[Any], Any]:
        def handler(event: Any) -> None:
            return None

        return handler

    return [make() for _ in range(count)]


def _bare_async(handlers: list[Callable[[Any], Any]]) -> Runner:
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            for handler in handlers:
                await handler(event)
        return time.perf_counter() - start

    return run


def _pepperpy_prebuilt(handlers: list[Callable[[Any], Any]]) -> Runner:
    manager = EventManager()
    for handler in handlers:
        manager.on("user.created", handler)
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        emit = manager.emit
        start = time.perf_counter()
        for _ in range(n):
            await emit(event)
        return time.perf_counter() - start

    return run


def _pepperpy_full(handlers: list[Callable[[Any], Any]]) -> Runner:
    manager = EventManager()
    for handler in handlers:
        manager.on("user.created", handler)

    async def run(n: int) -> float:
        emit = manager.emit
        start = time.perf_counter()
        for _ in range(n):
            await emit("user.created", {"id": "123", "name": "John"})
        return time.perf_counter() - start

    return run


def _blinker_async(handlers: list[Callable[[Any], Any]], *, full: bool = False) -> Runner:
    signal = blinker.Signal()
    receivers = []
    for handler in handlers:

        async def receiver(sender: Any, handler: Callable[[Any], Any] = handler, **kw: Any) -> None:
            await handler(sender)

        receivers.append(receiver)  # keep strong references
        signal.connect(receiver, weak=False)
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        send = signal.send_async
        start = time.perf_counter()
        if full:
            for _ in range(n):
                await send({"id": "123", "name": "John"})
        else:
            for _ in range(n):
                await send(event)
        return time.perf_counter() - start

    return run


def _pyee_async(handlers: list[Callable[[Any], Any]], *, full: bool = False) -> Runner:
    emitter = pyee.asyncio.AsyncIOEventEmitter()
    for handler in handlers:
        emitter.on("user.created", handler)
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            emitter.emit("user.created", {"id": "123", "name": "John"} if full else event)
            if i % 100 == 99:
                await asyncio.sleep(0)
        await emitter.wait_for_complete()
        return time.perf_counter() - start

    return run


def _queue_consumer() -> Runner:
    async def run(n: int) -> float:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        event = Event("user.created", PAYLOAD)
        seen = 0

        async def consume() -> None:
            nonlocal seen
            while seen < n:
                await queue.get()
                seen += 1

        start = time.perf_counter()
        consumer = asyncio.ensure_future(consume())
        for _ in range(n):
            queue.put_nowait(event)
        await consumer
        return time.perf_counter() - start

    return run


def _sync_bare(handlers: list[Callable[[Any], Any]]) -> Runner:
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            for handler in handlers:
                handler(event)
        return time.perf_counter() - start

    return run


def _pepperpy_sync(handlers: list[Callable[[Any], Any]]) -> Runner:
    return _pepperpy_prebuilt(handlers)


def _pyee_sync(handlers: list[Callable[[Any], Any]]) -> Runner:
    emitter = pyee.EventEmitter()
    for handler in handlers:
        emitter.on("user.created", handler)
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            emitter.emit("user.created", event)
        return time.perf_counter() - start

    return run


def _blinker_sync(handlers: list[Callable[[Any], Any]]) -> Runner:
    signal = blinker.Signal()
    receivers = []
    for handler in handlers:

        def receiver(sender: Any, handler: Callable[[Any], Any] = handler, **kw: Any) -> None:
            handler(sender)

        receivers.append(receiver)
        signal.connect(receiver, weak=False)
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            signal.send(event)
        return time.perf_counter() - start

    return run


class _Emitter(psygnal.SignalGroup):
    created = psygnal.Signal(object)


def _psygnal_sync(handlers: list[Callable[[Any], Any]]) -> Runner:
    emitter = _Emitter()
    for handler in handlers:
        emitter.created.connect(handler)
    event = Event("user.created", PAYLOAD)

    async def run(n: int) -> float:
        emit = emitter.created.emit
        start = time.perf_counter()
        for _ in range(n):
            emit(event)
        return time.perf_counter() - start

    return run


# -- routing ------------------------------------------------------------------------------


def _routing_workload(count: int, seed: int = 7) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(30)]
    patterns = []
    for _ in range(count):
        tokens = [rng.choice(words) for _ in range(rng.randint(2, 4))]
        for i in range(len(tokens)):
            if rng.random() < 0.25:
                tokens[i] = "*"
        if rng.random() < 0.3:
            tokens.append("#")
        patterns.append(".".join(tokens))
    topics = [".".join(rng.choice(words) for _ in range(rng.randint(2, 5))) for _ in range(2000)]
    return patterns, topics


def _id_topics(count: int, seed: int = 11) -> list[str]:
    """``count`` distinct topics ``<word>.<id>.<word>`` (``w3.d0001f2.w7``) over the words of
    :func:`_routing_workload`, the first of 10, the last of 30: every lookup is a topic
    never seen, of one of 300 shapes (an entity's events: ``orders.<id>.created``)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(30)]
    return [f"{rng.choice(words[:10])}.d{n:07x}.{rng.choice(words)}" for n in range(count)]


def _routing(kind: str, patterns: list[str], topics: list[str]) -> Runner:
    if kind == "paho":
        matcher = MQTTMatcher()
        for i, pattern in enumerate(patterns):
            matcher[pattern.replace(".", "/").replace("*", "+")] = i
        mqtt_topics = [t.replace(".", "/") for t in topics]

        async def run(n: int) -> float:
            start = time.perf_counter()
            for i in range(n):
                for _ in matcher.iter_match(mqtt_topics[i % len(mqtt_topics)]):
                    pass
            return time.perf_counter() - start

        return run
    index: PatternIndex[int] = PatternIndex(cache_size=4096 if kind == "cached" else 1)
    for i, pattern in enumerate(patterns):
        index.add(pattern, i)

    async def run_index(n: int) -> float:
        match = index.match
        start = time.perf_counter()
        for i in range(n):
            for _ in match(topics[i % len(topics)]):
                pass
        return time.perf_counter() - start

    return run_index


# -- report -------------------------------------------------------------------------------


async def main(quick: bool = False) -> str:
    n = 20_000 if quick else 200_000
    passes = 3 if quick else 5

    one = _async_handlers(1)
    ten = _async_handlers(10)  # ten distinct functions: pyee keeps one registration per function
    sections = [f"## In-process dispatch and routing\n\nMachine: {machine()}.\n"]

    async def section(title: str, baseline: str, contenders: dict[str, Runner], ops: int) -> None:
        results: list[Result] = await compare(contenders, operations=ops, passes=passes)
        sections.append(f"### {title}\n\n{table(results, baseline=baseline, unit='events/s')}\n")

    await section(
        "Async dispatch, 1 handler, pre-built event",
        "pepperpy emit(event)",
        {
            "bare `await h(e)` loop": _bare_async(one),
            "pepperpy emit(event)": _pepperpy_prebuilt(one),
            "blinker send_async": _blinker_async(one),
            "asyncio.Queue + 1 consumer": _queue_consumer(),
            "pyee AsyncIOEventEmitter": _pyee_async(one),
        },
        n,
    )
    await section(
        "Async dispatch, 10 handlers, pre-built event",
        "pepperpy emit(event)",
        {
            "bare loop": _bare_async(ten),
            "pepperpy emit(event)": _pepperpy_prebuilt(ten),
            "blinker send_async": _blinker_async(ten),
            "pyee AsyncIOEventEmitter": _pyee_async(ten),
        },
        n // 10,
    )
    await section(
        "Full emit(type, data) including building the Event, 1 async handler",
        "pepperpy emit(type, data)",
        {
            "pepperpy emit(type, data)": _pepperpy_full(one),
            "blinker send_async(data)": _blinker_async(one, full=True),
            "pyee AsyncIOEventEmitter.emit(type, data)": _pyee_async(one, full=True),
        },
        n,
    )
    for count, handlers in (("1 handler", _sync_handlers(1)), ("10 handlers", _sync_handlers(10))):
        await section(
            f"Sync dispatch, {count}",
            "pepperpy emit(event)",
            {
                "bare loop": _sync_bare(handlers),
                "pepperpy emit(event)": _pepperpy_sync(handlers),
                "pyee EventEmitter": _pyee_sync(handlers),
                "blinker send": _blinker_sync(handlers),
                "psygnal emit": _psygnal_sync(handlers),
            },
            n if len(handlers) == 1 else n // 10,
        )
    patterns, topics = _routing_workload(1000)
    await section(
        "Routing: 1,000 wildcard subscriptions, lookups with all matches",
        "paho MQTTMatcher.iter_match",
        {
            "paho MQTTMatcher.iter_match": _routing("paho", patterns, topics),
            "pepperpy PatternIndex (cache of 4,096 topics)": _routing("cached", patterns, topics),
            "pepperpy PatternIndex (cache disabled: trie walk)": _routing(
                "uncached", patterns, topics
            ),
        },
        n // 4,
    )
    id_topics = _id_topics(n // 4)
    await section(
        "Routing: 1,000 wildcard subscriptions, topics carrying ids (each topic new)",
        "paho MQTTMatcher.iter_match",
        {
            "paho MQTTMatcher.iter_match": _routing("paho", patterns, id_topics),
            "pepperpy PatternIndex (cache of 4,096 topics)": _routing(
                "cached", patterns, id_topics
            ),
        },
        n // 4,
    )
    return "\n".join(sections)


if __name__ == "__main__":
    print(asyncio.run(main(quick="--quick" in sys.argv)))
