"""The query options of a transport URL: one refusal of an unknown name for every transport.

A transport's URL carries its own options and its driver's (``?partitions=8`` beside
redis-py's ``socket_timeout``, ``?exchange=shop`` beside aio-pika's ``heartbeat``). A name
that is neither (a typo: ``?exchnage=shop``) must be refused when the transport is made:
passed on, the driver ignores it or fails later with its own error, and the option
the user meant silently keeps its default.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from .._errors import ConfigurationError

__all__ = ["unknown_option"]


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
