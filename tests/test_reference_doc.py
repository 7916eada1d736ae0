"""docs/reference.md, the lookup page, stays complete and true to the code.

- every name in the ``__all__`` of ``pepperpy.event`` and of each public subpackage has an
  entry (a ``### `Name``` heading), and every entry names something public;
- every public method, property and attribute of each public class appears under its
  class's heading (members inherited from another class with an entry are covered by that
  entry when the section names it);
- every signature shown (the ``text`` block under a heading, and each member line
  ``- `name(...)```) has the real parameters: same names, same kinds (``/``, ``*``,
  ``*args``, ``**kwargs``), in the same order, compared with :func:`inspect.signature`;
- every ``page.md#anchor`` link points to a heading that exists.

Adding a public name, method or parameter without documenting it here fails this test:
that is its purpose.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pepperpy.event as package

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC = DOCS / "reference.md"

HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
ENTRY = re.compile(r"^### `(\w+)`$")
#: a member line: ``- `name(...) -> T` (async): ...`` or ``- `name```: the name, the rest
#: of the code span, and the parenthesised note after it (``async`` marks a coroutine)
MEMBER = re.compile(r"^- `(?:async )?(\w+)([^`]*)`( \([^)]*\))?", re.MULTILINE)
#: another member named in running text ("Fields: `a` (`int`), `b` ...")
NAMED = re.compile(r"`(\w+)(?=[`(: ])")
LINK = re.compile(r"\]\(([\w.-]+\.md)(?:#([\w-]+))?\)")
LOCAL_LINK = re.compile(r"\]\(#([\w-]+)\)")


def public_packages() -> list[ModuleType]:
    """``pepperpy.event`` and every subpackage whose path has no ``_``-prefixed part."""
    found = [package]
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        parts = info.name.split(".")[2:]
        if info.ispkg and not any(part.startswith("_") for part in parts):
            module = importlib.import_module(info.name)
            if hasattr(module, "__all__"):
                found.append(module)
    return found


def public_names() -> dict[str, Any]:
    """Every name a public ``__all__`` offers, with its object."""
    names: dict[str, Any] = {}
    for module in public_packages():
        for name in module.__all__:
            value = getattr(module, name)
            assert names.setdefault(name, value) is value, f"two public objects named {name}"
    return names


def strip_fences(text: str) -> list[tuple[str, bool]]:
    """The lines of ``text``, each with whether it is inside a fenced block."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            lines.append((line, True))
            fenced = not fenced
            continue
        lines.append((line, fenced))
    return lines


def sections(text: str) -> dict[str, str]:
    """Entry name -> the text under its ``### `Name``` heading, to the next heading."""
    found: dict[str, str] = {}
    current: str | None = None
    body: list[str] = []
    for line, fenced in strip_fences(text):
        heading = None if fenced else HEADING.match(line)
        if heading:
            if current is not None:
                assert current not in found, f"two entries for {current}"
                found[current] = "\n".join(body)
            entry = ENTRY.match(line)
            current = entry.group(1) if entry else None
            body = []
        else:
            body.append(line)
    if current is not None:
        assert current not in found, f"two entries for {current}"
        found[current] = "\n".join(body)
    return found


def missing_entries(names: dict[str, Any], text: str) -> list[str]:
    return sorted(set(names) - set(sections(text)))


# --- signatures -------------------------------------------------------------------------


def split_parameters(shown: str) -> list[str] | None:
    """The top-level comma-separated parts inside the first ``(...)`` of ``shown``."""
    start = shown.find("(")
    if start < 0:
        return None
    parts, depth, quote, current = [], 0, "", []
    for char in shown[start + 1 :]:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    else:
        raise AssertionError(f"unclosed parameter list: {shown}")
    last = "".join(current).strip()
    if last:
        parts.append(last)
    return parts


def shown_return(shown: str) -> str | None:
    """The annotation after ``-> `` following the parameter list, if shown."""
    depth, quote = 0, ""
    for index, char in enumerate(shown):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                rest = shown[index + 1 :].strip()
                return rest[3:].strip() if rest.startswith("->") else None
    return None


def real_return(signature: inspect.Signature) -> str | None:
    annotation = signature.return_annotation
    if annotation is inspect.Signature.empty:
        return None
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def awaited(function: Any) -> bool:
    function = inspect.unwrap(function)
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def shown_shape(shown: str) -> list[str] | None:
    """``f(a: int, /, b=1, *, c, **kw) -> X`` -> ``['a', '/', 'b', '*', 'c', '**kw']``."""
    parts = split_parameters(shown)
    if parts is None:
        return None
    shape = []
    for part in parts:
        match = re.match(r"\*{0,2}\w+|\*|/", part)
        assert match, f"cannot read parameter {part!r} in {shown}"
        shape.append(match.group(0))
    return shape


def real_shape(signature: inspect.Signature, *, drop_first: bool = False) -> list[str]:
    """The same shape from a real signature (``_private`` parameters are not shown)."""
    params = list(signature.parameters.values())[1 if drop_first else 0 :]
    shape: list[str] = []
    keyword_marker = False
    positional_only = [p for p in params if p.kind is p.POSITIONAL_ONLY]
    for param in params:
        if param.kind is param.KEYWORD_ONLY and not keyword_marker:
            shape.append("*")
            keyword_marker = True
        if param.kind is param.VAR_POSITIONAL:
            keyword_marker = True
            shape.append(f"*{param.name}")
        elif param.kind is param.VAR_KEYWORD:
            shape.append(f"**{param.name}")
        elif not param.name.startswith("_"):
            shape.append(param.name)
        if positional_only and param is positional_only[-1]:
            shape.append("/")
    return shape


def member_shape(cls: type, name: str) -> list[str] | None:
    """The real shape of ``cls.name``, or None when it is not callable (a property...)."""
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, staticmethod | classmethod):
        return real_shape(inspect.signature(getattr(cls, name)))
    if inspect.isfunction(raw):
        return real_shape(inspect.signature(raw), drop_first=True)
    return None


def signature_problems(name: str, value: Any, section: str) -> list[str]:
    problems: list[str] = []
    fence = re.search(r"^```text\n(.*?)\n```", section, re.MULTILINE | re.DOTALL)
    shown = fence.group(1).strip() if fence else None
    if shown is not None:
        marked_async = shown.startswith("async ")
        shown = re.sub(r"^async ", "", shown)
        if not shown.startswith(f"{name}("):
            problems.append(f"{name}: the signature block shows {shown[:40]!r}")
        elif not (inspect.isclass(value) or callable(value)):
            problems.append(f"{name}: a signature is shown, but it is not callable")
        else:
            signature = inspect.signature(value)
            real = real_shape(signature)
            if shown_shape(shown) != real:
                problems.append(f"{name}: shows {shown_shape(shown)}, the code takes {real}")
            if not inspect.isclass(value):
                problems += return_problems(name, shown, signature)
                if marked_async != awaited(value):
                    problems.append(f"{name}: 'async' shown {marked_async}, is {awaited(value)}")
    if inspect.isclass(value):
        for match in MEMBER.finditer(section):
            member, rest, note = match.groups()
            if not hasattr(value, member):
                problems.append(f"{name}.{member} is documented but does not exist")
                continue
            real_member = member_shape(value, member)
            if rest.startswith("("):
                if real_member is None:
                    problems.append(f"{name}.{member} is shown as a method but is not one")
                    continue
                if shown_shape(rest) != real_member:
                    problems.append(
                        f"{name}.{member}: shows {shown_shape(rest)}, the code takes {real_member}"
                    )
                function = getattr(value, member)
                problems += return_problems(f"{name}.{member}", rest, inspect.signature(function))
                marked_async = note is not None and "async" in note
                if marked_async != awaited(function):
                    problems.append(
                        f"{name}.{member}: '(async)' shown {marked_async}, is {awaited(function)}"
                    )
            elif real_member is not None:
                problems.append(f"{name}.{member} is a method: show its signature")
    return problems


def return_problems(name: str, shown: str, signature: inspect.Signature) -> list[str]:
    """A shown ``-> T`` must be the real annotation (spaces aside); one must be shown."""
    real, written = real_return(signature), shown_return(shown)
    if real is None or (written is not None and written.split() == real.split()):
        return []
    return [f"{name}: shows -> {written}, the code returns {real}"]


# --- members ----------------------------------------------------------------------------


def required_members(cls: type, documented: dict[int, str], section: str) -> list[str]:
    """Public members of ``cls`` its section must name.

    A member inherited from a class that has its own entry is covered there when the
    section names that class; so is an override that keeps the base's parameters.
    """
    bases = [
        base
        for base in cls.__mro__[1:]
        if id(base) in documented and f"`{base.__name__}`" in section
    ]
    required = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next(c for c in cls.__mro__ if name in vars(c))
        if not owner.__module__.startswith(package.__name__):
            continue  # from object, Exception, typing...
        covering = [base for base in bases if hasattr(base, name)]
        if any(owner in base.__mro__ for base in covering):
            continue  # inherited unchanged from a documented class the section names
        if covering and owner is cls:  # an override keeping the documented parameters
            shapes = {str(member_shape(base, name)) for base in covering}
            if str(member_shape(cls, name)) in shapes:
                continue
        required.append(name)
    return required


def named_in(section: str) -> set[str]:
    return {match.group(1) for match in MEMBER.finditer(section)} | set(NAMED.findall(section))


# --- links ------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line, fenced in strip_fences(text):
        heading = None if fenced else HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


# --- tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text()


def test_every_public_name_has_an_entry_and_every_entry_is_public(text: str) -> None:
    names = public_names()
    assert len(names) > 100, "the scan finds the public names"
    assert missing_entries(names, text) == [], "public names without an entry"
    assert sorted(set(sections(text)) - set(names)) == [], "entries for names not public"


def test_every_public_member_appears_under_its_class(text: str) -> None:
    names = public_names()
    documented = {id(value): name for name, value in names.items() if inspect.isclass(value)}
    by_section = sections(text)
    missing = {}
    for name, value in names.items():
        if inspect.isclass(value):
            section = by_section.get(name, "")
            absent = [
                m
                for m in required_members(value, documented, section)
                if m not in named_in(section)
            ]
            if absent:
                missing[name] = absent
    assert missing == {}, "public members not documented under their class"


def test_every_signature_shown_matches_the_code(text: str) -> None:
    names = public_names()
    problems = []
    for name, section in sections(text).items():
        if name in names:
            problems += signature_problems(name, names[name], section)
    assert problems == []


def test_every_callable_entry_shows_its_signature(text: str) -> None:
    by_section = sections(text)
    unshown = []
    for name, value in public_names().items():
        # an enum is used through its members: its "signature" is Enum's functional API,
        # which users do not call and which differs between Python versions
        if inspect.isfunction(value) or (
            inspect.isclass(value) and not issubclass(value, (BaseException, enum.Enum))
        ):
            if "```text\n" not in by_section.get(name, ""):
                unshown.append(name)
    assert unshown == []


def test_links_point_to_existing_headings(text: str) -> None:
    pages: dict[str, set[str]] = {}
    broken = []
    for page, anchor in LINK.findall(text):
        path = DOCS / page
        if not path.exists():
            broken.append(page)
            continue
        if page not in pages:
            pages[page] = anchors(path.read_text())
        if anchor and anchor not in pages[page]:
            broken.append(f"{page}#{anchor}")
    broken += [f"#{anchor}" for anchor in LOCAL_LINK.findall(text) if anchor not in anchors(text)]
    assert broken == []
    assert len(LINK.findall(text)) > 50, "the scan finds the links"


def test_every_entry_links_to_a_page_that_explains_it(text: str) -> None:
    unlinked = [name for name, section in sections(text).items() if not LINK.search(section)]
    assert unlinked == []


def test_readme_links_the_page() -> None:
    assert "(docs/reference.md)" in (ROOT / "README.md").read_text()


# --- the checks themselves can fail ----------------------------------------------------


def test_a_new_public_name_without_an_entry_is_reported(text: str) -> None:
    names = public_names()
    before = missing_entries(names, text)
    assert missing_entries({**names, "brand_new_helper": lambda: None}, text) == sorted(
        [*before, "brand_new_helper"]
    )


def test_a_wrong_parameter_list_is_reported() -> None:
    def emit(event_type: str, data: Any = None, *, key: str | None = None) -> None: ...

    class Fake:
        def send(self, item: int, /, *rest: Any, flag: bool = False, **extra: Any) -> None: ...

    good = (
        "```text\nemit(event_type: str, data: Any = None, *, key: str | None = None) -> None\n```\n"
    )
    assert signature_problems("emit", emit, good) == []
    bad = "```text\nemit(event_type: str, data: Any = None, key: str | None = None) -> None\n```\n"
    assert signature_problems("emit", emit, bad) != []  # key shown as positional
    fake = "- `send(item: int, /, *rest: Any, flag: bool = False, **extra: Any) -> None`: x\n"
    assert signature_problems("Fake", Fake, fake) == []
    assert signature_problems("Fake", Fake, fake.replace("flag", "flags")) != []
    assert signature_problems("Fake", Fake, "- `gone()`: removed\n") != []
    assert signature_problems("Fake", Fake, "- `send`: no signature\n") != []
    assert signature_problems("Fake", Fake, fake.replace("-> None", "-> int")) != []
    assert signature_problems("Fake", Fake, fake.replace("`: x", "` (async): x")) != []
    assert signature_problems("emit", emit, good.replace("emit(", "async emit(")) != []


def test_an_undocumented_member_is_reported() -> None:
    from pepperpy.event import EventManager

    documented = {id(EventManager): "EventManager"}
    section = "- `emit(event_type, data=None, metadata=None)`: dispatch\n"
    required = required_members(EventManager, documented, section)
    assert "on" in required and "emit" in required
    assert "on" not in named_in(section) and "emit" in named_in(section)


def test_the_anchor_rules_follow_github() -> None:
    text = "# A `b`: c, d\n```text\n# not a heading\n```\n## A `b`: c, d\n## CloudEvents 1.0\n"
    assert anchors(text) == {"a-b-c-d", "a-b-c-d-1", "cloudevents-10"}
