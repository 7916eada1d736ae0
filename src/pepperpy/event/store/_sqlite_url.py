"""SQLite store URLs: ``sqlite:///path/events.db?option=value``, what they say
(:class:`SQLiteURL`) and how they open the file (:class:`SQLiteAccess`). Re-exported by
``pepperpy.event.store.sqlite``, where users import them from.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qsl

from .._errors import ConfigurationError
from .._redact import redact_url
from .._sqlite import check_busy_timeout
from ._sqlite_schema import BUSY_TIMEOUT

__all__ = ["SQLiteAccess", "SQLiteURL", "parse_access", "parse_url", "parse_url_and_access"]

#: the values a yes/no URL option takes (any case), as the console's query flags
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
_URL_OPTIONS = ("synchronous", "busy_timeout", "create", "mode", "immutable")


class SQLiteURL(NamedTuple):
    """What a ``sqlite:///path?option=value`` URL says (see :func:`parse_url`); how it
    opens the file (read-only or not) is :class:`SQLiteAccess` (:func:`parse_access`)."""

    path: str
    synchronous: str = "FULL"
    busy_timeout: float = BUSY_TIMEOUT
    create: bool = True


class SQLiteAccess(NamedTuple):
    """How a store URL opens its file: read-write (the default) or only for reading."""

    #: ``mode=ro``: reads only; appends, deletes and snapshots are refused
    read_only: bool = False
    #: ``immutable=1`` (read-only too): nothing writes the file, not even another process
    immutable: bool = False


def parse_url(url: str) -> SQLiteURL:
    """The file and options of an SQLite store URL; a bad one raises ``ConfigurationError``.

    ``sqlite:///events.db`` is relative to the working directory, ``sqlite:////abs/e.db``
    absolute; the scheme may be in any case. ``sqlite://events.db`` (two slashes: a
    host, to SQLAlchemy) is refused, naming both forms. Options: ``synchronous=FULL|EXTRA|NORMAL``,
    ``busy_timeout=<seconds>`` and ``create=1|0`` (also ``true``/``false``,
    ``yes``/``no``): with ``create=0`` the file must already be an event store (see
    :class:`SQLiteBackend`). ``mode=ro`` and ``immutable=1`` open it read-only (see
    :func:`parse_access`). An unknown or repeated option, or a bad value, is refused with
    a message naming it.
    """
    return parse_url_and_access(url)[0]


def parse_access(url: str) -> SQLiteAccess:
    """Whether an SQLite store URL opens its file read-only (refused as :func:`parse_url`).

    ``mode=ro`` opens an existing store for reading only: nothing is written to the
    file, a missing file is an error, and an older schema is not migrated. ``immutable=1``
    (``mode=ro`` implied) also tells SQLite that nothing writes the file, so that a store
    in a read-only directory can be read (see :class:`SQLiteBackend`). ``mode`` takes
    ``ro`` only (a store is read-write without it); ``immutable`` takes 1 or 0 as
    ``create`` does; ``create=1`` cannot go with either.
    """
    return parse_url_and_access(url)[1]


def parse_url_and_access(url: str) -> tuple[SQLiteURL, SQLiteAccess]:
    """:func:`parse_url` and :func:`parse_access` at once (one parse of ``url``)."""
    shown = redact_url(url)  # a password given in it never reaches an error
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep:
        raise ConfigurationError(f"not an SQLite file URL (want sqlite:///path/file.db): {shown!r}")
    path, _, query = (rest[1:] if rest.startswith("/") else rest).partition("?")
    if not path or path == ":memory:":
        raise ConfigurationError(
            f"{shown!r}: give a file path (sqlite:///path/events.db); "
            "for a store in memory use memory://"
        )
    if not rest.startswith("/"):  # sqlite://events.db: a host, as SQLAlchemy reads it
        path = shown.partition("://")[2].partition("?")[0]
        raise ConfigurationError(
            f"{shown!r}: an SQLite URL has no host, so its path starts after three "
            f"slashes: sqlite:///{path} for {path!r} relative to the working directory, "
            "sqlite:////abs/path/events.db for an absolute path"
        )
    given: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _URL_OPTIONS:
            raise ConfigurationError(
                f"{shown!r}: unknown SQLite URL option {name!r} (the options are "
                "synchronous, busy_timeout, create, mode and immutable)"
            )
        if name in given:
            raise ConfigurationError(f"{shown!r}: the option {name!r} is given twice")
        given[name] = value
    synchronous = given.get("synchronous", "FULL").upper()
    if synchronous not in ("FULL", "EXTRA", "NORMAL"):
        raise ConfigurationError(
            f"{shown!r}: synchronous={given['synchronous']!r}: use FULL, EXTRA or NORMAL"
        )
    busy_timeout = BUSY_TIMEOUT
    if "busy_timeout" in given:
        text = given["busy_timeout"]
        try:
            number = float(text)
        except ValueError:  # a bad URL, not a wrong type: refused as the text it is
            raise ConfigurationError(
                f"{shown!r}: busy_timeout must be a finite number of seconds >= 0, got {text!r}"
            ) from None
        busy_timeout = check_busy_timeout(number, f"{shown!r}: busy_timeout", ConfigurationError)
    create = _flag(url, given, "create", True)
    immutable = _flag(url, given, "immutable", False)
    mode = given.get("mode")
    if mode is not None and mode.lower() != "ro":
        raise ConfigurationError(
            f"{shown!r}: mode={mode!r}: the only mode is ro (read-only); "
            "leave it out to read and write"
        )
    read_only = mode is not None or immutable
    if read_only and create and "create" in given:
        raise ConfigurationError(
            f"{shown!r}: create={given['create']!r} with "
            f"{'mode=ro' if mode is not None else 'immutable=1'}: a read-only store is "
            "never created"
        )
    return (
        SQLiteURL(path, synchronous, busy_timeout, create and not read_only),
        SQLiteAccess(read_only, immutable),
    )


def _flag(url: str, given: dict[str, str], name: str, default: bool) -> bool:
    if name not in given:
        return default
    value = _FLAGS.get(given[name].lower())
    if value is None:
        raise ConfigurationError(
            f"{redact_url(url)!r}: {name}={given[name]!r}: use 1 or 0 (or true/false, yes/no)"
        )
    return value
