"""Every public exception is named where users import it from, and survives pickle.

A traceback ends with ``pepperpy.event.ConcurrencyError: ...``, not with the private
module that defines the class; ``typing.get_type_hints`` still resolves the classes'
annotations (it looks class-level ones up in ``sys.modules[cls.__module__]``), and
pickle and copy rebuild every error with its message and attributes. The exceptions are
found by walking the package's public modules, so a new one is held to this too.
"""

from __future__ import annotations

import copy
import importlib
import pickle
import pkgutil
import traceback
import typing
from collections.abc import Callable
from types import ModuleType

import pytest

import pepperpy.event as package
from pepperpy.event import (
    AccessDenied,
    BatchPublishError,
    ConcurrencyError,
    Event,
    MissingDependencyError,
    PatternError,
    ReplayReport,
    ReplayStopped,
    SerializationError,
    TransportError,
    ValidationError,
    ValidationProblem,
)
from pepperpy.event.notifications import OutdatedDependencyError


def _is_private(module_name: str) -> bool:
    return any(part.startswith("_") for part in module_name.split("."))


def _public_modules() -> list[ModuleType]:
    modules = [package]
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if _is_private(info.name):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:  # an optional extra this environment lacks
            continue
    return modules


def _public_exceptions() -> dict[type[BaseException], set[str]]:
    """Each exception class a public module exports -> the modules exporting it."""
    found: dict[type[BaseException], set[str]] = {}
    for module in _public_modules():
        names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
        for name in names:
            value = getattr(module, name)
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith(package.__name__)
            ):
                found.setdefault(value, set()).add(module.__name__)
    return found


EXPORTED = _public_exceptions()
ERRORS = sorted(EXPORTED, key=lambda cls: cls.__qualname__)

#: how to make an instance of an error whose __init__ does not take just a message
_REPORT = ReplayReport(replayed=6, skipped=0, failed=1, duration=0.5, last_position=7)
SAMPLES: dict[type[BaseException], Callable[[], BaseException]] = {
    PatternError: lambda: PatternError("orders..paid", 7, "empty segment", kind="topic"),
    ValidationError: lambda: ValidationError(
        [ValidationProblem("$.total", "number", "string", "not a number")],
        event_type="order.paid",
    ),
    AccessDenied: lambda: AccessDenied("alice", "publish", "orders.paid"),
    MissingDependencyError: lambda: MissingDependencyError("the Redis transport", "redis", "redis"),
    OutdatedDependencyError: lambda: OutdatedDependencyError(
        "rendering notification templates", "templates", "jinja2", "2.11.3", "3.1.6"
    ),
    ConcurrencyError: lambda: ConcurrencyError("order-1", 3, 5),
    BatchPublishError: lambda: BatchPublishError(
        "2 of 3 events were not published",
        (Event("order.paid", {"n": 1}), Event("order.paid", {"n": 2}), Event("order.paid", {})),
        (True, False, None),
        {1: TransportError("refused"), 2: TransportError("no answer")},
    ),
    ReplayStopped: lambda: ReplayStopped("a handler failed at position 7", _REPORT),
}


def _sample(cls: type[BaseException]) -> BaseException:
    try:
        return SAMPLES.get(cls, lambda: cls("something failed"))()
    except TypeError as exc:  # its __init__ takes more than a message
        raise AssertionError(f"add {cls.__qualname__} to SAMPLES: {exc}") from exc


def _raised(cls: type[BaseException]) -> BaseException:
    try:
        raise _sample(cls)
    except BaseException as exc:  # noqa: BLE001 - the one raised just above
        return exc


def _observable(exc: BaseException) -> dict[str, str]:
    """What a reader of the error can see: message, args and every public attribute."""
    seen = {"type": repr(type(exc)), "str": str(exc), "args": repr(exc.args)}
    seen["notes"] = repr(getattr(exc, "__notes__", None))
    for name in dir(exc):
        if name.startswith("__") or not hasattr(exc, name):
            continue
        value = getattr(exc, name)
        if not callable(value):
            seen[name] = repr(value)
    return seen


def test_the_walk_finds_the_exceptions_of_every_area() -> None:
    for cls in (package.EventError, ConcurrencyError, ReplayStopped, OutdatedDependencyError):
        assert cls in EXPORTED, cls
    every_event_error = {
        getattr(package, name)
        for name in package.__all__
        if isinstance(getattr(package, name), type)
        and issubclass(getattr(package, name), package.EventError)
    }
    assert every_event_error <= set(EXPORTED)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_the_module_is_public_and_exports_the_class(cls: type[BaseException]) -> None:
    assert not _is_private(cls.__module__), f"{cls.__module__}.{cls.__qualname__}"
    assert cls.__module__ in EXPORTED[cls], "named after a module users import it from"
    assert cls.__qualname__ == cls.__name__
    assert getattr(importlib.import_module(cls.__module__), cls.__qualname__) is cls


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_type_hints_resolve(cls: type[BaseException]) -> None:
    typing.get_type_hints(cls)
    typing.get_type_hints(cls.__init__)
    for member in vars(cls).values():
        if callable(member) and hasattr(member, "__annotations__"):
            typing.get_type_hints(member)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_pickle_and_copy_give_back_the_same_error(cls: type[BaseException]) -> None:
    exc = _sample(cls)
    exc.add_note("while testing")
    expected = _observable(exc)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert _observable(pickle.loads(pickle.dumps(exc, protocol))) == expected, protocol
    assert _observable(copy.copy(exc)) == expected
    assert _observable(copy.deepcopy(exc)) == expected


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_repr_and_traceback_name_the_public_path(cls: type[BaseException]) -> None:
    exc = _raised(cls)
    public = f"{cls.__module__}.{cls.__qualname__}"
    assert not _is_private(cls.__module__), public
    assert repr(type(exc)) == f"<class '{public}'>"
    last = traceback.format_exception(exc)[-1]
    assert last == f"{public}: {exc}\n"


def test_validation_problem_is_public_too() -> None:
    problem = ValidationProblem("$.total", "number", "string", "not a number")
    assert type(problem).__module__ == package.__name__
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(problem, protocol)) == problem


def test_the_store_still_tells_its_own_errors_by_their_module() -> None:
    """store._records lets the library's own errors through (by ``__module__``) and
    wraps other TypeErrors and ValueErrors from ``Event()`` in a ValidationError."""
    from pepperpy.event.store._records import _from_mapping  # noqa: PLC0415

    with pytest.raises(SerializationError, match="not JSON-serialisable") as caught:
        _from_mapping({"type": "x", "data": {"x": object()}}, "$[0]")
    assert not isinstance(caught.value, ValidationError)
    with pytest.raises(ValidationError, match="event version") as wrapped:
        _from_mapping({"type": "x", "version": "a"}, "$[0]")
    assert type(wrapped.value.__cause__) is TypeError  # a version that is no int
    with pytest.raises(ValidationError, match="event version") as wrapped:
        _from_mapping({"type": "x", "version": 0}, "$[0]")
    assert type(wrapped.value.__cause__) is ValueError  # an int out of range
