"""The sandboxed Jinja2 environment that keeps templates within the bounds of ``_sandbox``.

Three kinds of hook, because a template computes in three places:

* what the sandbox intercepts at run time: operators (``+``, ``*``, ``**``, ``%``),
  attribute and item reads, calls (str methods, list and dict methods, macros, the
  application's functions) and ``str.format`` (through a bounded formatter);
* what the compiled template does by itself, changed by a code generator: ``~`` joins
  through :meth:`bounded_join`, the output of ``{% set %}`` blocks, macros, ``{% filter %}``
  and call blocks is collected in a :class:`_Buffer` that refuses to grow past the
  limit, and every ``{% for %}`` step checks the deadline;
* the filters and globals, replaced by bounded versions (``_filters``).
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

from . import _sandbox
from ._filters import bounded_filters, bounded_lipsum
from ._hooks import code_generator, formatters
from ._measure import _children, _leaf, bytes_size, grows, measure, percent_bound
from ._sandbox import INT_BITS, OUTPUT_LIMIT, WORK_LIMIT, late, past_deadline, spend

__all__ = ["TRANSIENT_LIMIT", "Bounds", "bounded_environment"]

#: characters a step may make on its way to a result it then checks (escaping a value
#: for HTML makes it up to five times longer, JSON up to twelve)
TRANSIENT_LIMIT = 8 * OUTPUT_LIMIT

#: a width or precision in a format spec, with enough digits to pass the limit
_WIDE = re.compile(r"\d{7,}")
#: list, dict and set methods that add to the container they are called on
_ADDING = frozenset({"append", "extend", "insert", "update", "setdefault", "add"})


class Bounds:
    """The checks, raising the sandbox's ``SecurityError`` (Jinja2 is imported late)."""

    def __init__(self, security_error: type[Exception], undefined: type[Any]) -> None:
        self.security_error = security_error
        self.undefined = undefined  # jinja2.Undefined

    def defined(self, value: Any) -> None:
        """Raise Jinja2's ``UndefinedError`` (naming the variable) for the first undefined
        value in ``value``, itself or inside its lists, tuples, sets, dicts (keys and
        values), their views and namespaces: written out, it would read ``Undefined``.

        Called where a value is written out, after it was measured within the limit: the
        walk visits each container once.
        """
        undefined = self.undefined
        if isinstance(value, undefined):
            value._fail_with_undefined_error()
        if type(value) is str or _leaf(value) is not None:
            return
        seen = {id(value)}
        pending = [value]
        steps = 0
        while pending:
            _, items, pairs = _children(pending.pop())
            for item in items:
                steps += 1
                if not steps % 1024:
                    self.on_time()
                for part in item if pairs else (item,):
                    if isinstance(part, undefined):
                        part._fail_with_undefined_error()
                    if type(part) is not str and id(part) not in seen:
                        if _leaf(part) is None:
                            seen.add(id(part))
                            pending.append(part)

    def refuse(self, message: str) -> NoReturn:
        raise self.security_error(message)

    def on_time(self) -> None:
        if past_deadline():
            late()
            self.refuse(f"the template took over {_sandbox.RENDER_TIMEOUT:g}s to render")

    def size(self, value: Any, what: str, limit: int = OUTPUT_LIMIT) -> int:
        """``value``'s written-out size, refused past ``limit``."""
        size = measure(value, limit)
        if size > limit:
            self.refuse(f"{what} would be longer than {limit} characters written out")
        return size

    def computed(self, value: Any, what: str, size: int | None = None) -> Any:
        """``value``, a result the template computed, within the bounds (and counted);
        ``size``, if given, is its written-out size, known from its operands."""
        if size is None:
            size = self.size(value, what)
        if isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > INT_BITS:
                self.refuse(f"{what} has over {INT_BITS} bits")
        if not spend(size):
            self.refuse(f"the template computed over {WORK_LIMIT} characters in all")
        return value

    def items(self, values: Iterable[Any], what: str) -> list[Any]:
        """``values`` as a list, refused past :data:`OUTPUT_LIMIT` items."""
        if isinstance(values, list):
            return values
        collected: list[Any] = []
        for count, value in enumerate(values):
            if not count % 1024:
                self.on_time()
                if count > OUTPUT_LIMIT:
                    self.refuse(f"{what} would have over {OUTPUT_LIMIT} items")
            collected.append(value)
        return collected

    def check_spec(self, spec: Any) -> None:
        """Refuse a format spec (``{:...}``) with a width or precision past the limit."""
        if isinstance(spec, str) and _WIDE.search(spec):
            self.refuse(f"a format with a width over {OUTPUT_LIMIT - 1} is refused")

    def percent(self, template: str, values: Any) -> None:
        """Refuse ``template % values`` whose result would pass the limit, or that would
        write out an undefined value."""
        if percent_bound(template, values, OUTPUT_LIMIT) > OUTPUT_LIMIT:
            self.refuse(
                f"formatting with % would give over {OUTPUT_LIMIT} characters "
                "(counting each width and value)"
            )
        self.defined(values)

    def joined(self, parts: Iterable[Any], what: str) -> str:
        """``parts`` (strings) joined, refused as soon as they pass the limit."""
        collected: list[str] = []
        size = 0
        for part in parts:
            self.on_time()
            size += len(part)
            if size > OUTPUT_LIMIT:
                self.refuse(f"{what} would be longer than {OUTPUT_LIMIT} characters")
            collected.append(part)
        return "".join(collected)


class _Range:
    """A ``range`` whose iteration checks the render's deadline at every step."""

    __slots__ = ("_check", "_range")

    def __init__(self, numbers: range, check: Callable[[], None]) -> None:
        self._range = numbers
        self._check = check

    def __iter__(self) -> Iterator[int]:
        return self._checked(iter(self._range))

    def __reversed__(self) -> Iterator[int]:
        return self._checked(reversed(self._range))

    def _checked(self, numbers: Iterator[int]) -> Iterator[int]:
        for step, number in enumerate(numbers):
            if not step % 64:
                self._check()
            yield number

    def __len__(self) -> int:
        return len(self._range)

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __repr__(self) -> str:
        return repr(self._range)


def _sized(value: Any) -> int:
    if isinstance(value, str | list | tuple | bytes):
        return len(value)
    return 0


def bounded_environment(sandbox: Any) -> type[Any]:
    """The sandboxed environment class with these bounds, built on ``sandbox``
    (the ``jinja2.sandbox`` module, imported by the caller: Jinja2 is optional)."""
    cached: type[Any] | None = getattr(sandbox, "_pepperpy_bounded", None)
    if cached is not None:
        return cached
    from jinja2.runtime import Undefined, markup_join
    from markupsafe import Markup

    bounds = Bounds(sandbox.SecurityError, Undefined)
    generator = code_generator()
    formatter, escape_formatter = formatters(sandbox, bounds)
    base: type[Any] = sandbox.SandboxedEnvironment

    class _Buffer(list[str]):
        """Where a block's output is collected before it is joined: bounded as it grows."""

        __slots__ = ("_size",)

        def __init__(self) -> None:
            super().__init__()
            self._size = 0

        def _add(self, size: int) -> None:
            bounds.on_time()
            self._size += size
            if self._size > OUTPUT_LIMIT:
                bounds.refuse(f"a block's output would be longer than {OUTPUT_LIMIT} characters")
            if not spend(size):
                bounds.refuse(f"the template computed over {WORK_LIMIT} characters in all")

        def append(self, item: str) -> None:
            self._add(len(item) if isinstance(item, str) else measure(item, OUTPUT_LIMIT))
            super().append(item)

        def extend(self, items: Iterable[str]) -> None:
            for item in items:
                self.append(item)

    def bounded_range(*args: int) -> _Range:
        return _Range(sandbox.safe_range(*args), bounds.on_time)

    def join_parts(join: Callable[[Any], str], parts: tuple[Any, ...]) -> str:
        """``a ~ b``: refused before the join when the result would pass the limit."""
        bounds.on_time()
        escaping = join is markup_join and any(hasattr(p, "__html__") for p in parts)
        total = 0
        for part in parts:
            size = measure(part, OUTPUT_LIMIT)
            if type(part) is not str:
                bounds.defined(part)  # written out, it would read "Undefined"
            total += size if not escaping or hasattr(part, "__html__") else 5 * size
        if total > (TRANSIENT_LIMIT if escaping else OUTPUT_LIMIT):
            bounds.refuse(f"the result of ~ would be longer than {OUTPUT_LIMIT} characters")
        return bounds.computed(join(parts), "the result of ~")  # type: ignore[no-any-return]

    class BoundedSandboxedEnvironment(base):  # type: ignore[misc]
        """``SandboxedEnvironment`` that refuses work past the bounds of ``_sandbox``."""

        intercepted_binops = frozenset({"+", "*", "**", "%"})
        code_generator_class = generator

        def __init__(self, **options: Any) -> None:
            super().__init__(finalize=self._finalize, **options)
            self.globals["range"] = bounded_range
            self.globals["lipsum"] = bounded_lipsum(self.globals["lipsum"], bounds)
            self.filters: dict[str, Any] = bounded_filters(
                dict(self.filters), bounds, TRANSIENT_LIMIT
            )

        # used by the generated code (see _hooks.code_generator)
        concat = staticmethod(lambda parts: bounds.joined(parts, "a block's output"))
        bounded_buffer = _Buffer
        bounded_join = staticmethod(join_parts)
        loop_step = staticmethod(bounds.on_time)

        @staticmethod
        def bounded_literal(value: Any) -> Any:
            return bounds.computed(value, f"a {type(value).__name__}")

        @staticmethod
        def _finalize(value: Any) -> Any:
            bounds.on_time()
            if type(value) is not str or len(value) > OUTPUT_LIMIT:
                bounds.size(value, "an output value")
                bounds.defined(value)  # [missing] would print as "[Undefined]"
            return value

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            bounds.on_time()
            known: int | None = None
            if operator == "**":
                if isinstance(left, int) and isinstance(right, int) and right > 0:
                    bits = max(left.bit_length(), 1) * right
                    if abs(left) > 1 and bits > INT_BITS:
                        bounds.refuse(f"{left} ** {right} would have over {INT_BITS} bits")
            elif operator == "*":
                for sequence, count in ((left, right), (right, left)):
                    if isinstance(count, int) and isinstance(sequence, _REPEATED):
                        known = _repeated(sequence, count)
                        if known > OUTPUT_LIMIT:
                            kind = type(sequence).__name__
                            bounds.refuse(
                                f"repeating a {kind} of {len(sequence)} {count} times would "
                                f"give over {OUTPUT_LIMIT} characters written out"
                            )
            elif operator == "+":
                for sequence in (str, list, tuple):
                    if isinstance(left, sequence) and isinstance(right, sequence):
                        known = measure(left, OUTPUT_LIMIT)
                        known += known if right is left else measure(right, OUTPUT_LIMIT)
                        if known > OUTPUT_LIMIT:
                            bounds.refuse(
                                f"adding a {type(left).__name__} of {len(left)} and one of "
                                f"{len(right)} would give over {OUTPUT_LIMIT} characters "
                                "written out"
                            )
            elif operator == "%" and isinstance(left, str):
                bounds.percent(left, right)
            elif operator == "%" and isinstance(left, bytes | bytearray):
                # as text of one character a byte, and a mapping's bytes keys as its names
                values = right
                if isinstance(right, Mapping):
                    values = {_latin1(key): value for key, value in right.items()}
                bounds.percent(left.decode("latin-1"), values)
            result = super().call_binop(context, operator, left, right)
            return bounds.computed(result, f"the result of {operator}", known)

        def wrap_str_format(self, value: Any) -> Any:
            # as Jinja2's, with a formatter that bounds each field and the whole result
            methods = (types.MethodType, types.BuiltinMethodType)
            if not isinstance(value, methods) or value.__name__ not in ("format", "format_map"):
                return None
            text: Any = value.__self__
            if not isinstance(text, str):
                return None
            kind = type(text)
            is_format_map = value.__name__ == "format_map"
            fields = (
                escape_formatter(self, escape=text.escape)
                if isinstance(text, Markup)
                else formatter(self)
            )

            def bounded_format(*args: Any, **kwargs: Any) -> str:
                if is_format_map:
                    if kwargs:
                        raise TypeError("format_map() takes no keyword arguments")
                    if len(args) != 1:
                        raise TypeError(
                            f"format_map() takes exactly one argument ({len(args)} given)"
                        )
                    kwargs, args = args[0], ()
                return kind(fields.vformat(text, args, kwargs))

            bounded_format.__name__ = value.__name__
            return bounded_format

        def getattr(self, obj: Any, attribute: str) -> Any:
            bounds.on_time()
            value = super().getattr(obj, attribute)
            if _sized(value) > OUTPUT_LIMIT:
                bounds.refuse(f"attribute {attribute!r} is longer than {OUTPUT_LIMIT}")
            return value

        def getitem(self, obj: Any, argument: Any) -> Any:
            bounds.on_time()
            value = super().getitem(obj, argument)
            if _sized(value) > OUTPUT_LIMIT:
                bounds.refuse(f"an item is longer than {OUTPUT_LIMIT}")
            return value

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            bounds.on_time()
            owner = getattr(__obj, "__self__", None)
            name = getattr(__obj, "__name__", "")
            if isinstance(owner, str | bytes | bytearray):
                kind = "str" if isinstance(owner, str) else type(owner).__name__
                if name == "join" and args:
                    args = (bounds.items(args[0], f"{kind}.join()"), *args[1:])
                size = grows(name, owner, args, OUTPUT_LIMIT, kwargs)
                if kind != "str" and size:
                    size = bytes_size(size)
                if size > OUTPUT_LIMIT:
                    bounds.refuse(f"{kind}.{name}() would be longer than {OUTPUT_LIMIT} characters")
            elif name == "to_bytes" and isinstance(owner, int) and not isinstance(owner, bool):
                length = args[0] if args else kwargs.get("length", 1)
                if isinstance(length, int) and bytes_size(length) > OUTPUT_LIMIT:
                    bounds.refuse(
                        f"int.to_bytes() would be longer than {OUTPUT_LIMIT} characters written out"
                    )
            elif isinstance(owner, list | dict | set | bytearray) and name in _ADDING:
                args = _adding(bounds, owner, name, args, kwargs)
            result = super().call(__context, __obj, *args, **kwargs)
            return bounds.computed(result, f"the result of {name or 'a call'}()")

    BoundedSandboxedEnvironment.__module__ = __name__
    sandbox._pepperpy_bounded = BoundedSandboxedEnvironment
    return BoundedSandboxedEnvironment


#: what ``*`` repeats: bounded before it runs
_REPEATED = (str, list, tuple, bytes, bytearray)


def _repeated(sequence: Any, count: int) -> int:
    """The written-out size of ``sequence * count``."""
    if isinstance(sequence, bytes | bytearray):
        return bytes_size(len(sequence) * max(count, 0))
    return measure(sequence, OUTPUT_LIMIT) * max(count, 0)


def _latin1(key: Any) -> Any:
    """A bytes key as the name a ``%(name)s`` of the bytes template decoded as Latin-1 has."""
    return key.decode("latin-1") if isinstance(key, bytes | bytearray) else key


def _adding(
    bounds: Bounds, owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Check ``owner.<name>(*args, **kwargs)`` (a list, dict or set growing) before it runs:
    its items past the limit refused, and what it adds counted as work."""
    if name in ("extend", "update"):
        args = tuple(a if isinstance(a, dict) else bounds.items(a, f"{name}()") for a in args)
        added = sum(len(a) for a in args) + len(kwargs)
    else:
        added = 1
    if len(owner) + added > OUTPUT_LIMIT:
        bounds.refuse(f"{type(owner).__name__}.{name}() would hold over {OUTPUT_LIMIT} items")
    size = sum(measure(a, OUTPUT_LIMIT) for a in (*args, *kwargs.values()))
    if size > OUTPUT_LIMIT:
        kind = type(owner).__name__
        bounds.refuse(f"{kind}.{name}() would add over {OUTPUT_LIMIT} characters written out")
    if not spend(size):
        bounds.refuse(f"the template computed over {WORK_LIMIT} characters in all")
    return args
