"""Passwords out of URLs shown in reprs, logs and error messages.

One copy for every URL the library prints: stores (SQLite, PostgreSQL), checkpoint
stores, transports (Redis, NATS, RabbitMQ), the email channel and the command line.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

__all__ = ["redact_url"]

#: schemes whose user part, given without a password, is a secret: nats-py sends
#: ``nats://TOKEN@host`` as the server's auth token (a user name needs a password there)
_TOKEN_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})

#: query options whose value is a secret: asyncpg and libpq take ``?password=`` (and
#: ``?sslpassword=``, the client key's passphrase) as well as ``user:password@``; the
#: NATS transport takes ``?token=`` as well as ``nats://TOKEN@host``
_SECRET_OPTIONS = frozenset({"password", "sslpassword", "token"})

#: where a list of URLs goes on to its next one (``nats://a:4222,nats://u:p@b:4222``)
_NEXT_URL = re.compile(r",(?=[A-Za-z][A-Za-z0-9+.-]*://)")
#: an authority that ends where it should: ``[user[:password]@]host[:port]``; a piece of
#: a list whose authority is no such thing was cut inside a password (``u:pa,x://...``)
_AUTHORITY = re.compile(r"(?:[^@]*@)?(?:\[[^\]]*\]|[^:@\[\]]*)(?::[0-9]*)?")
#: an authority without a user part that ends where it should: ``host[:port]``
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:@\[\]]*)(?::[0-9]*)?")
#: a secret of a libpq keyword/value connection string (``host=db password=s3cret``,
#: ``password = 'two words'``): its name, the ``=``, and its value, quoted or not
_CONNINFO_SECRET = re.compile(
    r"(?i)(?<![\w.-])((?:ssl)?password|token)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']\S*)"
)


def redact_url(url: str) -> str:
    """The URL with its passwords replaced by ``***`` (for reprs and error messages).

    Hides the password of ``user:password@host``, the token of a NATS URL
    (``nats://TOKEN@host``, and its ``tls://``, ``ws://`` and ``wss://`` forms) and the
    value of a ``password=``, ``sslpassword=`` or ``token=`` query option (matched in any
    case and percent-encoding, as a driver decodes them); everything else is left exactly
    as given. The user part
    ends at the last ``@`` before the path (``/``), the query (``?``) or a fragment,
    or, for a password holding a raw ``/``, at the last ``@`` before the query; for one
    holding a raw ``?`` or ``#``, at the last ``@`` before the path.

    A list of URLs (NATS servers, ``nats://a:4222,nats://u:p@b:4222``) has each of its
    URLs' passwords hidden. A string that is no URL (no ``://``) has the values of the
    same options hidden where it reads as a libpq keyword/value connection string
    (``host=db password=s3cret``), and everything from its first ``:`` to the ``@`` of
    what may be a user part (``postgresql:app:s3cret@db``, a URL missing its ``//``,
    shows as ``postgresql:***@db``): such strings are refused, and their errors show
    them.
    """
    if "://" not in url:
        return _redact_not_a_url(url)
    pieces = _NEXT_URL.split(url)
    if len(pieces) > 1 and all(_whole(piece) for piece in pieces[:-1]):
        return ",".join(_redact_one(piece) for piece in pieces)
    return _redact_one(url)


def _whole(piece: str) -> bool:
    """Whether ``piece`` of a list of URLs ends as a URL does, not inside a password."""
    rest = piece.partition("://")[2]
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return _AUTHORITY.fullmatch(authority) is not None


def _redact_not_a_url(text: str) -> str:
    """``text`` (no ``://``) with a conninfo's secrets and a ``user:password@`` hidden.

    Without the ``//`` a scheme cannot be told from a user name, so everything from the
    first ``:`` to the ``@`` goes (never too little).
    """
    text = _CONNINFO_SECRET.sub(lambda found: f"{found[1]}{found[2]}***", text)
    head = text.split("/", 1)[0]
    end = head.rfind("@") if "@" in head else text.rfind("@")
    if end > 0 and ":" in text[:end]:
        text = text[: text.index(":")] + ":***" + text[end:]
    return text


def _redact_one(url: str) -> str:
    """:func:`redact_url` for one URL (holding ``://``)."""
    scheme, sep, rest = url.partition("://")
    head = rest.split("?", 1)[0].split("#", 1)[0]  # authority and path
    authority = head.split("/", 1)[0]
    # the last "@" before the query: a password holding a raw "@" and then a "/"
    # (``app:ab@cd/ef@db``) had its first "@" taken for the end, and the rest shown
    end = head.rfind("@")
    token = scheme.lower() in _TOKEN_SCHEMES
    if end < 0 and (token or (":" in authority and _HOST_PORT.fullmatch(authority) is None)):
        # a password holding a raw "?" or "#" (which no parser reads as the password),
        # perhaps a "/" after it (``app:a?b/c@db``, shown in full when the user part
        # was looked for before the first "/" only): the authority was cut short where
        # no host:port ends, so the user part may run to the last "@" of all (a query
        # holding an "@" is hidden too then: never too little)
        end = rest.rfind("@")
    elif end >= 0 and ":" in rest[:end] and "@" in rest[end + 1 :]:
        # a password holding a raw "@" and then a "?" or "#" (``app:a@b?c@db``): the
        # user part may run to the last "@" of all (never too little)
        end = rest.rfind("@")
    if end >= 0 and ":" in rest[:end]:
        rest = rest[: rest.index(":")] + ":***" + rest[end:]
        end = rest.index("@")
    elif end > 0 and scheme.lower() in _TOKEN_SCHEMES:
        rest = "***" + rest[end:]
        end = rest.index("@")
    query_at = rest.find("?", max(end, 0))
    if query_at >= 0:
        query, hash_sign, fragment = rest[query_at + 1 :].partition("#")
        rest = rest[: query_at + 1] + _redact_query(query) + hash_sign + fragment
    return f"{scheme}{sep}{rest}"


def _redact_query(query: str) -> str:
    """``query`` with the values of its secret options replaced by ``***``."""
    fields = query.split("&")
    for index, field in enumerate(fields):
        name, equals, _ = field.partition("=")
        if equals and unquote_plus(name).strip().lower() in _SECRET_OPTIONS:
            fields[index] = f"{name}=***"
    return "&".join(fields)
