"""Lone surrogates in what the fast path accepted: found in C, named by the walk.

msgspec passes a ``str`` through as it is, a lone surrogate (``"\\ud800"``) included,
though no event can hold one: UTF-8 JSON cannot carry it, so the event would fail only
when stored or published (``SerializationError``), not when validated. The fast path
visits no string in Python (that is what makes it fast), so what msgspec converted is
encoded once more, in C, by msgspec's MessagePack encoder, which refuses a lone
surrogate in any string or key. Only data that fails goes to the complete walk, which
names the string or key (``StrNode``, the object nodes, ``AnyNode``); schemas whose
output holds no text the caller gave (numbers, bools, dates, UUIDs, enums, literals)
skip the look.

The look is not free. Measured in ``check()`` (min of many runs, shared machine): about
+0.2 us on a small event with 8 strings (1.15 -> 1.4 us), +0.3 us on the processing
benchmark's order (1.75 -> 2.05 us), +0.65 us on a list of 100 short strings; nothing
on a schema of numbers, nor on the walk (one ``isascii()`` per string). Other looks
measured on the same data, all in C but slower: orjson on the ``to_builtins`` output
(it writes every float as text: +0.4 us on the order), msgspec's JSON encoder on the
Structs (+0.4 us on the order, +0.7 on the list); a Python visit of each string
(``isascii()``, then encoding only the rest) took 0.3 us on the small event alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ._json_nodes import ArrayNode, TimeTextNode
from ._nodes import (
    BoolNode,
    BytesNode,
    DecimalNode,
    DictNode,
    EnumNode,
    LazyNode,
    ListNode,
    LiteralNode,
    Node,
    NoneNode,
    NumberNode,
    ObjectNode,
    TemporalNode,
    TupleNode,
    UnionNode,
    UUIDNode,
    walk,
)

__all__ = ["holds_text", "text_look", "unencodable"]

#: nodes whose values hold no text the caller gave (a literal's or an enum's strings are
#: the schema's; a dict's keys are its key node's, which the walk reaches), or that
#: only hold other nodes' values
_NO_TEXT = (
    BoolNode,
    NoneNode,
    NumberNode,
    DecimalNode,
    BytesNode,
    TemporalNode,
    TimeTextNode,
    UUIDNode,
    EnumNode,
    LiteralNode,
    ListNode,
    TupleNode,
    DictNode,
    UnionNode,
    LazyNode,
    ArrayNode,
)


def holds_text(node: Node) -> bool:
    """Whether values of ``node`` can hold a string or key the caller gave."""
    for current in walk(node):
        if isinstance(current, ObjectNode):
            if current.extra == "allow" or current.patterns:  # keys kept as given
                return True
        elif not isinstance(current, _NO_TEXT):  # a str, Any, or a node we cannot tell
            return True
    return False


def _nothing(value: Any) -> None:
    """``enc_hook``: a value of a hooked type encodes as nil (its text was checked)."""
    return None


def text_look(node: Node, msgspec: Any) -> Callable[[Any], Any] | None:
    """What looks for a lone surrogate in msgspec's output for ``node`` (the Structs,
    before ``to_builtins``), raising when it finds one; None when that output holds no
    text the caller gave. It may raise for another reason (an int beyond 64 bits): the
    complete walk then judges the data, which is correct, only slower."""
    if not holds_text(node):
        return None
    look: Callable[[Any], Any] = msgspec.msgpack.Encoder(enc_hook=_nothing).encode
    return look


def _skip(value: Any) -> None:
    """orjson's ``default``: a value it does not encode (Decimal, bytes) holds no text."""
    return None


def unencodable(value: Any) -> bool:
    """True when orjson cannot encode ``value`` (plain data, not validated): it holds a
    lone surrogate, or something else orjson refuses (a set, a reference cycle, an int
    beyond 64 bits), which the caller then looks at closer. False for JSON data."""
    try:
        orjson.dumps(value, default=_skip, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError:
        return True
    return False
