"""EventValidator: schemas per event type and version, upcasters, strict validation.

How one registered schema checks data (fast path, walk, pydantic) is in ``_compiled.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, overload

from .._errors import ConfigurationError, SerializationError, ValidationError, ValidationProblem
from .._event import Event
from .._event_checks import _bad_version
from .._frozen import MAX_DEPTH, freeze
from .._options import check_count
from .._patterns import parse_topic
from .._text import MAX_VERSION
from ._compiled import Compiled
from ._freeze import nested_deeper
from ._nodes import Extra, describe, json_issue, surrogate_issue
from ._text_check import unencodable

__all__ = ["EventValidator"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
UnknownTypes = Literal["error", "pass"]

_EXTRA = ("forbid", "ignore", "allow")

#: the deepest JSON Schema document registered: a schema for data MAX_DEPTH levels deep
#: nests about two levels (the schema, its ``properties``) per level of data
MAX_SCHEMA_NESTING = 2 * MAX_DEPTH + 2


def _refuse_surrogates(data: Any, event_type: str) -> None:
    """Raise ValidationError naming where ``data`` (of an unknown type let through) holds
    a lone surrogate: ``Event()`` takes one, and the event fails when stored or sent."""
    if not unencodable(data):  # C; data it cannot tell about goes to the walk
        return
    found = surrogate_issue(data)
    if found is not None:
        problem = ValidationProblem(found[0], "JSON-representable data", describe(data), found[1])
        raise ValidationError([problem], event_type=event_type)


class EventValidator:
    """Validates event data against schemas registered per event type and version.

    Policies (documented in docs/validation.md):

    * ``unknown_types``: ``"error"`` (default) refuses event types without a schema;
      ``"pass"`` lets them through unchecked (their data must still be JSON-able).
    * ``extra_fields``: keys a schema does not declare. By default (``None``) each
      schema's own rule: a class refuses them, a JSON Schema follows its
      ``additionalProperties`` (absent: kept, as JSON Schema says). ``"forbid"`` reports
      them as problems, ``"ignore"`` drops them, ``"allow"`` keeps them, for every
      schema. A schema that says what it wants (``additionalProperties``, a msgspec
      Struct's ``forbid_unknown_fields``, a pydantic model's ``extra``) overrides it.
    * ``coerce``: ``False`` (default) converts nothing silently; ``True`` opts in to
      msgspec's lax rules (numeric strings for numbers, integral floats for ints,
      ``"true"``/``"false"``/``"1"``/``"0"``/``1``/``0`` for bools, ``"null"`` for
      null; pydantic models in pydantic's lax mode). A schema can override it.

    By default there is no silent coercion: ``"1"`` is not an int, ``1.0`` is not an int,
    ``True`` is not a number. JSON's own representations are accepted where a type has no JSON form:
    ISO 8601 strings for datetimes, base64 for bytes, strings for UUIDs and decimals;
    ints are accepted where a float is expected.
    """

    def __init__(
        self,
        *,
        unknown_types: UnknownTypes = "error",
        extra_fields: Extra | None = None,
        coerce: bool = False,
    ) -> None:
        if unknown_types not in ("error", "pass"):
            raise ConfigurationError(
                f"unknown_types must be 'error' or 'pass', got {unknown_types!r}"
            )
        if extra_fields is not None and extra_fields not in _EXTRA:
            raise ConfigurationError(
                "extra_fields must be 'forbid', 'ignore', 'allow' or None (each schema's "
                f"own rule), got {extra_fields!r}"
            )
        self.unknown_types: UnknownTypes = unknown_types
        self.extra_fields: Extra | None = extra_fields
        self.coerce = bool(coerce)
        self._schemas: dict[str, dict[int, Compiled]] = {}
        self._latest: dict[str, Compiled] = {}
        self._upcasters: dict[str, dict[int, Callable[[Any], Any]]] = {}

    # -- registration -----------------------------------------------------------------

    def schema(
        self,
        event_type: str,
        version: int = 1,
        *,
        extra_fields: Extra | None = None,
        coerce: bool | None = None,
    ) -> Callable[[T], T]:
        """Class decorator: register the class as the schema of ``event_type``/``version``.

        Accepts a plain annotated class, a dataclass, a TypedDict, a pydantic model or a
        msgspec Struct, and returns it unchanged.
        """

        def decorator(cls: T) -> T:
            self.register(
                event_type, cls, version=version, extra_fields=extra_fields, coerce=coerce
            )
            return cls

        return decorator

    def register(
        self,
        event_type: str,
        schema: Any,
        *,
        version: int = 1,
        extra_fields: Extra | None = None,
        coerce: bool | None = None,
    ) -> None:
        """Register ``schema`` (a class or a JSON Schema dict) for ``event_type``/``version``.

        The schema is compiled now, so a schema the validator cannot enforce is refused
        here with :class:`~pepperpy.event.ConfigurationError`, not at validation time.
        """
        parse_topic(event_type)
        check_count(version, "version")  # TypeError for no int, ConfigurationError for < 1
        extra = self.extra_fields if extra_fields is None else extra_fields
        if extra is not None and extra not in _EXTRA:
            raise ConfigurationError(f"extra_fields must be one of {_EXTRA}, got {extra!r}")
        if version in self._schemas.get(event_type, {}):
            raise ConfigurationError(f"{event_type!r} version {version} already has a schema")
        lax = self.coerce if coerce is None else bool(coerce)
        if isinstance(schema, Mapping) and nested_deeper(dict(schema), MAX_SCHEMA_NESTING):
            # measured, not left to a RecursionError, which comes sooner or later with the
            # caller's depth and with the recursion limit another thread may have raised
            raise ConfigurationError(
                f"the schema of {event_type!r} version {version} is nested too deeply to"
                f" compile (more than {MAX_SCHEMA_NESTING} levels of objects and lists)"
            )
        try:  # compiled before anything is recorded: a refused schema leaves no trace
            compiled = Compiled(event_type, version, schema, extra, lax)
        except RecursionError:
            raise ConfigurationError(
                f"the schema of {event_type!r} version {version} is nested too deeply to compile"
            ) from None
        versions = self._schemas.setdefault(event_type, {})
        versions[version] = compiled
        self._latest[event_type] = versions[max(versions)]

    @overload
    def upcaster(
        self, event_type: str, from_version: int, func: None = None
    ) -> Callable[[F], F]: ...

    @overload
    def upcaster(self, event_type: str, from_version: int, func: F) -> F: ...

    def upcaster(
        self, event_type: str, from_version: int, func: F | None = None
    ) -> F | Callable[[F], F]:
        """Register a sync or async function turning ``from_version`` data into the next.

        Upcasters chain: data of version 1 passes through 1->2, 2->3, ... up to the
        latest registered version, and the result is validated against that version.
        """
        parse_topic(event_type)
        check_count(from_version, "from_version")  # a bool is no version: TypeError

        def register(function: F) -> F:
            if not callable(function):
                raise TypeError(f"an upcaster must be callable, got {function!r}")
            chain = self._upcasters.setdefault(event_type, {})
            if from_version in chain:
                raise ConfigurationError(
                    f"{event_type!r} already has an upcaster from version {from_version}"
                )
            chain[from_version] = function
            return function

        if func is None:
            return register
        return register(func)

    def versions(self, event_type: str) -> list[int]:
        """The registered schema versions of ``event_type``, ascending."""
        return sorted(self._schemas.get(event_type, ()))

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._schemas

    # -- validation -------------------------------------------------------------------

    async def validate(
        self,
        event_type: str,
        data: Any,
        *,
        version: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Event:
        """Validate ``data`` and return an :class:`~pepperpy.event.Event` carrying it.

        ``version=None`` validates against the highest registered version. An older
        version is validated against its own schema, then upcast through the registered
        upcasters and validated again at each version reached; the Event carries the
        version it ends at. Raises :class:`~pepperpy.event.ValidationError` (listing
        every problem) for bad data of any shape.
        """
        try:
            return await self._validate(event_type, _plain(data, event_type), version, metadata)
        except RecursionError:
            problem = ValidationProblem(
                "", "data of bounded depth", "deeply nested data", "data nested too deeply"
            )
            raise ValidationError([problem], event_type=event_type) from None

    async def _validate(
        self,
        event_type: str,
        data: Any,
        version: int | None,
        metadata: Mapping[str, Any] | None,
    ) -> Event:
        compiled = self._compiled(event_type, version)
        if compiled is None:  # unknown type, let through: its data must still be JSON
            _refuse_surrogates(data, event_type)
            try:
                return Event(event_type, data, metadata, version=1 if version is None else version)
            except SerializationError as exc:
                actual = describe(data)
                problem = ValidationProblem("", "JSON-representable data", actual, str(exc))
                raise ValidationError([problem], event_type=event_type) from None
        reached = compiled.version
        upcasters = self._upcasters.get(event_type)
        if not upcasters or reached not in upcasters:
            return Event(event_type, compiled.frozen(data), metadata, version=reached)
        data = compiled.check(data)
        latest = self._latest[event_type].version
        while reached < latest and reached in upcasters:
            data = await self._upcast(event_type, upcasters[reached], data, reached)
            reached += 1
            compiled = self._schemas[event_type].get(reached, compiled)
            if compiled.version == reached:
                data = _upcast_checked(compiled, data, reached - 1, event_type)
        if compiled.version != reached:  # no schema at the version reached: JSON only
            found = json_issue(data)
            if found is not None:
                actual = describe(data)
                issue = ValidationProblem(found[0], "JSON-representable data", actual, found[1])
                raise ValidationError([issue], event_type=event_type)
            return Event(event_type, data, metadata, version=reached)
        return Event(event_type, compiled.frozen(data), metadata, version=reached)

    def _compiled(self, event_type: str, version: int | None) -> Compiled | None:
        """The schema to validate against; None for an unknown type that may pass."""
        if not isinstance(event_type, str):
            actual = describe(event_type)
            problem = ValidationProblem("", "event type (str)", actual, "bad event type")
            raise ValidationError([problem])
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise TypeError(f"version must be an int or None, got {version!r}")
        versions = self._schemas.get(event_type)
        if versions is None:
            if self.unknown_types == "pass":
                if version is not None and not 1 <= version <= MAX_VERSION:
                    raise _bad_version(version)  # as Event() says (0 was taken as 1)
                return None
            problem = ValidationProblem(
                "", "a registered event type", repr(event_type), "no schema is registered for it"
            )
            raise ValidationError([problem], event_type=event_type)
        compiled = self._latest[event_type] if version is None else versions.get(version)
        if compiled is None:
            known = ", ".join(str(v) for v in sorted(versions))
            problem = ValidationProblem(
                "", f"version {known}", repr(version), f"no schema for version {version!r}"
            )
            raise ValidationError([problem], event_type=event_type)
        return compiled

    def check(self, event_type: str, data: Any, *, version: int | None = None) -> tuple[Any, int]:
        """Synchronously validate ``data`` (no upcasting); return ``(data, version)``.

        The data comes back as plain (mutable) dicts and lists. What this accepts,
        :meth:`validate` accepts (data nested too deeply included); an unknown type let
        through by ``unknown_types="pass"`` must still be event data (JSON) here too.
        """
        compiled = self._compiled(event_type, version)
        data = _plain(data, event_type)
        if compiled is None:
            _refuse_surrogates(data, event_type)
            try:
                freeze(data)  # what Event() checks in validate()
            except SerializationError as exc:
                problem = ValidationProblem("", "JSON-representable data", describe(data), str(exc))
                raise ValidationError([problem], event_type=event_type) from None
            return data, 1 if version is None else version
        try:
            return compiled.check(data), compiled.version
        except RecursionError:
            problem = ValidationProblem(
                "", "data of bounded depth", "deeply nested data", "data nested too deeply"
            )
            raise ValidationError([problem], event_type=event_type) from None

    async def _upcast(
        self, event_type: str, upcaster: Callable[[Any], Any], data: Any, version: int
    ) -> Any:
        try:
            result = upcaster(dict(data) if isinstance(data, dict) else data)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            problem = ValidationProblem(
                "",
                f"data the version {version} upcaster accepts",
                describe(data),
                f"upcaster from version {version} failed: {type(exc).__name__}: {exc}",
            )
            raise ValidationError([problem], event_type=event_type) from exc
        return result


def _plain(data: Any, event_type: str) -> Any:
    """``data`` as validation reads it: a dataclass, pydantic model or msgspec Struct
    instance (as ``Event`` takes them) converted to its JSON form first, nested ones
    included; anything else as it is."""
    if not _is_model_instance(data):
        return data
    try:
        return freeze(data)
    except SerializationError as exc:
        problem = ValidationProblem("", "JSON-representable data", describe(data), str(exc))
        raise ValidationError([problem], event_type=event_type) from None


def _is_model_instance(data: Any) -> bool:
    if isinstance(data, type) or isinstance(data, Mapping | list | tuple | str):
        return False
    return (
        dataclasses.is_dataclass(data)
        or callable(getattr(data, "model_dump", None))
        or getattr(data, "__struct_fields__", None) is not None
    )


def _upcast_checked(compiled: Compiled, data: Any, upcaster: int, event_type: str) -> Any:
    """``compiled.check(data)`` for data the version ``upcaster`` upcaster returned: its
    problems say they are the upcaster's output, not the producer's payload (which was
    valid at its own version)."""
    try:
        return compiled.check(data)
    except ValidationError as exc:
        after = f"in what the version {upcaster} upcaster returned"
        problems = [
            ValidationProblem(p.path, p.expected, p.actual, f"{p.message} ({after})")
            for p in exc.errors
        ]
        raise ValidationError(problems, event_type=event_type) from exc
