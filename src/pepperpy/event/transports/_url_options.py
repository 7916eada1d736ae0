"""The options of a transport, from its URL's query or its keywords, checked alike everywhere.

A transport's URL carries its own options and its driver's (``?partitions=8`` beside
redis-py's ``socket_timeout``, ``?exchange=shop`` beside aio-pika's ``heartbeat``). A name
that is neither (a typo: ``?exchnage=shop``) must be refused when the transport is made:
passed on, the driver ignores it or fails later with its own error, and the option
the user meant silently keeps its default. A keyword argument no transport takes is
refused the same way, with the closest name suggested (Python 3.11 suggests none).

One concept has one name on every transport (``max_deliveries``); a broker's own name for
it (NATS's ``max_deliver``, RabbitMQ's ``delivery_limit``) is a synonym, accepted by
keyword and in the URL, and giving both is refused.

A keyword argument given explicitly wins over the URL, whatever its value: its default in
the signature is :func:`default` of the options class's field, which reads (and compares)
as that value but tells :func:`given_keywords` that the keyword was not passed.

A number in a URL is plain ASCII: a whole number is digits 0-9 (:func:`whole_number`), a
number of seconds decimal notation (:func:`decimal_seconds`). ``int()`` and ``float()``
also take ``1_6`` (16), spaces around the digits, other scripts' digits (``١٦``) and, for
seconds, ``inf`` and ``nan``, none of which a URL's author means as that number.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import parse_qsl

from .._errors import ConfigurationError
from .._redact import redact_url

__all__ = [
    "checked_keywords",
    "DECIMAL",
    "SECONDS_TAKES",
    "WHOLE",
    "WHOLE_TAKES",
    "common_names",
    "decimal_seconds",
    "default",
    "given_keywords",
    "not_a_url",
    "query_options",
    "unknown_option",
    "whole_number",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")

#: a whole number in a URL: ASCII digits only
WHOLE = re.compile(r"-?[0-9]+")
#: a number of seconds in a URL: ASCII decimal notation (30, 0.5, .5, 3., 1e-3)
DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
#: what :func:`whole_number` and :func:`decimal_seconds` take, for the messages refusing
#: other text
WHOLE_TAKES = "a whole number in digits 0-9"
SECONDS_TAKES = "a number of seconds in decimal digits (30, 0.5)"


def whole_number(value: str) -> int:
    """``value``, a URL's text for a whole number; ValueError unless plain ASCII digits."""
    if not WHOLE.fullmatch(value):
        raise ValueError(value)
    return int(value)


def decimal_seconds(value: str) -> float:
    """``value``, a URL's text for seconds; ValueError unless ASCII decimal notation."""
    if not DECIMAL.fullmatch(value):
        raise ValueError(value)
    return float(value)


#: an option's range of seconds and what the option is, for :func:`check_seconds_ranges`
SecondsRange = tuple[float, float, str]


def check_seconds_ranges(
    ranges: Mapping[str, SecondsRange], value_of: Callable[[str], float]
) -> None:
    """ConfigurationError naming the first option in ``ranges`` whose value (from
    ``value_of``) is outside its range, with the range and what the option is."""
    for name, (shortest, longest, what) in ranges.items():
        value = value_of(name)
        if not shortest <= value <= longest:
            raise ConfigurationError(
                f"{name} must be from {shortest:g} to {longest:,g} s ({what}), got {value!r}"
            )


class _Default:
    """A keyword's default that was not overridden: shown, and equal, as its value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:  # what help() and inspect.signature show
        return repr(self.value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Default):
            other = other.value
        return bool(self.value == other)

    def __hash__(self) -> int:
        return hash(self.value)


def default(value: _T) -> _T:
    """The default of a transport keyword, ``value`` (an options class's field default).

    Type checkers, ``help()`` and ``inspect.signature`` see ``value``; at run time it is a
    marker, so that :func:`given_keywords` tells a keyword passed with the default's value
    (``ack_wait=30.0``, which must win over ``?ack_wait=5`` in the URL) from one not passed.
    """
    return cast(_T, _Default(value))


def given_keywords(keywords: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords of ``keywords`` that the caller passed (those not left at :func:`default`)."""
    return {name: value for name, value in keywords.items() if not isinstance(value, _Default)}


def query_options(queries: Iterable[str], *, where: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of URL query strings, each name once.

    A name given twice with different values (``?namespace=a&namespace=b``, as two
    merged environment-provided query strings make) is refused with
    :class:`ConfigurationError` naming it, not settled by the last one silently; given
    twice with one value, it is kept once. ``queries``: one query, or those of a
    cluster's server list, which configure one transport together. The values are not
    shown: one may be a password.
    """
    pairs: dict[str, str] = {}
    for query in queries:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if pairs.setdefault(name, value) != value:
                raise ConfigurationError(
                    f"the parameter {name!r} is given twice in {where}, with different "
                    "values: give it once"
                )
    return list(pairs.items())


def not_a_url(value: object) -> str:
    """``value``, given where a URL ``str`` belongs, for the :class:`TypeError` refusing it:
    its repr, the password of a URL in ``bytes`` hidden."""
    if isinstance(value, bytes | bytearray):
        return f"{type(value).__name__} {redact_url(value.decode('utf-8', 'replace'))!r}"
    return repr(value)


def unknown_option(
    name: str,
    *,
    where: str,
    ours: Iterable[str],
    driver: str | None = None,
    theirs: Collection[str] = (),
    list_theirs: bool = True,
) -> ConfigurationError:
    """The error for query parameter ``name``, which neither the transport nor its driver takes.

    ``where`` names the URL (``"the Redis URL"``; never the URL itself, which may hold a
    password), ``ours`` the transport's options and ``driver`` what the driver's are
    (``"a redis-py connection option"``; None when the driver reads nothing from the
    query, as nats-py); ``theirs`` are their names, listed in the message unless
    ``list_theirs`` is False (redis-py's are many, and mostly internal). The closest
    known name is suggested.
    """
    ours = sorted(ours)
    close = difflib.get_close_matches(name, [*ours, *theirs], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if driver is None:
        return ConfigurationError(
            f"unknown parameter {name!r} in {where}{hint}: not a transport option "
            f"({', '.join(ours)})"
        )
    listed = f" ({', '.join(sorted(theirs))})" if list_theirs and theirs else ""
    return ConfigurationError(
        f"unknown parameter {name!r} in {where}{hint}: neither a transport option "
        f"({', '.join(ours)}) nor {driver}{listed}"
    )


def common_names(
    given: Mapping[str, Any], synonyms: Mapping[str, str], *, where: str
) -> dict[str, Any]:
    """``given`` with each synonym under its common name (``{"max_deliver": 3}`` gives
    ``{"max_deliveries": 3}``, with ``synonyms`` ``{"max_deliver": "max_deliveries"}``).

    Both names of one option in ``given`` raise :class:`ConfigurationError` naming both
    (``where`` says where they were given), even when their values agree.
    """
    names = dict(given)
    for synonym, common in synonyms.items():
        if synonym in names:
            if common in names:
                raise both_names(common, synonym, where)
            names[common] = names.pop(synonym)
    return names


def both_names(common: str, synonym: str, where: str) -> ConfigurationError:
    return ConfigurationError(
        f"{common!r} and {synonym!r} are one option ({synonym!r} is the broker's name for "
        f"it), given twice in {where}: give {common!r} only"
    )


def checked_keywords(
    synonyms: Mapping[str, str] | None = None,
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Refuse, before a transport's ``__init__`` runs, a keyword it does not take and a
    keyword given under both its names.

    An unknown keyword raises :class:`TypeError`, as Python's own check would, but naming
    the closest option and listing them all (``RedisTransport(max_deliverys=3)``); a
    synonym given with its common name (``max_deliveries=3, max_deliver=3``) raises
    :class:`ConfigurationError` naming both. The signature stays the decorated one (for
    ``inspect.signature``, type checkers and IDEs).
    """
    pairs = dict(synonyms or {})

    def decorate(init: Callable[_P, _R]) -> Callable[_P, _R]:
        parameters = inspect.signature(init).parameters.values()
        known = [
            p.name
            for p in parameters
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
        ]
        # suggested and listed by their common names only
        shown = [name for name in known if name not in pairs and name != "url"]
        owner = init.__qualname__.rpartition(".")[0] or init.__qualname__

        @functools.wraps(init)
        def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            for name in kwargs:
                if name not in known:
                    close = difflib.get_close_matches(name, shown, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    options = ", ".join(sorted(shown))
                    raise TypeError(
                        f"{owner}() got an unexpected keyword argument {name!r}{hint}; "
                        f"its options are {options}"
                    )
            for synonym, common in pairs.items():
                if synonym in kwargs and common in kwargs:
                    raise both_names(common, synonym, f"the keyword arguments of {owner}()")
            return init(*args, **kwargs)

        return checked

    return decorate
