"""The web console's requests: query parameters checked, failures answered.

Every query parameter is checked (``_known``, ``_int``, ``_flag``, ``_pattern``...): what
the console cannot use is a :class:`BadRequest`, answered with a 400. :func:`_guarded`
wraps each route so that any failure gets its status (:func:`_failure`): JSON for the
API, a short page for the HTML routes. See :mod:`._console` for the routes.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from .. import _json
from .._errors import (
    AccessDenied,
    ClosedError,
    EncryptionError,
    PatternError,
    StoreError,
    StreamDeletedError,
)
from .._patterns import parse_name, parse_pattern
from ._console_pages import _page
from ._errors import scrub

__all__ = [
    "MAX_LIMIT",
    "MAX_MINUTES",
    "MAX_POSITION",
    "PAGE_LIMIT",
    "BadRequest",
    "Endpoint",
]

logger = logging.getLogger("pepperpy.event.console")

PAGE_LIMIT = 100
MAX_LIMIT = 1000
MAX_POSITION = 2**63 - 1  # the store's largest position (signed 64-bit)
MAX_MINUTES = 24 * 60
_DECIMAL = re.compile(r"[0-9]{1,19}")
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class BadRequest(Exception):
    """A query parameter the console cannot use; answered with status 400."""


def _known(request: Request, *names: str, repeatable: tuple[str, ...] = ()) -> None:
    """Refuse a parameter the route does not take, or a single one given twice."""
    for name in request.query_params:
        if name not in names:
            known = ", ".join(names) if names else "none"
            raise BadRequest(f"unknown query parameter {name!r} (this page takes: {known})")
        if name not in repeatable and len(request.query_params.getlist(name)) > 1:
            raise BadRequest(f"{name} given more than once")


def _int(
    request: Request,
    name: str,
    default: int | None,
    *,
    lower: int = 0,
    upper: int = MAX_POSITION,
    empty: bool = True,
) -> Any:
    """A whole number from ``lower`` to ``upper``, written as plain ASCII digits; an
    empty value is the default, or (``empty=False``, the API) refused."""
    raw = request.query_params.get(name)
    if raw == "" and not empty:
        raise _empty(name)
    if raw is None or raw == "":
        return default
    value = int(raw) if _DECIMAL.fullmatch(raw) else None
    if value is None or not lower <= value <= upper:
        raise BadRequest(f"{name} must be a whole number from {lower} to {upper}, got {raw!r}")
    return value


def _limit(request: Request) -> int:
    value: int = _int(request, "limit", PAGE_LIMIT, lower=1, upper=MAX_LIMIT)
    return value


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    value = _FLAGS.get(raw.lower())
    if value is None:
        raise BadRequest(f"{name} must be 1, 0, true, false, yes or no, got {raw!r}")
    return value


def _empty(name: str) -> BadRequest:
    return BadRequest(f"{name} is empty: give a value, or leave {name} out")


def _pattern(request: Request, name: str, *, empty: bool = True) -> str:
    """One pattern (default ``#``, every stream), checked; an empty one is the default,
    or (``empty=False``, the API) refused: the empty pattern is no pattern (SPEC §2)."""
    raw = request.query_params.get(name)
    if raw == "" and not empty:
        raise _empty(name)
    value = raw or "#"
    parse_pattern(value)  # PatternError (an EventError): a 400
    return value


def _patterns(request: Request, name: str, *, empty: bool = True) -> list[str] | None:
    """A repeatable pattern filter (``streams=a.*&streams=b.*``), checked; None: all.
    An empty value is skipped, or (``empty=False``, the API) refused."""
    given = request.query_params.getlist(name)
    if not empty and "" in given:
        raise _empty(name)
    values = [v for v in given if v]
    for value in values:
        parse_pattern(value)
    return values or None


def _tail_parameters(request: Request) -> tuple[list[str] | None, list[str] | None, Any, int]:
    """What ``/tail`` and ``/api/tail`` take: streams, types, from, lines."""
    _known(request, "from", "lines", "streams", "types", repeatable=("streams", "types"))
    streams, types = _patterns(request, "streams"), _patterns(request, "types")
    start = _int(request, "from", None)
    lines: int = _int(request, "lines", 20, upper=MAX_LIMIT)
    return streams, types, start, lines


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(_json.dumps(value), status_code=status, media_type="application/json")


Endpoint = Callable[[Request], Awaitable[Response]]


_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 500: "Internal error"}
_TITLES[503] = "Store unavailable"


def _failure(exc: Exception) -> tuple[int, str]:
    """The status and message that answer ``exc``, raised while serving a request.

    400 is for what the client sent (a query parameter, a pattern or a stream name);
    a store that cannot answer now (closed, its database unreachable) is a 503 worth
    retrying; anything else is the console's fault, a 500 whose details stay in the log.
    """
    message = " ".join(scrub(str(exc)).split()) or type(exc).__name__
    if isinstance(exc, BadRequest | PatternError):
        return 400, message
    if isinstance(exc, AccessDenied):
        return 403, message
    if isinstance(exc, StreamDeletedError):
        return 404, message
    if isinstance(exc, ClosedError) or (
        isinstance(exc, StoreError) and not isinstance(exc, EncryptionError)
    ):
        return 503, message
    return 500, "internal error"


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Answer a failure with its status (JSON for the API, a short page otherwise)."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            status, message = _failure(exc)
            if status == 500:
                logger.error(
                    "console: %s %s failed", request.method, request.url.path, exc_info=exc
                )
            headers = {"Retry-After": "1"} if status == 503 else None
            if request.url.path.startswith("/api/"):
                return JSONResponse({"error": message}, status_code=status, headers=headers)
            body = _page(_TITLES[status], f"<p>{html.escape(message)}</p>")
            return HTMLResponse(body, status_code=status, headers=headers)

    return guarded


def _stream_name(request: Request) -> str:
    """The stream named in the path, checked (a name no stream can have is a 400)."""
    name: str = request.path_params["name"]
    try:
        parse_name(name, "stream name")
    except PatternError as exc:
        raise BadRequest(str(exc)) from None
    return name
