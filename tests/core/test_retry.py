"""RetryPolicy: presets, constructors, the delay schedules of SPEC section 4, validation."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from pepperpy.event import EventBus, EventManager, RetryPolicy


def test_presets() -> None:
    assert RetryPolicy.NONE.max_attempts == 1
    assert list(RetryPolicy.NONE.delays()) == []
    assert RetryPolicy.FIXED.max_attempts == 3
    assert list(RetryPolicy.FIXED.delays()) == [1.0, 1.0]
    assert RetryPolicy.LINEAR.max_attempts == 3
    assert list(RetryPolicy.LINEAR.delays()) == [1.0, 2.0]
    exp = RetryPolicy.EXPONENTIAL
    assert (exp.max_attempts, exp.base_delay, exp.max_delay, exp.jitter) == (5, 0.1, 30.0, True)
    for _ in range(50):
        delays = list(exp.delays())
        assert len(delays) == 4
        for n, delay in enumerate(delays, start=1):
            assert 0.1 <= delay <= min(30.0, 0.1 * 2 ** (n - 1))


def test_presets_are_immutable_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy.FIXED.max_attempts = 10  # type: ignore[misc]
    assert RetryPolicy.fixed() == RetryPolicy.FIXED
    assert hash(RetryPolicy.fixed()) == hash(RetryPolicy.FIXED)
    assert RetryPolicy.none() == RetryPolicy.NONE


def test_fixed_schedule() -> None:
    policy = RetryPolicy.fixed(max_attempts=4, base_delay=0.25)
    assert list(policy.delays()) == [0.25, 0.25, 0.25]


def test_linear_schedule_grows_by_base_and_is_capped() -> None:
    policy = RetryPolicy.linear(max_attempts=6, base_delay=1.5, max_delay=5.0)
    assert list(policy.delays()) == [1.5, 3.0, 4.5, 5.0, 5.0]


def test_exponential_schedule_without_jitter() -> None:
    policy = RetryPolicy.exponential(max_attempts=8, base_delay=0.1, max_delay=2.0, jitter=False)
    expected = [min(2.0, 0.1 * 2 ** (n - 1)) for n in range(1, 8)]
    assert list(policy.delays()) == pytest.approx(expected)
    assert list(policy.delays())[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert list(policy.delays())[5:] == [2.0, 2.0]


def test_exponential_with_many_attempts_does_not_overflow() -> None:
    policy = RetryPolicy.exponential(max_attempts=2000, base_delay=1.0, max_delay=60.0)
    delays = list(policy.delays())
    assert len(delays) == 1999
    assert all(1.0 <= d <= 60.0 for d in delays)


def test_jitter_stays_within_base_and_the_exponential_ceiling() -> None:
    policy = RetryPolicy.exponential(max_attempts=10, base_delay=0.5, max_delay=8.0, jitter=True)
    seen: list[list[float]] = [list(policy.delays()) for _ in range(200)]
    for delays in seen:
        for n, delay in enumerate(delays, start=1):
            assert 0.5 <= delay <= min(8.0, 0.5 * 2 ** (n - 1))
    # the first delay has no room to vary; later ones really are spread out
    assert {d[0] for d in seen} == {0.5}
    assert len({d[5] for d in seen}) > 100


def test_zero_means_zero() -> None:
    for policy in (
        RetryPolicy.fixed(max_attempts=3, base_delay=0),
        RetryPolicy.linear(max_attempts=3, base_delay=0, max_delay=0),
        RetryPolicy.exponential(max_attempts=3, base_delay=0, max_delay=0),
        RetryPolicy.exponential(max_attempts=3, base_delay=0, max_delay=10, jitter=False),
    ):
        assert list(policy.delays()) == [0, 0], policy


def test_exponential_from_zero_with_jitter_stays_at_zero() -> None:
    policy = RetryPolicy.exponential(max_attempts=4, base_delay=0.0, max_delay=5.0, jitter=True)
    assert list(policy.delays()) == [0.0, 0.0, 0.0]


async def test_sleep_waits_the_scheduled_delay() -> None:
    policy = RetryPolicy.fixed(max_attempts=2, base_delay=0.05)
    started = time.monotonic()
    await policy.sleep(1)
    assert time.monotonic() - started >= 0.045
    started = time.monotonic()
    await RetryPolicy.fixed(max_attempts=2, base_delay=0).sleep(1)
    assert time.monotonic() - started < 0.05


def test_should_retry_counts_attempts_and_checks_retry_on() -> None:
    policy = RetryPolicy.fixed(
        max_attempts=3, base_delay=0, retry_on=(ConnectionError, TimeoutError)
    )
    assert policy.should_retry(ConnectionError(), 1)
    assert policy.should_retry(ConnectionResetError(), 2), "subclasses count"
    assert not policy.should_retry(ConnectionError(), 3), "attempts run out"
    assert not policy.should_retry(ValueError(), 1)
    assert not RetryPolicy.NONE.should_retry(Exception(), 1)


def test_retry_on_accepts_a_single_class() -> None:
    for policy in (
        RetryPolicy.fixed(retry_on=KeyError),
        RetryPolicy.linear(retry_on=KeyError),
        RetryPolicy.exponential(retry_on=KeyError),
        RetryPolicy(kind="fixed", max_attempts=2, retry_on=KeyError),  # type: ignore[arg-type]
    ):
        assert policy.retry_on == (KeyError,)
        assert policy.should_retry(KeyError(), 1)
        assert not policy.should_retry(IndexError(), 1)


def test_default_retry_on_is_every_exception() -> None:
    assert RetryPolicy.exponential().retry_on == (Exception,)
    assert RetryPolicy.FIXED.should_retry(RuntimeError(), 1)
    assert not RetryPolicy.FIXED.should_retry(KeyboardInterrupt(), 1)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: RetryPolicy.fixed(max_attempts=0), ValueError),
        (lambda: RetryPolicy.fixed(max_attempts=-1), ValueError),
        (lambda: RetryPolicy.fixed(max_attempts=2.5), TypeError),  # no int: a wrong type
        (lambda: RetryPolicy.fixed(base_delay=-1), ValueError),
        (lambda: RetryPolicy.linear(max_delay=-1, base_delay=0), ValueError),
        (lambda: RetryPolicy.linear(base_delay=5, max_delay=1), ValueError),
        (lambda: RetryPolicy.exponential(base_delay=2, max_delay=1), ValueError),
        (lambda: RetryPolicy.fixed(retry_on=("ValueError",)), TypeError),
        (lambda: RetryPolicy.fixed(retry_on=(int,)), TypeError),
    ],
)
def test_invalid_policies_are_refused(build: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        build()


@pytest.mark.parametrize(
    "fields",
    [
        {"max_attempts": 3, "base_delay": 2.0},  # read as 3 tries 2 s apart: made 3 at once
        {"max_attempts": 3},
        {"base_delay": 1.0, "max_delay": 5.0},
        {"max_delay": 5.0},
    ],
)
def test_a_policy_of_kind_none_with_a_schedule_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"kind 'none' makes one try .* use RetryPolicy\.fixed"):
        RetryPolicy(**fields)
    assert RetryPolicy().delays() is not None  # the default itself is fine
    assert RetryPolicy.NONE.max_attempts == 1


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        # a wrong type is a TypeError (docs/errors.md), a number out of range a ValueError
        ({"max_attempts": True}, TypeError),
        ({"max_attempts": 2.0}, TypeError),
        ({"max_attempts": 0}, ValueError),
        ({"base_delay": float("nan")}, ValueError),
        ({"max_delay": float("inf")}, ValueError),
        ({"base_delay": "1"}, TypeError),
        ({"base_delay": None}, TypeError),
    ],
)
def test_nonsense_numbers_are_refused(changes: dict[str, Any], error: type[Exception]) -> None:
    fields: dict[str, Any] = {"kind": "fixed", "max_attempts": 2, "base_delay": 1.0}
    with pytest.raises(error) as caught:
        RetryPolicy(**{**fields, **changes})
    assert type(caught.value) is error
    assert next(iter(changes)) in str(caught.value)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: RetryPolicy.fixed(retry_on=None), TypeError, "retry_on must be an exception"),
        (lambda: RetryPolicy.exponential(retry_on=5), TypeError, "got 5"),
        (lambda: RetryPolicy.linear(retry_on=()), TypeError, "non-empty tuple"),
        (lambda: RetryPolicy("fixd", 3, 1.0, 1.0), ValueError, "kind must be one of"),
        (lambda: RetryPolicy(kind="exponential", jitter="no"), TypeError, "jitter must be a bool"),
    ],
)
def test_bad_arguments_are_named_in_the_error(
    build: Any, error: type[Exception], message: str
) -> None:
    # a typo in kind used to fall through to the exponential schedule, jitter="no" turned
    # jitter on, and retry_on=None failed with "'NoneType' object is not iterable"
    with pytest.raises(error, match=message):
        build()


def test_retry_on_given_as_a_list_is_kept_as_a_hashable_tuple() -> None:
    policy = RetryPolicy(kind="fixed", max_attempts=2, retry_on=[KeyError, IndexError])  # type: ignore[arg-type]
    assert policy.retry_on == (KeyError, IndexError)
    assert hash(policy) == hash(policy)


@pytest.mark.parametrize("owner", ["manager", "bus"])
@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (RetryPolicy.exponential, "call it, RetryPolicy.exponential(...), or use the preset "),
        (RetryPolicy.fixed, "RetryPolicy.fixed(...), or use the preset RetryPolicy.FIXED"),
        ("linear", "use RetryPolicy.LINEAR, or RetryPolicy.linear(...)"),
        (None, "RetryPolicy.NONE makes one try, no retries"),
    ],
)
async def test_a_retry_policy_slip_is_named_with_what_to_pass(
    owner: str, value: Any, hint: str
) -> None:
    # the factory not called, a preset's name or None: "must be a RetryPolicy, got <bound
    # method RetryPolicy.exponential of ...>" left the reader to find the missing ()
    with pytest.raises(TypeError, match=r"retry_policy must be a RetryPolicy, got .*: ") as info:
        if owner == "manager":
            EventManager(retry_policy=value)
        else:
            EventBus(retry_policy=value)
    assert hint in str(info.value)
    manager = EventManager()
    with pytest.raises(TypeError, match="RetryPolicy.NONE"):
        manager.retry_policy = None  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"got 3$"):  # nothing to add to other values
        manager.retry_policy = 3  # type: ignore[assignment]


class _Stop(BaseException):
    pass


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit, _Stop])
def test_retry_on_refuses_what_is_never_retried(kind: type[BaseException]) -> None:
    """Interrupts and exits always propagate from a handler: a policy naming them would
    claim retries that never happen, so it is refused, saying what to pass instead."""
    for make in (
        lambda: RetryPolicy.fixed(retry_on=kind),
        lambda: RetryPolicy.exponential(retry_on=(ValueError, kind)),
        lambda: RetryPolicy(kind="fixed", max_attempts=2, retry_on=(kind,)),
    ):
        with pytest.raises(TypeError, match=rf"retry_on: {kind.__name__} is never retried"):
            make()


@pytest.mark.parametrize("kind", [ExceptionGroup, asyncio.CancelledError, BaseException])
def test_retry_on_takes_what_can_be_retried(kind: type[BaseException]) -> None:
    assert RetryPolicy.fixed(retry_on=kind).retry_on == (kind,)


async def test_a_handlers_own_cancellation_is_retried_when_named() -> None:
    """A handler whose own await was cancelled failed; retry_on=CancelledError retries it."""
    manager = EventManager(
        retry_policy=RetryPolicy.fixed(
            max_attempts=3, base_delay=0, retry_on=asyncio.CancelledError
        )
    )
    calls = 0

    async def handler(event: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            future = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(future.cancel)
            await future

    manager.on("x", handler)
    await manager.emit("x")
    assert calls == 2
    assert not manager.dead_letters
