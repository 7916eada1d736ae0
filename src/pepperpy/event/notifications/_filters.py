"""Jinja2's filters and ``lipsum``, bounded: each checks the deadline, refuses before it
runs the work whose result would pass the limit, and checks what it returns.

Most filters make a result no longer than what they are given, so the check of that
result is enough; the ones that write their value out as text (``string``, ``upper``,
``tojson``, ...) first check how long it is written out (a list of a million
references to one long string is short in memory and enormous as text); and the ones
whose result grows with an argument (``center``, ``indent``, ``replace``, ``format``,
``wordwrap``, ``urlize``, ``join``, ``sum``, ``batch``, ``slice``) bound it from their
arguments first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._measure import grows, measure
from ._sandbox import OUTPUT_LIMIT

if TYPE_CHECKING:
    from ._environment import Bounds

__all__ = ["bounded_filters", "bounded_lipsum"]

Filter = Callable[..., Any]

#: filters that write their value out as text
_WRITING = frozenset(
    {
        "capitalize",
        "center",
        "e",
        "escape",
        "filesizeformat",
        "forceescape",
        "format",
        "indent",
        "lower",
        "pprint",
        "replace",
        "safe",
        "string",
        "striptags",
        "title",
        "tojson",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "urlize",
        "wordcount",
        "wordwrap",
        "xmlattr",
    }
)


class _Call:
    """One filter call: its value and the arguments after it, by position or name."""

    __slots__ = ("args", "kwargs", "offset")

    def __init__(self, function: Filter, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # a filter marked pass_context/pass_eval_context/pass_environment takes that first
        self.offset = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
        self.args = list(args)
        self.kwargs = kwargs

    @property
    def value(self) -> Any:
        return self.args[self.offset]

    @value.setter
    def value(self, value: Any) -> None:
        self.args[self.offset] = value

    def arg(self, position: int, name: str, default: Any = None) -> Any:
        """The argument after the value at ``position`` (0: the first), or named ``name``."""
        index = self.offset + 1 + position
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)

    def set(self, position: int, name: str, value: Any) -> None:
        index = self.offset + 1 + position
        if index < len(self.args):
            self.args[index] = value
        else:
            self.kwargs[name] = value


def _text_size(value: Any) -> int:
    return len(value) if isinstance(value, str) else measure(value, OUTPUT_LIMIT)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _before(name: str, call: _Call, bounds: Bounds, transient: int) -> None:
    """Refuse, before it runs, a call of filter ``name`` whose result would pass the limit."""
    value = call.value
    if name in _WRITING and not isinstance(value, str):
        indent: Callable[[int, int], int] | None = None
        if name == "pprint":
            indent = lambda depth, margin: margin + 1  # noqa: E731 - one line per item
        elif name == "tojson":
            width = call.arg(0, "indent")
            step = _count(width) if not isinstance(width, str) else len(width)
            indent = lambda depth, margin: depth * step + 1  # noqa: E731
        if measure(value, OUTPUT_LIMIT, indent=indent) > OUTPUT_LIMIT:
            bounds.refuse(
                f"the {name} filter's value would be longer than {OUTPUT_LIMIT} "
                "characters written out"
            )
        bounds.defined(value)  # written out, a missing variable would read "Undefined"
    size = _text_size(value)
    if name == "center" and _count(call.arg(0, "width")) > OUTPUT_LIMIT:
        bounds.refuse(f"the center filter's width is over {OUTPUT_LIMIT}")
    elif name == "indent":
        width = call.arg(0, "width", 4)
        step = len(width) if isinstance(width, str) else _count(width)
        lines = value.count("\n") + 1 if isinstance(value, str) else size + 1
        if size + lines * step > OUTPUT_LIMIT:
            bounds.refuse(f"the indent filter would give over {OUTPUT_LIMIT} characters")
    elif name == "replace" and isinstance(value, str):
        replaced = (call.arg(0, "old"), call.arg(1, "new"), call.arg(2, "count"))
        if grows("replace", value, replaced, OUTPUT_LIMIT) > OUTPUT_LIMIT:
            bounds.refuse(f"the replace filter would give over {OUTPUT_LIMIT} characters")
    elif name == "format" and isinstance(value, str):
        named = dict(call.kwargs)
        bounds.percent(value, named or tuple(call.args[call.offset + 1 :]))
    elif name == "wordwrap":
        wrap = call.arg(2, "wrapstring")
        wrap_size = len(wrap) if isinstance(wrap, str) else 2
        if size + (size + 1) * wrap_size > transient:
            bounds.refuse(f"the wordwrap filter would give over {OUTPUT_LIMIT} characters")
    elif name == "urlize":
        attrs = sum(_text_size(call.arg(i, n) or "") for i, n in ((2, "target"), (3, "rel")))
        words = value.count(" ") + value.count("\n") + 1 if isinstance(value, str) else size
        if 3 * size + words * (attrs + 64) > transient:
            bounds.refuse(f"the urlize filter would give over {OUTPUT_LIMIT} characters")
    elif name == "batch":
        if call.arg(1, "fill_with") is not None and _count(call.arg(0, "linecount")) > OUTPUT_LIMIT:
            bounds.refuse(f"the batch filter would fill rows of over {OUTPUT_LIMIT} items")
    elif name == "slice" and _count(call.arg(0, "slices")) > OUTPUT_LIMIT:
        bounds.refuse(f"the slice filter would make over {OUTPUT_LIMIT} slices")
    elif name == "list":
        call.value = bounds.items(value, "the list filter's result")


def _getter(environment: Any, attribute: Any) -> Callable[[Any], Any]:
    from jinja2.filters import make_attrgetter

    getter: Callable[[Any], Any] = make_attrgetter(environment, attribute)
    return getter


def _join(function: Filter, bounds: Bounds, transient: int) -> Filter:
    """``join``: its items (an attribute of each, if asked) measured before joining."""

    def bounded(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        bounds.on_time()
        items = bounds.items(value, "the join filter's items")
        if attribute is not None:
            get = _getter(eval_ctx.environment, attribute)
            items = [get(item) for item in items]
        escaping = bool(eval_ctx.autoescape)
        size = len(str(d)) * max(len(items) - 1, 0)
        for item in items:
            measured = _text_size(item)
            size += measured if not escaping or hasattr(item, "__html__") else 5 * measured
            if size > (transient if escaping else OUTPUT_LIMIT):
                bounds.refuse(f"the join filter would give over {OUTPUT_LIMIT} characters")
        return bounds.computed(function(eval_ctx, items, d), "the join filter's result")

    bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def _sum(function: Filter, bounds: Bounds) -> Filter:
    """``sum``: lists and tuples added up in one pass, their total measured first
    (Python's ``sum`` copies the growing list at every item)."""

    def bounded(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        bounds.on_time()
        items = bounds.items(iterable, "the sum filter's items")
        if attribute is not None:
            get = _getter(environment, attribute)
            items = [get(item) for item in items]
        kind = type(start)
        size: int | None = None
        if kind in (list, tuple) and all(type(item) is kind for item in items):
            sizes: dict[int, int] = {}  # each list measured once, however often it is added
            size = measure(start, OUTPUT_LIMIT)
            for item in items:
                if id(item) not in sizes:
                    sizes[id(item)] = measure(item, OUTPUT_LIMIT)
                size += sizes[id(item)]
                if size > OUTPUT_LIMIT:
                    bounds.refuse(f"the sum filter would give over {OUTPUT_LIMIT} characters")
            total = list(start)
            for item in items:
                total.extend(item)
            result: Any = total if kind is list else tuple(total)
        else:
            result = function(environment, items, start=start)
        return bounds.computed(result, "the sum filter's result", size)

    bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


#: filters whose arguments can make a result much longer than their value
_GROWING = frozenset(
    {"center", "indent", "replace", "format", "wordwrap", "urlize", "batch", "slice", "list"}
)


def _bounded(name: str, function: Filter, bounds: Bounds, transient: int) -> Filter:
    growing = name in _GROWING
    writing = name in _WRITING
    offset = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    what = f"the {name} filter's result"

    def bounded(*args: Any, **kwargs: Any) -> Any:
        bounds.on_time()
        if growing or (writing and type(args[offset]) is not str):
            call = _Call(function, args, kwargs)
            _before(name, call, bounds, transient)
            args, kwargs = tuple(call.args), call.kwargs
        return bounds.computed(function(*args, **kwargs), what)

    if hasattr(function, "jinja_pass_arg"):  # it takes the context first
        bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def bounded_filters(
    filters: Mapping[str, Filter], bounds: Bounds, transient: int
) -> dict[str, Filter]:
    """Every filter of ``filters``, bounded."""
    wrapped: dict[str, Filter] = {}
    for name, function in filters.items():
        if name == "join":
            wrapped[name] = _join(function, bounds, transient)
        elif name == "sum":
            wrapped[name] = _sum(function, bounds)
        else:
            wrapped[name] = _bounded(name, function, bounds, transient)
    return wrapped


#: characters a word of ``lipsum`` text takes at most, with its space and markup
_WORD = 16


def bounded_lipsum(function: Filter, bounds: Bounds) -> Filter:
    """``lipsum(n, html, min, max)`` refused when ``n`` paragraphs of ``max`` words
    would pass the limit."""

    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:  # noqa: A002
        bounds.on_time()
        if _count(n) * _count(max) * _WORD > OUTPUT_LIMIT:
            bounds.refuse(f"lipsum() would give over {OUTPUT_LIMIT} characters")
        return bounds.computed(function(n, html, min, max), "the result of lipsum()")

    return lipsum
