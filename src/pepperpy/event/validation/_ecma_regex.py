"""JSON Schema regular expressions (ECMA-262) as Python ``re`` patterns.

JSON Schema's ``pattern`` and ``patternProperties`` are ECMA-262 regular expressions,
and a few of their escapes mean less in ECMA-262 than in Python's ``re``, where the same
text would accept more:

- ``$`` (no multiline flag) is the end of the input only; Python's also matches before
  a final newline, so ``^[0-9]+$`` took ``"1\\n"``. It becomes ``\\Z``.
- ``\\d`` is ``[0-9]`` and ``\\w`` ``[A-Za-z0-9_]`` (so ``\\b`` and ``\\B`` are ASCII word
  boundaries); Python's take every Unicode digit and letter (``"١٢"`` for ``^\\d+$``).
- ``\\s`` is ECMA-262's WhiteSpace and LineTerminator set, which is Unicode, but not
  quite Python's (no ``\\x1c``-``\\x1f`` or ``\\x85``; ``\\ufeff`` is in it).
- ``.`` matches any character but a line terminator (``\\n``, ``\\r``, ``\\u2028``,
  ``\\u2029``); Python's only refuses ``\\n``.
- ``[]`` matches nothing and ``[^]`` any character; in Python ``]`` first in a class is
  a literal. A ``[`` inside a class is a literal (Python warns of a future nested set),
  and so are ``&&``, ``||``, ``~~`` and ``--`` (a set operation to come, to Python).
- A named group is ``(?<name>...)`` and its backreference ``\\k<name>``, which Python
  spells ``(?P<name>...)`` and ``(?P=name)``.

Everything else is passed on as written (escapes like ``\\.``, ``\\$``, ``\\\\``,
``\\x41``, groups, lookarounds, quantifiers), so a pattern that uses Python-only syntax
(``(?P<name>...)``, ``\\Z``) keeps its Python meaning, and one Python cannot read is
still refused at registration. The translation is done once, when the schema is
compiled; matching costs what it did.
"""

from __future__ import annotations

import functools
import re

__all__ = ["compile_ecma", "ecma_to_python"]

_DIGIT = "0-9"
_WORD = "A-Za-z0-9_"
#: ECMA-262 WhiteSpace and LineTerminator code points, as they go inside a class
_SPACE = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
#: what ``\d``, ``\w`` and ``\s`` stand for, inside a class
_CLASSES = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_BOUNDARY = f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))"
_NOT_BOUNDARY = f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"
_DOT = "[^\\n\\r\\u2028\\u2029]"
#: characters that are literal in an ECMA-262 class but that Python reads as (future)
#: set operations there: escaped, which changes nothing for Python either
_SET_OPERATORS = frozenset("[&~|")


def ecma_to_python(pattern: str) -> str:
    """``pattern`` (ECMA-262, as JSON Schema means it) as a Python ``re`` pattern."""
    out: list[str] = []
    index, end = 0, len(pattern)
    while index < end:
        char = pattern[index]
        if char == "\\" and index + 1 < end:
            escaped = pattern[index + 1]
            index += 2
            lower = escaped.lower()
            if lower in _CLASSES:
                negated = "^" if escaped.isupper() else ""
                out.append(f"[{negated}{_CLASSES[lower]}]")
            elif escaped == "b":
                out.append(_BOUNDARY)
            elif escaped == "B":
                out.append(_NOT_BOUNDARY)
            elif escaped == "k" and pattern.startswith("<", index) and ">" in pattern[index:]:
                close = pattern.index(">", index)  # \k<name>: a named backreference
                out.append(f"(?P={pattern[index + 1 : close]})")
                index = close + 1
            else:
                out.append(char + escaped)
        elif (
            char == "("
            and pattern.startswith("?<", index + 1)
            and (not pattern.startswith(("?<=", "?<!"), index + 1))
        ):  # (?<name>...): a named group, which Python spells (?P<name>...)
            out.append("(?P<")
            index += 3
        elif char == "[":
            text, index = _class(pattern, index + 1)
            out.append(text)
        elif char == "$":
            out.append("\\Z")
            index += 1
        elif char == ".":
            out.append(_DOT)
            index += 1
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _class(pattern: str, index: int) -> tuple[str, int]:
    """The class starting at ``pattern[index]`` (just past its ``[``) in Python's syntax,
    and the index just past its ``]``.

    ``\\d``, ``\\w`` and ``\\s`` put their ranges in the class; ``\\D``, ``\\W`` and
    ``\\S`` cannot be put in a Python class beside other items, so a class holding one
    becomes a group: ``[a\\D]`` is ``(?:[a]|[^0-9])``, ``[^a\\D]`` is ``(?:(?![a])(?=[0-9])
    [\\s\\S])`` (neither ``a`` nor a non-digit: a digit other than ``a``).
    """
    end = len(pattern)
    negated = index < end and pattern[index] == "^"
    if negated:
        index += 1
    items: list[str] = []  # the class's own items, in Python's syntax
    opposites: list[str] = []  # the ranges of \D, \W and \S items
    while index < end and pattern[index] != "]":
        char = pattern[index]
        if char == "\\" and index + 1 < end:
            escaped = pattern[index + 1]
            index += 2
            lower = escaped.lower()
            if lower in _CLASSES:
                if escaped.isupper():
                    opposites.append(_CLASSES[lower])
                else:
                    items.append(_CLASSES[lower])
            else:
                items.append(char + escaped)
        elif char == "-" and items and items[-1] == "-":  # Python warns of a set difference
            items.append("\\-")
            index += 1
        else:
            items.append("\\" + char if char in _SET_OPERATORS else char)
            index += 1
    if index >= end:  # no closing bracket: Python refuses it as it refuses the original
        return "[" + ("^" if negated else "") + "".join(items), index
    index += 1  # past "]"
    own = "".join(items)
    if not opposites:
        if not own:  # ECMA-262: [] matches nothing, [^] any character
            return ("[\\s\\S]" if negated else "(?!)"), index
        return f"[{'^' if negated else ''}{own}]", index
    if negated:  # in none of the items: not in the own ones, in every opposite's range
        parts = [f"(?![{own}])"] if own else []
        parts += [f"(?=[{ranges}])" for ranges in opposites]
        return f"(?:{''.join(parts)}[\\s\\S])", index
    options = [f"[{own}]"] if own else []
    options += [f"[^{ranges}]" for ranges in opposites]
    return f"(?:{'|'.join(options)})", index


@functools.lru_cache(maxsize=1024)
def compile_ecma(pattern: str) -> re.Pattern[str]:
    """The compiled Python form of the ECMA-262 ``pattern`` (``re.error`` if invalid)."""
    return re.compile(ecma_to_python(pattern))
