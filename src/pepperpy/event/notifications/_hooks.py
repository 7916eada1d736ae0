"""The two Jinja2 classes the bounded environment replaces: its code generator and its
``str.format`` formatter (Jinja2 is imported when they are first built: it is optional).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._sandbox import OUTPUT_LIMIT

if TYPE_CHECKING:
    from ._environment import Bounds

__all__ = ["code_generator", "formatters"]


def code_generator() -> type[Any]:
    """A Jinja2 code generator whose templates join ``~``, collect block output and
    step through loops under the bounds."""
    from jinja2 import nodes
    from jinja2.compiler import CodeGenerator, Frame, optimizeconst

    class BoundedCodeGenerator(CodeGenerator):
        #: ids of the loop bodies being compiled (Jinja2 allows no node types of our own)
        _loop_bodies: set[int]

        def buffer(self, frame: Frame) -> None:
            frame.buffer = self.temporary_identifier()
            self.writeline(f"{frame.buffer} = environment.bounded_buffer()")

        def visit_For(self, node: nodes.For, frame: Frame) -> None:  # noqa: N802
            if not hasattr(self, "_loop_bodies"):
                self._loop_bodies = set()
            self._loop_bodies.add(id(node.body))
            super().visit_For(node, frame)

        def blockvisit(self, body: Iterable[nodes.Node], frame: Frame) -> None:
            if id(body) in getattr(self, "_loop_bodies", ()):
                self.writeline("environment.loop_step()")
            super().blockvisit(body, frame)

        # a list, tuple or dict display is measured as it is made: nested displays
        # ([l, l] fifty times) take no memory but make values no comparison, hash or
        # sort could get through
        def visit_List(self, node: nodes.List, frame: Frame) -> None:  # noqa: N802
            self.write("environment.bounded_literal(")
            super().visit_List(node, frame)
            self.write(")")

        def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:  # noqa: N802
            self.write("environment.bounded_literal(")
            super().visit_Dict(node, frame)
            self.write(")")

        def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:  # noqa: N802
            if node.ctx != "load":  # assigned to: names, not a value
                super().visit_Tuple(node, frame)
                return
            self.write("environment.bounded_literal(")
            super().visit_Tuple(node, frame)
            self.write(")")

        @optimizeconst
        def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802
            if frame.eval_ctx.volatile:
                join = "(markup_join if context.eval_ctx.volatile else str_join)"
            elif frame.eval_ctx.autoescape:
                join = "markup_join"
            else:
                join = "str_join"
            self.write(f"environment.bounded_join({join}, (")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    return BoundedCodeGenerator


def formatters(sandbox: Any, bounds: Bounds) -> tuple[type[Any], type[Any]]:
    """``str.format`` formatters (plain, and escaping for ``Markup``) that check each
    field's spec and value before formatting it, and the result as it grows."""

    class BoundedFields:
        _written = 0

        def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
            self._written = len(format_string)
            return super().vformat(format_string, args, kwargs)  # type: ignore[misc,no-any-return]

        def format_field(self, value: Any, format_spec: str) -> str:
            bounds.on_time()
            bounds.check_spec(format_spec)
            bounds.size(value, "a formatted value")
            bounds.defined(value)
            result: str = super().format_field(value, format_spec)  # type: ignore[misc]
            self._written += len(result)
            if self._written > OUTPUT_LIMIT:
                bounds.refuse(f"str.format() would give over {OUTPUT_LIMIT} characters")
            return result

    class BoundedFormatter(BoundedFields, sandbox.SandboxedFormatter):  # type: ignore[misc]
        pass

    class BoundedEscapeFormatter(BoundedFields, sandbox.SandboxedEscapeFormatter):  # type: ignore[misc]
        pass

    return BoundedFormatter, BoundedEscapeFormatter
