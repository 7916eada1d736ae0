"""Templates: variants, files, subjects, strict rendering and the sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pepperpy.event import (
    ConfigurationError,
    MemoryChannel,
    MissingDependencyError,
    NotificationError,
    NotificationSystem,
    TemplateError,
    TemplateNotFound,
)


def _system(**options: object) -> NotificationSystem:
    notifications = NotificationSystem(**options)  # type: ignore[arg-type]
    for name in ("email", "sms", "push", "chat"):
        notifications.add_channel(name, "memory://")
    return notifications


def test_channel_variant_wins_over_generic() -> None:
    notifications = _system()
    notifications.add_template("welcome", "Generic hi {{ user.name }}", subject="Hi!")
    notifications.add_template("welcome", "SMS hi {{ user.name }}", channel="sms")
    user = {"name": "Ana"}

    email = notifications.render("welcome", "email", user=user)
    sms = notifications.render("welcome", "sms", user=user)

    assert (email.subject, email.body) == ("Hi!", "Generic hi Ana")
    assert sms.body == "SMS hi Ana"
    assert sms.subject == "Hi!"  # subject falls back to the generic variant's


def test_variant_by_kind_serves_a_differently_named_channel() -> None:
    notifications = _system()
    notifications.add_channel("transactional", "memory://", kind="email")
    notifications.add_template("receipt", "generic")
    notifications.add_template("receipt", "for email kind", channel="email")

    assert notifications.render("receipt", "transactional").body == "for email kind"


def test_only_a_channel_variant_means_other_channels_have_none() -> None:
    notifications = _system()
    notifications.add_template("code", "{{ code }}", channel="sms")

    with pytest.raises(TemplateNotFound, match="no variant for channel 'email'"):
        notifications.render("code", "email", code=1)


async def test_unknown_template_raises_before_sending() -> None:
    notifications = _system()

    with pytest.raises(TemplateNotFound, match="nope"):
        await notifications.notify(channels=["email"], template="nope", to="a@b.c")
    assert isinstance(TemplateNotFound("x"), NotificationError)


async def test_missing_variable_names_template_and_variable() -> None:
    notifications = _system()
    notifications.add_template("welcome", "Hello {{ user.name }} from {{ company }}")

    with pytest.raises(TemplateError) as info:
        notifications.render("welcome", "email", user={"name": "A"})
    assert "'welcome'" in str(info.value) and "company" in str(info.value)

    result = await notifications.notify(
        channels=["email", "chat"], template="welcome", to="a@b.c", user={"name": "A"}
    )
    assert isinstance(result["email"].error, TemplateError)
    assert result["email"].attempts == 0  # a broken template is never retried
    assert notifications.dead_letters[-1].template == "welcome"


def test_missing_attribute_is_an_error_not_an_empty_string() -> None:
    notifications = _system()
    notifications.add_template("t", "Hi {{ user.nmae }}")

    with pytest.raises(TemplateError, match="nmae"):
        notifications.render("t", "email", user={"name": "A"})


def test_syntax_error_is_raised_by_add_template() -> None:
    notifications = _system()
    with pytest.raises(TemplateError, match="'broken'"):
        notifications.add_template("broken", "{% if %}")


def test_html_is_autoescaped_and_text_is_not() -> None:
    notifications = _system()
    notifications.add_template("t", "{{ name }}", html="<p>{{ name }}</p>")

    rendered = notifications.render("t", "email", name="<script>x</script>")

    assert rendered.body == "<script>x</script>"
    assert rendered.html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"


def test_html_only_template_gets_a_text_body() -> None:
    notifications = _system()
    notifications.add_template("t", html="<h1>Hi &amp; welcome</h1>\n<p>{{ name }}</p>")

    rendered = notifications.render("t", "sms", name="Bo")

    assert rendered.body == "Hi & welcome\n\nBo"  # a heading, then a paragraph


def test_subject_is_one_line() -> None:
    notifications = _system()
    notifications.add_template("t", "b", subject="Hi\n{{ name }}\r\nBcc: x@evil.test")

    assert notifications.render("t", "email", name="A").subject == "Hi A Bcc: x@evil.test"


@pytest.mark.parametrize(
    "source",
    [
        "{{ user.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ user.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self._TemplateReference__context }}",
        "{{ '{0.__class__}'.format(user) }}",
        "{{ user.secret_method.__func__ }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_sandbox_blocks_python_internals(source: str) -> None:
    class User:
        name = "A"

        def secret_method(self) -> str:
            return "x"

    notifications = _system()
    notifications.add_template("evil", source)

    with pytest.raises(TemplateError) as info:
        notifications.render("evil", "email", user=User())
    assert "'evil'" in str(info.value)


def test_sandbox_bounds_ranges() -> None:
    notifications = _system()
    notifications.add_template("huge", "{{ range(10**9) | list | length }}")

    with pytest.raises(TemplateError, match="range"):
        notifications.render("huge", "email")


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_template_dir_convention(template_dir: Path) -> None:
    _write(template_dir, "welcome.txt", "Generic {{ user.name }}\n")
    _write(template_dir, "welcome.subject.txt", "  Welcome {{ user.name }}\n")
    _write(template_dir, "welcome.email.txt", "Email text {{ user.name }}")
    _write(template_dir, "welcome.email.html", "{% include '_footer.html' %}<b>{{ user.name }}</b>")
    _write(template_dir, "welcome.email.subject.txt", "Email subject {{ user.name }}")
    _write(template_dir, "welcome.sms.txt", "SMS {{ user.name }}")
    _write(template_dir, "_footer.html", "<i>{{ channel }}</i>")
    _write(template_dir, "billing/receipt.txt", "Paid {{ amount }}")
    _write(template_dir, "notes.md", "ignored")
    notifications = _system(template_dir=template_dir)
    user = {"name": "<Ana>"}

    email = notifications.render("welcome", "email", user=user, channel="email")
    sms = notifications.render("welcome", "sms", user=user)
    push = notifications.render("welcome", "push", user=user)

    assert email.subject == "Email subject <Ana>"
    assert email.body == "Email text <Ana>"
    assert email.html == "<i>email</i><b>&lt;Ana&gt;</b>"
    assert (sms.body, sms.subject) == ("SMS <Ana>", "Welcome <Ana>")
    assert (push.body, push.subject) == ("Generic <Ana>", "Welcome <Ana>")
    assert notifications.render("billing/receipt", "email", amount=3).body == "Paid 3"
    assert "welcome" in notifications.templates.names()
    assert "notes" not in notifications.templates.names()


def test_template_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a directory"):
        NotificationSystem(template_dir=tmp_path / "missing")


def test_added_template_replaces_builtin_welcome() -> None:
    notifications = _system()
    assert notifications.render("welcome", "email", user={"name": "Zoe"}).subject == (
        "Welcome, Zoe!"
    )
    assert notifications.render("welcome", "email").body.startswith("Hi,")

    notifications.add_template("welcome", "Custom", channel="email")

    assert notifications.render("welcome", "email").body == "Custom"
    with pytest.raises(TemplateNotFound):  # no built-in fallback once the name is yours
        notifications.render("welcome", "sms")


def test_builtins_can_be_switched_off() -> None:
    notifications = NotificationSystem(builtin_templates=False)
    notifications.add_channel("email", MemoryChannel())
    with pytest.raises(TemplateNotFound):
        notifications.render("welcome", "email")


async def test_template_context_has_channel_and_recipient() -> None:
    notifications = _system()
    notifications.add_template("t", "{{ channel }} -> {{ recipient }}")

    result = await notifications.notify(channels=["sms"], template="t", to="+1555")

    notification = result["sms"].notification
    assert notification is not None and notification.body == "sms -> +1555"


@pytest.mark.parametrize("version", ["3.1.5", "3.1.0", "3.0.3", "2.11.3"])
def test_a_jinja2_with_known_sandbox_escapes_is_refused(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    import jinja2

    monkeypatch.setattr(jinja2, "__version__", version)
    notifications = NotificationSystem()

    with pytest.raises(MissingDependencyError, match=r"jinja2 >= 3\.1\.6") as caught:
        notifications.add_template("t", "Hi {{ name }}")
    assert version in str(caught.value)
    assert "pip install -U 'jinja2>=3.1.6'" in str(caught.value)


@pytest.mark.parametrize("version", ["3.1.6", "3.1.10", "3.2.0", "4.0.0.dev1"])
def test_a_fixed_jinja2_builds_templates(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    import jinja2

    monkeypatch.setattr(jinja2, "__version__", version)
    notifications = _system()

    notifications.add_template("t", "Hi {{ name }}")

    assert notifications.render("t", "email", name="Ana").body == "Hi Ana"


def test_the_declared_jinja2_floor_has_the_sandbox_fixes() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    floors = [req for reqs in extras.values() for req in reqs if req.startswith("jinja2")]

    assert floors and all(req == "jinja2>=3.1.6" for req in floors), floors


class _Named:
    name = "Obj"


class _Nameless:
    pass


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"user": {"name": "Ana"}},
        {"user": {"name": None}},
        {"user": {"email": "a@b.c"}},
        {"user": {"name": "<b>Ünï</b> & co"}},
        {"user": _Named()},
        {"user": _Nameless()},
        {"user": "just text"},
        {"user": {"name": 42}, "plan": "pro"},
    ],
)
def test_builtin_templates_in_python_render_what_their_jinja2_source_does(
    context: dict[str, object],
) -> None:
    # used on a core install (no Jinja2): must say exactly what the Jinja2 source says
    from pepperpy.event.notifications._templates import (
        BUILTIN_RENDERERS,
        BUILTIN_TEMPLATES,
        TemplateLibrary,
    )

    assert BUILTIN_RENDERERS.keys() == BUILTIN_TEMPLATES.keys()
    library = TemplateLibrary()
    for name, parts in BUILTIN_TEMPLATES.items():
        assert BUILTIN_RENDERERS[name].keys() == parts.keys()
        for part, source in parts.items():
            jinja = library._compile(source, part, name, None).render(context)
            assert BUILTIN_RENDERERS[name][part](context) == jinja, (name, part, context)


async def test_the_builtin_welcome_template_works_without_jinja2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SPEC 9: the seed's snippet (template="welcome") runs out of the box, and the core
    # install has no Jinja2; templates of one's own still need it and say so
    monkeypatch.setitem(sys.modules, "jinja2", None)
    monkeypatch.setitem(sys.modules, "jinja2.sandbox", None)
    notifications = NotificationSystem()
    notifications.add_channel("email")
    await notifications.notify(
        channels=["email"], template="welcome", user={"name": "Ana", "email": "ana@example.com"}
    )
    [sent] = notifications.outbox
    assert (sent.subject, sent.body) == (
        "Welcome, Ana!",
        "Hi Ana,\n\nwelcome aboard! Your account is ready.",
    )
    with pytest.raises(MissingDependencyError, match=r"pepperpy-event\[templates\]"):
        notifications.add_template("mine", "Hello {{ user.name }}")
