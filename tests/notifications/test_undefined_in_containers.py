"""A missing variable inside a list, tuple or dict is a TemplateError, as a bare one is.

StrictUndefined raises when an undefined value is printed itself, but Jinja2 writes a
container out with ``repr``, and an undefined value's ``repr`` is ``Undefined``: so
``{{ [missing] }}``, ``{{ (a, b.nmae) }}``, ``|pprint`` and the like used to send
"Undefined" in the message. Every place a value is written out now looks inside it.
"""

from __future__ import annotations

import pytest

from pepperpy.event import NotificationSystem, TemplateError
from tests.notifications.servers import MailSink

CONTEXT = {
    "user": {"name": "Ana", "email": "ana@example.com"},
    "order": {"lines": [{"sku": "A1"}], "total": 5},
}


def _system() -> NotificationSystem:
    notifications = NotificationSystem()
    notifications.add_channel("email", "memory://")
    return notifications


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("Items: {{ [missing] }}", "missing"),
        ("{{ (user.name, user.nmae) }}", "nmae"),
        ("{{ {'total': order.totl} }}", "totl"),
        ("{{ {order.key: 1} }}", "key"),
        ("{{ [[1, [order.deep]]] }}", "deep"),
        ("{{ order.lines|map(attribute='nmae')|list }}", "nmae"),
        ("{{ [order.totl]|list }}", "totl"),
        ("{{ missing|pprint }}", "missing"),
        ("{{ [missing]|pprint }}", "missing"),
        ("{{ [missing]|string }}", "missing"),
        ("{{ {'a': missing}|tojson }}", "missing"),
        ("{{ 'total: ' ~ [order.totl] }}", "totl"),
        ("{{ 'total: %s' % ([order.totl],) }}", "totl"),
        ("{{ 'total: {}'.format([order.totl]) }}", "totl"),
    ],
)
def test_a_missing_variable_written_out_inside_a_value_is_a_template_error(
    source: str, named: str
) -> None:
    notifications = _system()
    notifications.add_template("t", source)
    with pytest.raises(TemplateError, match=f"'t' \\(generic, text\\).*{named}"):
        notifications.render("t", "email", **CONTEXT)


def test_the_html_part_is_checked_too() -> None:
    notifications = _system()
    notifications.add_template("t", "ok", html="<p>{{ [user.nmae] }}</p>")
    with pytest.raises(TemplateError, match="'t' \\(generic, html\\).*nmae"):
        notifications.render("t", "email", **CONTEXT)


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("{{ order.lines|map(attribute='sku')|list }}", "['A1']"),
        ("{{ [user.name, order.total] }}", "['Ana', 5]"),
        ("{% set x = {'a': missing} %}{{ x.b|default('none') }}", "none"),
        ("{{ [missing is defined, user.name] }}", "[False, 'Ana']"),
        ("{% set l = [1] %}{% set _ = l.append(l) %}{{ l|length }}", "2"),
    ],
)
def test_values_without_a_missing_variable_render(source: str, body: str) -> None:
    notifications = _system()
    notifications.add_template("t", source)
    assert notifications.render("t", "email", **CONTEXT).body == body


async def test_nothing_reaches_the_smtp_server(smtp_server: tuple[MailSink, int]) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem()
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=noreply@example.com")
    notifications.add_template("receipt", "Items: {{ order.lines|map(attribute='nmae')|list }}")

    result = await notifications.notify(channels=["email"], template="receipt", **CONTEXT)

    assert isinstance(result["email"].error, TemplateError)
    assert "nmae" in str(result["email"].error)
    assert result["email"].attempts == 0
    assert sink.messages == []
    await notifications.close()
