"""Model-based test of EventManager (SPEC section 3) against a small pure-Python model.

Hypothesis generates random programs and runs each against a real ``EventManager`` and
against the model below, which knows nothing of the implementation (it has its own
pattern matcher). A program is a manager configuration (``max_listeners``,
``buffer_size``, a ``RetryPolicy`` with ``base_delay=0``) and handler behaviours, then
steps:

- ``on``/``once`` with a pattern over a small alphabet (``a``, ``b``, ``*``, ``#``) and a
  priority; ``ListenerLimitError`` exactly when the model says the pattern is full;
- ``off`` (``True`` exactly when the model had such a registration), also from inside an
  async handler during an emit (the running emit keeps its list);
- ``emit`` of one to three events concurrently (``asyncio.gather``; with a
  ``buffer_size`` they exercise backpressure): which handlers ran, in which order the
  first attempts *started* (priority, then registration order), every call finished
  before ``emit`` returned, ``once`` handlers claimed exactly once (by the first racing
  emit whose type matches), failures retried per the policy and dead-lettered with the
  right ``attempts``, both ``on_error`` callbacks (one sync, one async that yields) done
  before ``emit`` returned, and ``manager.dead_letters``;
- a burst of ``emit_nowait`` calls then ``drain()``: ``BufferFullError`` exactly when the
  model's buffer is full, every accepted event delivered as above, its future resolved
  to it, and nothing left in flight;
- the same burst while one to three awaited ``emit("z")`` calls hold buffer slots (an
  extra "gate" handler keeps them running; ``in_flight`` is checked), so the buffer is
  shared between ``emit`` and ``emit_nowait`` and blocked emits wait their turn.

Deliberate limits of the model: ``off`` inside a handler is only exercised by a lone
emit (with racing emits, which of them still sees the removed handler depends on
scheduling the SPEC leaves open); a handler that fails a few times before succeeding has
one live registration at a time (its failures are counted per event); delays are 0,
cancellation and ``close()`` are left to the regular tests in tests/core/test_manager.py.

Handlers are sync, async (yielding to the loop a few times) or sync returning a
coroutine (which the manager must await), and succeed,
always raise, raise a given number of times then succeed, or call ``off``. Exceptions
are ``ConnectionError`` (retried) or ``ValueError`` (not in ``retry_on``: one attempt).

In CI the run is derandomized with 1,000 examples (about 5 s). For a longer local hunt:

    PEPPERPY_MANAGER_MODEL_EXAMPLES=2000 pytest tests/core/test_manager_model.py

(``PEPPERPY_MANAGER_MODEL_STEPS`` raises the number of steps per program, default 25.)
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import (
    BufferFullError,
    ClosedError,
    DeadLetter,
    Event,
    EventManager,
    ListenerLimitError,
    RetryPolicy,
)

EXAMPLES = int(os.environ.get("PEPPERPY_MANAGER_MODEL_EXAMPLES", "0"))
STEPS = int(os.environ.get("PEPPERPY_MANAGER_MODEL_STEPS", "25"))
HANDLERS = 6
GATE = HANDLERS  # the index of the gate handler

# -- the model --------------------------------------------------------------------------


def model_matches(pattern: list[str], topic: list[str]) -> bool:
    """``*`` is one token, ``#`` zero or more, anything else itself."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(model_matches(rest, topic[i:]) for i in range(len(topic) + 1))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and model_matches(rest, topic[1:])


@dataclass(frozen=True)
class Behaviour:
    is_async: bool
    kind: str  # "ok", "always", "fail" (``times`` failures, then success), "off", "gate"
    exc: type[Exception] = ConnectionError
    times: int = 0
    target_pattern: str = ""
    target: int = 0
    yields: int = 1
    returns_awaitable: bool = False  # a sync handler returning a coroutine (not async)


@dataclass(eq=False)
class Registration:
    pattern: str
    handler: int
    once: bool
    priority: int
    sequence: int


@dataclass
class Model:
    max_listeners: int | None
    buffer_size: int | None
    max_attempts: int
    behaviours: list[Behaviour]
    registrations: list[Registration] = field(default_factory=list)

    def due(self, topic: str) -> list[Registration]:
        found = [
            r for r in self.registrations if model_matches(r.pattern.split("."), topic.split("."))
        ]
        return sorted(found, key=lambda r: (-r.priority, r.sequence))

    def can_add(self, pattern: str) -> bool:
        if self.max_listeners is None:
            return True
        return sum(r.pattern == pattern for r in self.registrations) < self.max_listeners

    def off(self, pattern: str, handler: int) -> bool:
        keep = [
            r for r in self.registrations if not (r.pattern == pattern and r.handler == handler)
        ]
        removed = len(keep) != len(self.registrations)
        self.registrations = keep
        return removed

    def claim(self, topic: str) -> list[Registration]:
        """Start delivering ``topic``: its handler list, with ``once`` ones removed."""
        due = self.due(topic)
        self.registrations = [r for r in self.registrations if not (r.once and r in due)]
        return due

    def outcome(self, handler: int) -> tuple[int, int | None, type[Exception] | None]:
        """(calls, dead-letter attempts or None, exception type) of one delivery."""
        b = self.behaviours[handler]
        retryable = issubclass(b.exc, ConnectionError)
        limit = self.max_attempts if retryable else 1
        if b.kind == "always":
            return limit, limit, b.exc
        if b.kind == "fail" and b.times >= limit:
            return limit, limit, b.exc
        if b.kind == "fail":
            return b.times + 1, None, None
        return 1, None, None

    def run_offs(self, due: list[Registration]) -> list[bool]:
        """What the ``off`` calls of the handlers in ``due`` return, in start order."""
        results = []
        for r in due:
            b = self.behaviours[r.handler]
            if b.kind == "off":
                results.append(self.off(b.target_pattern, b.target))
        return results


# -- the programs -----------------------------------------------------------------------

# a few patterns often (so registrations pile up under one and max_listeners is reached),
# any pattern over the alphabet sometimes
patterns = st.one_of(
    st.sampled_from(["a", "*", "#", "a.*", "a.#", "#.b", "*.b", "a.b"]),
    st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=3).map(".".join),
)
topics = st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3).map(".".join)
exceptions = st.sampled_from([ConnectionError, ValueError])

behaviours = st.one_of(
    st.builds(
        Behaviour,
        st.booleans(),
        st.just("ok"),
        yields=st.integers(0, 6),
        returns_awaitable=st.booleans(),
    ),
    st.builds(
        Behaviour,
        st.booleans(),
        st.just("always"),
        exceptions,
        yields=st.integers(0, 6),
        returns_awaitable=st.booleans(),
    ),
    st.builds(
        Behaviour,
        st.booleans(),
        st.just("fail"),
        exceptions,
        st.integers(1, 3),
        yields=st.integers(0, 6),
        returns_awaitable=st.booleans(),
    ),
    st.builds(
        Behaviour,
        st.just(True),
        st.just("off"),
        target_pattern=patterns,
        target=st.integers(0, HANDLERS - 1),
        yields=st.integers(0, 6),
    ),
)

policies = st.tuples(st.sampled_from(["fixed", "linear", "exponential"]), st.integers(1, 3))

on_step = st.tuples(
    st.just("on"),
    patterns,
    st.integers(0, HANDLERS - 1),
    st.booleans(),
    st.integers(-2, 2),
)
step = st.one_of(
    on_step,
    on_step,  # twice as likely: emits then reach several handlers
    st.tuples(st.just("off"), patterns, st.integers(0, HANDLERS - 1)),
    st.tuples(st.just("emit"), st.lists(topics, min_size=1, max_size=3)),
    st.tuples(st.just("burst"), st.lists(topics, min_size=1, max_size=5)),
    st.tuples(st.just("held"), st.integers(1, 3), st.lists(topics, min_size=1, max_size=4)),
)


def _policy(kind: str, attempts: int) -> RetryPolicy:
    retry_on = (ConnectionError,)
    if kind == "fixed":
        return RetryPolicy.fixed(attempts, base_delay=0, retry_on=retry_on)
    if kind == "linear":
        return RetryPolicy.linear(attempts, base_delay=0, max_delay=0, retry_on=retry_on)
    return RetryPolicy.exponential(attempts, base_delay=0, max_delay=0, retry_on=retry_on)


@settings(
    max_examples=EXAMPLES or 1000,
    derandomize=not EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.sampled_from([None, 1, 2, 3]),
    st.sampled_from([None, 1, 2, 3]),
    policies,
    st.lists(behaviours, min_size=HANDLERS, max_size=HANDLERS),
    st.lists(step, min_size=4, max_size=STEPS),
)
def test_manager_agrees_with_the_model(
    max_listeners: int | None,
    buffer_size: int | None,
    policy: tuple[str, int],
    handler_behaviours: list[Behaviour],
    steps: list[tuple[Any, ...]],
) -> None:
    asyncio.run(_run(max_listeners, buffer_size, policy, handler_behaviours, steps))


class Harness:
    """The real manager, its instrumented handlers and what they observed."""

    def __init__(self, manager: EventManager, behaviours: list[Behaviour]) -> None:
        self.manager = manager
        self.behaviours = behaviours
        self.starts: dict[str, list[int]] = defaultdict(list)
        self.finished: Counter[str] = Counter()
        self.calls: Counter[tuple[str, int]] = Counter()
        self.off_results: dict[str, list[bool]] = defaultdict(list)
        self.letters_sync: list[DeadLetter] = []
        self.letters_async: list[DeadLetter] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.gate_entries = 0
        self.handlers = [self._make(n) for n in range(len(behaviours))]

        manager.on_error(self.letters_sync.append)

        @manager.on_error
        async def slow_callback(letter: DeadLetter) -> None:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self.letters_async.append(letter)

    def _make(self, number: int) -> Any:
        b = self.behaviours[number]

        def begin(event: Event) -> int:
            self.starts[event.id].append(number)
            self.calls[(event.id, number)] += 1
            return self.calls[(event.id, number)]

        def act(event: Event, attempt: int) -> None:
            if b.kind == "always" or (b.kind == "fail" and attempt <= b.times):
                raise b.exc(f"handler {number} attempt {attempt}")

        if b.kind == "gate":

            async def gate(event: Event) -> None:
                begin(event)
                try:
                    await self.gate.wait()
                finally:
                    self.finished[event.id] += 1

            return gate

        if b.is_async:

            async def handler(event: Event) -> None:
                attempt = begin(event)
                try:
                    if b.kind == "off":
                        removed = await self.manager.off(b.target_pattern, self.handlers[b.target])
                        self.off_results[event.id].append(removed)
                    for _ in range(b.yields):
                        await asyncio.sleep(0)
                    act(event, attempt)
                finally:
                    self.finished[event.id] += 1

            return handler

        if b.returns_awaitable:

            def returning(event: Event) -> Any:
                attempt = begin(event)

                async def rest() -> None:
                    try:
                        for _ in range(b.yields):
                            await asyncio.sleep(0)
                        act(event, attempt)
                    finally:
                        self.finished[event.id] += 1

                return rest()

            return returning

        def sync_handler(event: Event) -> None:
            attempt = begin(event)
            try:
                act(event, attempt)
            finally:
                self.finished[event.id] += 1

        return sync_handler

    def check_delivery(self, model: Model, event: Event, due: list[Registration]) -> None:
        """``event`` was delivered to ``due``: compare everything observed with the model."""
        eid = event.id
        label = (event.type, [(r.pattern, r.handler, r.priority, r.once) for r in due])
        # first attempts start in priority order; retries come after them
        assert self.starts[eid][: len(due)] == [r.handler for r in due], label
        expected_calls: Counter[int] = Counter()
        expected_letters: list[tuple[int, int, type[Exception]]] = []
        for r in due:
            calls, attempts, exc = model.outcome(r.handler)
            expected_calls[r.handler] += calls
            if attempts is not None:
                assert exc is not None
                expected_letters.append((r.handler, attempts, exc))
        assert Counter(self.starts[eid]) == expected_calls, label
        # every call finished before emit returned (or before drain returned)
        assert self.finished[eid] == len(self.starts[eid]), label
        for letters in (self.letters_sync, self.letters_async, list(self.manager.dead_letters)):
            mine = [
                (self.handlers.index(d.handler), d.attempts, type(d.exception))
                for d in letters
                if d.event is event
            ]
            assert sorted(mine, key=repr) == sorted(expected_letters, key=repr), label


async def _run(
    max_listeners: int | None,
    buffer_size: int | None,
    policy: tuple[str, int],
    handler_behaviours: list[Behaviour],
    steps: list[tuple[Any, ...]],
) -> None:
    manager = EventManager(
        max_listeners=max_listeners, buffer_size=buffer_size, retry_policy=_policy(*policy)
    )
    # one more handler, outside the generated ones: it holds "z" events (and their
    # buffer slots) until its gate opens; "z" is no generated pattern, "*" and "#" match it
    behaviours = [*handler_behaviours, Behaviour(True, "gate")]
    harness = Harness(manager, behaviours)
    handlers = harness.handlers
    model = Model(max_listeners, buffer_size, policy[1], behaviours)
    manager.on("z", handlers[GATE])
    model.registrations.append(Registration("z", GATE, False, 0, -1))

    def reaches_off(topic: str) -> bool:
        return any(model.behaviours[r.handler].kind == "off" for r in model.due(topic))

    for sequence, (op, *args) in enumerate(steps):
        if op == "on":
            pattern, number, once, priority = args
            b = model.behaviours[number]
            if b.kind == "fail" and any(r.handler == number for r in model.registrations):
                # its failures are counted per (event, handler): one registration at a time
                continue
            if model.can_add(pattern):
                manager.on(pattern, handlers[number], once=once, priority=priority)
                model.registrations.append(Registration(pattern, number, once, priority, sequence))
            else:
                try:
                    manager.on(pattern, handlers[number], once=once, priority=priority)
                except ListenerLimitError:
                    pass
                else:
                    raise AssertionError(f"{pattern!r} is full: expected ListenerLimitError")
        elif op == "off":
            pattern, number = args
            assert await manager.off(pattern, handlers[number]) is model.off(pattern, number)
        elif op == "emit":
            (types,) = args
            if any(reaches_off(t) for t in types):
                types = types[:1]  # off inside a handler: one emit at a time
            dues = [model.claim(t) for t in types]
            expected_offs = [model.run_offs(due) for due in dues]
            events = await asyncio.gather(*(manager.emit(t, {"n": sequence}) for t in types))
            assert manager.in_flight == 0
            for event, due, offs in zip(events, dues, expected_offs, strict=True):
                harness.check_delivery(model, event, due)
                assert harness.off_results[event.id] == offs
        else:
            if op == "held":
                count, types = args
                if reaches_off("z"):
                    continue
            else:
                count, types = 0, args[0]
            types = [t for t in types if not reaches_off(t)]
            # ``count`` awaited emits of "z" hold their slots (those that got one) until
            # the gate opens; meanwhile emit_nowait meets a fuller buffer
            harness.gate.clear()
            held = [model.claim("z") for _ in range(count)]
            holders = [asyncio.ensure_future(manager.emit("z")) for _ in range(count)]
            holding = count if buffer_size is None else min(count, buffer_size)
            for _ in range(200):
                if sum(n == GATE for starts in harness.starts.values() for n in starts) >= (
                    harness.gate_entries + holding
                ):
                    break
                await asyncio.sleep(0)
            else:
                raise AssertionError("the holding emits did not start")
            harness.gate_entries += holding
            if buffer_size is not None:
                assert manager.in_flight == holding
            accepted: list[tuple[asyncio.Future[Event], list[Registration]]] = []
            for t in types:
                if buffer_size is not None and holding + len(accepted) >= buffer_size:
                    try:
                        manager.emit_nowait(t, {"n": sequence})
                    except BufferFullError:
                        continue
                    raise AssertionError("expected BufferFullError")
                future = manager.emit_nowait(t, {"n": sequence})
                accepted.append((future, model.claim(t)))
            harness.gate.set()
            held_events = await asyncio.gather(*holders)
            harness.gate_entries += count - holding
            await manager.drain()
            assert manager.in_flight == 0
            for event, due in zip(held_events, held, strict=True):
                harness.check_delivery(model, event, due)
            for future, due in accepted:
                assert future.done()
                harness.check_delivery(model, future.result(), due)
        for topic in ["a", "b", "a.b", "b.a", "a.a.b"]:
            assert manager.handlers(topic) == [handlers[r.handler] for r in model.due(topic)]

    await manager.close()
    try:
        await manager.emit("a")
    except ClosedError:
        pass
    else:
        raise AssertionError("a closed manager accepted an emit")
