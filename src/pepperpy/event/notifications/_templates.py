"""Notification templates: Jinja2 in a sandbox, with per-channel variants.

A template is a name plus up to three parts per variant: a text body, an HTML body and a
subject. A variant is either generic or for one channel (by the name it was added under,
or its kind such as ``email``/``sms``/``push``); the most specific variant that has a
body wins, and the subject comes from the most specific variant that has one.

Rendering runs in Jinja2's ``SandboxedEnvironment``, bounded in size and time (see
``_sandbox``), with ``StrictUndefined``: templates cannot reach Python internals
(``__class__``, ``__globals__``, ...) nor compute without limit, and a missing variable
is an error naming it instead of an empty string in a customer's inbox. HTML parts are
autoescaped; text parts are not (they are not HTML).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._deps import require
from .._errors import (
    ConfigurationError,
    MissingDependencyError,
    TemplateError,
    TemplateNotFound,
)
from ._environment import bounded_environment
from ._html_text import html_to_text
from ._models import one_line
from ._sandbox import RENDER_TIMEOUT, late, past_deadline, render_bounded, rendering

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

__all__ = ["BUILTIN_TEMPLATES", "Rendered", "TemplateLibrary"]

_PARTS = ("text", "html", "subject")

#: the oldest Jinja2 whose sandbox holds: 3.1.5 and older let a template escape it
#: (CVE-2024-56326 through ``str.format``, CVE-2025-27516 through the ``|attr`` filter)
MIN_JINJA2 = (3, 1, 6)

#: templates that exist out of the box; any template of the same name replaces them
BUILTIN_TEMPLATES: dict[str, dict[str, str]] = {
    "welcome": {
        "subject": "Welcome{% if user is defined and user.name is defined %}, "
        "{{ user.name }}{% endif %}!",
        "text": "Hi{% if user is defined and user.name is defined %} {{ user.name }}"
        "{% endif %},\n\nwelcome aboard! Your account is ready.\n",
    },
}


_UNSET: Any = object()


def _welcome_name(context: Mapping[str, Any]) -> Any:
    """``user.name`` as the Jinja2 source above reads it (a key or an attribute), or unset."""
    user = context.get("user", _UNSET)
    if user is _UNSET:
        return _UNSET
    if isinstance(user, Mapping):
        return user.get("name", _UNSET)
    return getattr(user, "name", _UNSET)


def _welcome_subject(context: Mapping[str, Any]) -> str:
    name = _welcome_name(context)
    return "Welcome!" if name is _UNSET else f"Welcome, {name}!"


def _welcome_text(context: Mapping[str, Any]) -> str:
    name = _welcome_name(context)
    greeting = "Hi" if name is _UNSET else f"Hi {name}"
    return f"{greeting},\n\nwelcome aboard! Your account is ready."  # Jinja2 drops the last newline


#: the built-in templates written in Python, used when Jinja2 is not installed, so that
#: the seed's ``template="welcome"`` works on a core install; tests check that each
#: renders exactly what its Jinja2 source does
BUILTIN_RENDERERS: dict[str, dict[str, Callable[[Mapping[str, Any]], str]]] = {
    "welcome": {"subject": _welcome_subject, "text": _welcome_text},
}


class _Plain:
    """A built-in template part written in Python, with a Jinja2 template's ``render``."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[[Mapping[str, Any]], str]) -> None:
        self._function = function

    def render(self, context: Mapping[str, Any]) -> str:
        return self._function(context)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A template rendered for one channel."""

    subject: str | None
    body: str
    html: str | None


@dataclass(slots=True)
class _Variant:
    """The compiled parts of one variant (any may be missing)."""

    text: Template | _Plain | None = None
    html: Template | _Plain | None = None
    subject: Template | _Plain | None = None

    @property
    def has_body(self) -> bool:
        return self.text is not None or self.html is not None


@dataclass(frozen=True, slots=True)
class _Choice:
    """The resolved variants of one template for one channel (cached until a change)."""

    body_key: str | None
    variant: _Variant
    subject_key: str | None
    subject: Template | _Plain | None


class TemplateLibrary:
    """Named templates with channel variants, from code and/or a directory.

    Directory layout (``template_dir``), ``<channel>`` being optional::

        welcome.txt               generic text body
        welcome.html              generic HTML body
        welcome.subject.txt       generic subject (one line; surrounding space trimmed)
        welcome.email.txt         text body for the ``email`` channel
        welcome.email.html        HTML body for the ``email`` channel
        welcome.email.subject.txt subject for the ``email`` channel
        welcome.sms.txt           text for the ``sms`` channel

    Subdirectories give names with slashes (``billing/receipt.txt`` is
    ``billing/receipt``); ``{% include %}``/``{% extends %}`` resolve inside the
    directory, and files whose name starts with ``_`` are partials for that, not
    templates. Files are scanned and compiled once, at construction, so syntax errors
    show at start-up.
    """

    def __init__(
        self, template_dir: str | os.PathLike[str] | None = None, *, builtins: bool = True
    ) -> None:
        self._dir = Path(template_dir) if template_dir is not None else None
        if self._dir is not None and not self._dir.is_dir():
            raise ConfigurationError(f"template_dir {str(self._dir)!r} is not a directory")
        self._templates: dict[str, dict[str | None, _Variant]] = {}
        self._builtin_sources = BUILTIN_TEMPLATES if builtins else {}
        self._builtins: dict[str, dict[str | None, _Variant]] = {}
        self._choices: dict[tuple[str, tuple[str, ...]], _Choice] = {}
        self._text_env: SandboxedEnvironment | None = None
        self._html_env: SandboxedEnvironment | None = None
        if self._dir is not None:
            self._scan(self._dir)

    # -- building ---------------------------------------------------------------------

    def _environments(self) -> tuple[SandboxedEnvironment, SandboxedEnvironment]:
        if self._text_env is None or self._html_env is None:
            jinja2 = require(
                "jinja2", extra="templates", feature="rendering notification templates"
            )
            _check_jinja2_version(str(getattr(jinja2, "__version__", "")))
            sandbox = require(
                "jinja2.sandbox", extra="templates", feature="rendering notification templates"
            )
            loader = jinja2.FileSystemLoader(str(self._dir)) if self._dir is not None else None
            common: dict[str, Any] = {"undefined": jinja2.StrictUndefined, "loader": loader}
            environment = bounded_environment(sandbox)
            self._text_env = environment(autoescape=False, **common)
            self._html_env = environment(autoescape=True, **common)
        return self._text_env, self._html_env

    def _compile(self, source: str, part: str, name: str, channel: str | None) -> Template:
        if not isinstance(source, str):
            raise TypeError(f"template {part} must be a str, got {type(source).__name__}")
        text_env, html_env = self._environments()
        env = html_env if part == "html" else text_env
        try:
            return env.from_string(source)
        except Exception as exc:
            raise TemplateError(
                f"template {_label(name, channel, part)} does not compile: {exc}"
            ) from exc

    def add(
        self,
        name: str,
        body: str | None = None,
        *,
        subject: str | None = None,
        channel: str | None = None,
        html: str | None = None,
    ) -> None:
        """Add (or replace) the variant of ``name`` for ``channel`` (None: generic)."""
        if not isinstance(name, str) or not name:
            message = f"template name must be a non-empty str, got {name!r}"
            raise TypeError(message) if not isinstance(name, str) else ValueError(message)
        if channel is not None and (not isinstance(channel, str) or not channel):
            message = f"channel must be a non-empty str or None, got {channel!r}"
            raise TypeError(message) if not isinstance(channel, str) else ValueError(message)
        if body is None and html is None:
            raise ValueError(f"template {name!r} needs a body (text) or html")
        variant = _Variant()
        if body is not None:
            variant.text = self._compile(body, "text", name, channel)
        if html is not None:
            variant.html = self._compile(html, "html", name, channel)
        if subject is not None:
            variant.subject = self._compile(subject, "subject", name, channel)
        self._templates.setdefault(name, {})[channel] = variant
        self._choices.clear()

    def _scan(self, root: Path) -> None:
        text_env, html_env = self._environments()
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix not in (".txt", ".html"):
                continue
            relative = path.relative_to(root).as_posix()
            folder, _, filename = relative.rpartition("/")
            pieces = filename.split(".")
            ext = pieces.pop()
            part = "html" if ext == "html" else "text"
            if len(pieces) >= 2 and pieces[-1] == "subject" and ext == "txt":
                part = "subject"
                pieces.pop()
            if filename.startswith("_") or len(pieces) not in (1, 2) or not all(pieces):
                continue  # a partial (``_footer.html``) or not named by the convention
            name = f"{folder}/{pieces[0]}" if folder else pieces[0]
            channel = pieces[1] if len(pieces) == 2 else None
            env = html_env if part == "html" else text_env
            try:
                template = env.get_template(relative)
            except Exception as exc:
                raise TemplateError(f"template file {relative!r} does not compile: {exc}") from exc
            variants = self._templates.setdefault(name, {})
            variant = variants.setdefault(channel, _Variant())
            setattr(variant, part, template)

    # -- looking up and rendering ------------------------------------------------------

    def _builtin(self, name: str) -> dict[str | None, _Variant]:
        """The built-in template ``name``, compiled on first use (Jinja2 stays optional)."""
        variants = self._builtins.get(name)
        if variants is None:
            variant = _Variant()
            try:
                for part, source in self._builtin_sources[name].items():
                    setattr(variant, part, self._compile(source, part, name, None))
            except MissingDependencyError:  # no (safe) Jinja2: the Python version
                variant = _Variant()
                for part, function in BUILTIN_RENDERERS[name].items():
                    setattr(variant, part, _Plain(function))
            variants = self._builtins[name] = {None: variant}
        return variants

    def __contains__(self, name: object) -> bool:
        return name in self._templates or name in self._builtin_sources

    def names(self) -> list[str]:
        """Every template name known (added, from the directory, built in)."""
        return sorted(set(self._templates) | set(self._builtin_sources))

    def check(self, name: str) -> None:
        """Raise :class:`TemplateNotFound` unless a template called ``name`` exists."""
        if name not in self:
            known = ", ".join(repr(n) for n in self.names()) or "none"
            raise TemplateNotFound(f"no template named {name!r} (known: {known})")

    def _resolve(self, name: str, lookup: tuple[str, ...]) -> _Choice:
        """Which variant gives the body and which the subject, for these channel names."""
        choice = self._choices.get((name, lookup))
        if choice is not None:
            return choice
        self.check(name)
        variants = self._templates.get(name) or self._builtin(name)
        keys: list[str | None] = list(dict.fromkeys(lookup))
        keys.append(None)
        body_key = next((k for k in keys if k in variants and variants[k].has_body), "")
        if body_key == "":
            raise TemplateNotFound(
                f"template {name!r} has no variant for channel {keys[0]!r} and no generic one"
            )
        subject_key = next((k for k in keys if k in variants and variants[k].subject), "")
        choice = _Choice(
            body_key,
            variants[body_key],
            subject_key or None,
            variants[subject_key].subject if subject_key != "" else None,
        )
        if len(self._choices) < 4096:
            self._choices[(name, lookup)] = choice
        return choice

    def render(self, name: str, lookup: Iterable[str], context: Mapping[str, Any]) -> Rendered:
        """Render ``name`` for a channel known by the names in ``lookup`` (most specific first).

        Raises :class:`TemplateNotFound` when neither a variant for those names nor a
        generic one exists, and :class:`TemplateError` when rendering fails.
        """
        choice = self._resolve(name, tuple(lookup))
        chosen, body_key = choice.variant, choice.body_key
        with rendering():
            text = _render(chosen.text, name, body_key, "text", context)
            html = _render(chosen.html, name, body_key, "html", context)
            subject = _render(choice.subject, name, choice.subject_key, "subject", context)
            # an HTML-only variant's text is derived within the same deadline
            body = text if text is not None else _plain_text(html or "", name, body_key)
        if subject is not None:
            subject = one_line(subject)  # one header line, never an injected one
        return Rendered(subject=subject, body=body, html=html)


class OutdatedDependencyError(MissingDependencyError):
    """An optional dependency is installed but too old to be used safely."""

    __module__ = "pepperpy.event.notifications"  # where it is imported from

    def __init__(self, feature: str, extra: str, module: str, installed: str, minimum: str) -> None:
        super().__init__(feature, extra, module)
        self.msg = (
            f"{feature} needs {module} >= {minimum}, but {installed} is installed "
            f"(older versions let templates escape the sandbox): "
            f"pip install -U '{module}>={minimum}'"
        )
        self.args = (self.msg,)


def _check_jinja2_version(version: str) -> None:
    """Refuse a Jinja2 older than :data:`MIN_JINJA2` (its sandbox has known escapes)."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        return  # an unusual version string (a source checkout): nothing known against it
    found = tuple(int(part or 0) for part in match.groups())
    if found < MIN_JINJA2:
        minimum = ".".join(map(str, MIN_JINJA2))
        raise OutdatedDependencyError(
            "rendering notification templates", "templates", "jinja2", version, minimum
        )


def _render(
    template: Template | _Plain | None,
    name: str,
    channel: str | None,
    part: str,
    context: Mapping[str, Any],
) -> str | None:
    if template is None:
        return None
    try:
        if isinstance(template, _Plain):
            return template.render(context)
        return render_bounded(template, context, _security_error())
    except Exception as exc:
        kind = _describe(exc)
        raise TemplateError(f"template {_label(name, channel, part)} failed: {kind}{exc}") from exc


def _security_error() -> type[Exception]:
    from jinja2.exceptions import SecurityError  # loaded already: a template exists

    return SecurityError


def _describe(exc: Exception) -> str:
    kind = type(exc).__name__
    if kind == "UndefinedError":
        return "undefined variable: "
    if kind == "SecurityError":
        return "the sandbox refused: "
    return f"{kind}: "


def _label(name: str, channel: str | None, part: str) -> str:
    variant = f"{channel} variant" if channel else "generic"
    return f"{name!r} ({variant}, {part})"


def _plain_text(markup: str, name: str, channel: str | None) -> str:
    """The plain text of an HTML part (for SMS, push, the email text part), derived
    within the render's deadline: on the event loop, past its budget, the render is
    done again in a thread (:func:`~._sandbox.late`)."""

    def check() -> None:
        if past_deadline():
            late()
            raise TemplateError(
                f"template {_label(name, channel, 'html')}: deriving its plain text took "
                f"over {RENDER_TIMEOUT:g}s"
            )

    return html_to_text(markup, check)
