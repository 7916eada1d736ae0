"""``pepperpy-event validate``: check data, or stored events, against event schemas.

Schemas come from JSON Schema files (``--schema user.created=user.json``, or
``user.created@2=user-v2.json`` for a version) and/or from an
:class:`~pepperpy.event.EventValidator` in the user's code (``--validator
myapp.events:validator``; the working directory is importable, as with uvicorn).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from .. import _json
from .._errors import ConfigurationError, SerializationError, ValidationError
from .._event import Event
from ..store import EventStore
from ..validation import EventValidator
from ._output import field
from ._shell import checked_name

__all__ = ["Checked", "build_validator", "check_store"]


def _load_validator(spec: str) -> EventValidator:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"--validator must look like module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"--validator {spec}: cannot import {module_name!r}: {exc}"
        ) from exc
    except SyntaxError as exc:  # the user's code, not ours: say where, as Python would
        raise ConfigurationError(
            f"--validator {spec}: syntax error at {exc.filename}:{exc.lineno}: {exc.msg}"
        ) from exc
    except Exception as exc:  # the module raised while it was imported
        raise ConfigurationError(
            f"--validator {spec}: importing {module_name!r} raised {type(exc).__name__} "
            f"at {_where(exc)}: {exc}"
        ) from exc
    except SystemExit as exc:  # a script's top-level code: it ended the command silently
        raise ConfigurationError(
            f"--validator {spec}: importing {module_name!r} called sys.exit({exc.code!r}) at "
            f"{_where(exc)}: the module runs a program when imported; put that code under "
            "if __name__ == '__main__':"
        ) from exc
    value = getattr(module, attribute, None)
    if not isinstance(value, EventValidator):
        if not hasattr(module, attribute):
            raise ConfigurationError(
                f"--validator {spec}: module {module_name!r} has no attribute {attribute!r}"
            )
        found = type(value).__name__
        raise ConfigurationError(f"--validator {spec}: expected an EventValidator, found {found}")
    return value


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame that raised ``exc``."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _register_file(validator: EventValidator, spec: str) -> None:
    target, sep, file_name = spec.partition("=")
    if not sep or not target or not file_name:
        raise ConfigurationError(f"--schema must look like TYPE=FILE.json, got {spec!r}")
    event_type, at, raw_version = target.partition("@")
    if at and not (raw_version.isascii() and raw_version.isdigit() and int(raw_version) >= 1):
        raise ConfigurationError(f"--schema {spec}: the version after @ must be a number >= 1")
    checked_name(event_type, f"--schema {spec}: TYPE", "type")
    path = Path(file_name)
    try:
        schema = _json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"--schema {spec}: {file_name} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
            f"at offset {exc.start}"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"--schema {spec}: cannot read {file_name}: {exc.strerror}"
        ) from exc
    except SerializationError as exc:
        raise ConfigurationError(f"--schema {spec}: {exc}") from exc
    if not isinstance(schema, dict):
        raise ConfigurationError(f"--schema {spec}: a JSON Schema must be an object")
    try:
        validator.register(event_type, schema, version=int(raw_version) if at else 1)
    except ConfigurationError as exc:  # which of several --schema files is wrong
        raise ConfigurationError(f"--schema {spec}: {exc}") from None


def build_validator(schemas: Sequence[str], validator_spec: str | None) -> EventValidator:
    """One validator from ``--validator`` (if given) plus every ``--schema`` file."""
    if not schemas and validator_spec is None:
        raise ConfigurationError("give schemas: --schema TYPE=FILE.json or --validator module:attr")
    validator = EventValidator() if validator_spec is None else _load_validator(validator_spec)
    for spec in schemas:
        _register_file(validator, spec)
    return validator


class Checked(NamedTuple):
    """What ``validate`` found in the store."""

    checked: int
    invalid: int
    #: of types without a schema: counted, not failed (a store holds more kinds of
    #: events than one schema file describes)
    unchecked: int
    #: encrypted at rest: the command holds no key, so their data cannot be checked
    sealed: int = 0


async def check_store(
    store: EventStore,
    validator: EventValidator,
    streams: list[str] | None,
    types: list[str] | None,
    say: Callable[[str], None],
) -> Checked:
    """Validate every stored event with a schema; report the invalid ones.

    An event whose data is encrypted (a store written with ``encryption=``) is counted
    as sealed, not checked: its data read here is the ciphertext's envelope, which every
    schema refused, so each encrypted event was reported invalid.
    """
    from ..security._envelope import is_envelope

    checked = invalid = unchecked = sealed = 0
    async for event in store.read_all(0, streams=streams, types=types):
        if event.type not in validator:
            unchecked += 1
            continue
        if is_envelope(event.data):
            sealed += 1
            continue
        checked += 1
        problem = await _problem(validator, event)
        if problem is not None:
            invalid += 1
            where = f"{field(event.stream)}:{event.position} {field(event.type)}"
            say(f"{event.global_position} {where}: {problem}")
    return Checked(checked, invalid, unchecked, sealed)


async def _problem(validator: EventValidator, event: Event) -> str | None:
    version = event.version if event.version in validator.versions(event.type) else None
    try:
        await validator.validate(event.type, event.data, version=version)
    except ValidationError as exc:
        return "; ".join(str(problem) for problem in exc.errors)
    return None
