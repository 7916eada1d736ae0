"""The public surface: ``__all__`` is sorted and complete, and every name in it imports.

Derived from ``_EXPORTS`` rather than a hard-coded list, so it keeps holding as areas add
names (after httpx's ``tests/test_exported_members.py``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pepperpy.event as package
from pepperpy.event import EventError

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(package.__file__).resolve().parent
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _exported_objects() -> dict[int, str]:
    return {id(getattr(package, name)): name for name in package.__all__}


def test_all_is_sorted_unique_and_matches_the_exports_map() -> None:
    assert package.__all__ == sorted(package.__all__)
    assert len(set(package.__all__)) == len(package.__all__)
    assert set(package.__all__) == set(package._EXPORTS)


@pytest.mark.parametrize("name", sorted(package._EXPORTS))
def test_every_exported_name_imports_from_its_module(name: str) -> None:
    value = getattr(package, name)
    module = importlib.import_module(package._EXPORTS[name], package.__name__)
    assert getattr(module, name) is value
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__.startswith("pepperpy.event"), value.__module__
        assert value.__name__ == name, "exported under its own name"


def test_star_import_and_dir_offer_exactly_the_public_names() -> None:
    namespace: dict[str, Any] = {}
    exec("from pepperpy.event import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(package.__all__)
    assert set(package.__all__) <= set(dir(package))


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        package.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from pepperpy.event import NoSuchThing", {})


def test_the_type_checking_block_lists_the_same_names() -> None:
    """Both halves of ``__init__`` are kept in step: the lazy map and what type checkers see."""
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text())
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for alias in stmt.names:
                    assert alias.asname == alias.name, f"use 'import {alias.name} as {alias.name}'"
                    seen[alias.name] = "." * stmt.level + (stmt.module or "")
    assert seen == package._EXPORTS


def test_every_error_class_is_exported() -> None:
    errors = importlib.import_module("pepperpy.event._errors")
    exported = _exported_objects()
    for name, value in vars(errors).items():
        if inspect.isclass(value) and value.__module__ in (errors.__name__, package.__name__):
            assert id(value) in exported, f"{name} is part of the error tree but not exported"
            if name != "ValidationProblem":
                assert issubclass(value, EventError)


def _annotations(obj: Any) -> list[tuple[str, dict[str, Any]]]:
    """(annotation text, module globals) for a function, class members and properties."""
    found: list[tuple[str, dict[str, Any]]] = []

    def of_function(func: Any) -> None:
        func = inspect.unwrap(func)
        namespace = getattr(func, "__globals__", None)
        if namespace is None:
            return
        for annotation in getattr(func, "__annotations__", {}).values():
            found.append(
                (annotation if isinstance(annotation, str) else repr(annotation), namespace)
            )

    if inspect.isclass(obj):
        module_globals = vars(sys.modules[obj.__module__])
        for annotation in getattr(obj, "__annotations__", {}).values():
            if isinstance(annotation, str):
                found.append((annotation, module_globals))
        for name, member in vars(obj).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, property):
                if member.fget is not None:
                    of_function(member.fget)
            elif isinstance(member, staticmethod | classmethod):
                of_function(member.__func__)
            elif inspect.isfunction(member):
                of_function(member)
    elif inspect.isfunction(obj):
        of_function(obj)
    return found


#: the foundation modules whose signatures this test holds to the rule below
CORE_MODULES = (
    "pepperpy.event._event",
    "pepperpy.event._patterns",
    "pepperpy.event._retry",
    "pepperpy.event._manager",
    "pepperpy.event._bus",
    "pepperpy.event.transports",
)


def test_classes_in_core_signatures_are_exported() -> None:
    """A class a user must name to use the API (a parameter or result type) is public."""
    exported = _exported_objects()
    missing: dict[str, set[str]] = {}
    for name in package.__all__:
        value = getattr(package, name)
        if not getattr(value, "__module__", "").startswith(CORE_MODULES):
            continue
        for text, namespace in _annotations(value):
            for word in IDENTIFIER.findall(text):
                target = namespace.get(word)
                if (
                    inspect.isclass(target)
                    and target.__module__.startswith("pepperpy.event")
                    and not target.__name__.startswith("_")
                    and id(target) not in exported
                ):
                    missing.setdefault(f"{target.__module__}.{target.__name__}", set()).add(name)
    assert not missing, f"used in public signatures but not exported: {missing}"


def _doc_imports() -> set[str]:
    """Names the README and docs import with ``from pepperpy.event import ...``."""
    names: set[str] = set()
    statement = re.compile(
        r"^[ \t]*from pepperpy\.event import (?:\(([^)]*)\)|([\w, \t]+?))[ \t]*(?:#.*)?$",
        re.MULTILINE,
    )
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if not path.exists():
            continue
        for match in statement.finditer(path.read_text()):
            listed = match.group(1) if match.group(1) is not None else match.group(2)
            for part in re.sub(r"#.*", "", listed).split(","):
                name = part.split(" as ")[0].strip()
                if name:
                    names.add(name)
    return names


def test_every_name_the_docs_import_is_exported() -> None:
    assert {"Event", "EventManager", "RetryPolicy"} <= _doc_imports(), "the scan finds imports"
    missing = sorted(name for name in _doc_imports() if name not in package.__all__)
    assert not missing, f"the docs import names pepperpy.event does not export: {missing}"


def test_pepperpy_is_a_namespace_package() -> None:
    import pepperpy

    assert getattr(pepperpy, "__file__", None) is None
    assert type(pepperpy.__path__).__name__ == "_NamespacePath"
    assert not (PACKAGE_DIR.parent / "__init__.py").exists()
    assert (PACKAGE_DIR / "py.typed").exists()


def test_importing_the_package_and_the_core_loads_no_optional_driver() -> None:
    drivers = ["asyncpg", "redis", "nats", "aio_pika", "aiosmtplib", "httpx", "apprise", "jinja2"]
    code = (
        "import sys, pepperpy.event as pe\n"
        "pe.EventManager, pe.EventBus, pe.Event, pe.RetryPolicy, pe.PatternIndex\n"
        f"print([m for m in {drivers!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_version_is_exposed() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", package.__version__)
