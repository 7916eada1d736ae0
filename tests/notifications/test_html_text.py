"""The plain text derived from an HTML-only template: what a reader of the HTML sees."""

from __future__ import annotations

import threading

import pytest

from pepperpy.event import MemoryChannel, NotificationSystem, TemplateError
from tests.notifications.servers import MailSink

SHIPPED = """<html><head><title>Acme</title><style>p { color: #333 }</style></head>
<body><p>Hi {{ user.name }},</p><p>Your order <b>42</b> shipped.</p>
<ul><li>1 x Lamp</li><li>2 x Bulb</li></ul>
<p title="a > b">Thanks</p><script>track()</script></body></html>"""

SHIPPED_TEXT = "Hi Ana,\n\nYour order 42 shipped.\n\n- 1 x Lamp\n- 2 x Bulb\n\nThanks"


def _text(html: str, **context: object) -> str:
    notifications = NotificationSystem()
    notifications.add_channel("sms", "memory://")
    notifications.add_template("t", html=html)
    return notifications.render("t", "sms", **context).body


async def test_an_html_only_template_sends_the_text_a_reader_sees() -> None:
    notifications = NotificationSystem()
    sms = notifications.add_channel("sms", MemoryChannel())
    notifications.add_template("shipped", html=SHIPPED)

    result = await notifications.notify(
        channels=["sms"], template="shipped", user={"name": "Ana", "phone": "+15550001111"}
    )

    assert result.ok
    assert sms.outbox[0].body == SHIPPED_TEXT
    await notifications.close()


async def test_the_text_part_of_an_html_only_email_is_the_derived_text(
    smtp_server: tuple[MailSink, int],
) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem()
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=noreply@example.com")
    notifications.add_template("shipped", html=SHIPPED, subject="Shipped")

    result = await notifications.notify(
        channels=["email"], template="shipped", user={"name": "Ana", "email": "ana@example.com"}
    )

    assert result.ok, result.failed
    text = sink.messages[0].message.get_body(("plain",))
    html = sink.messages[0].message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n").strip() == SHIPPED_TEXT
    assert "<style>" in html.get_content()
    await notifications.close()


@pytest.mark.parametrize(
    ("html", "text"),
    [
        # what is not shown is not sent: head, title, style, script, comments, template
        (
            "<head><title>T</title><meta charset='utf-8'><style>b{}</style></head>"
            "<body>Shown<script>if (a < b) { x = '</p>' }</script></body>",
            "Shown",
        ),
        (
            "<head><title>T</title><p>a body element ends the head</p>",
            "a body element ends the head",
        ),
        ("a<!-- note -->b<!-- unclosed", "ab"),
        (
            "<!--[if mso]><table><tr><td>Outlook only</td></tr></table><![endif]-->"
            "<!--[if !mso]><!--><p>Everyone else</p><!--<![endif]-->",
            "Everyone else",
        ),
        ("<!DOCTYPE html><?xml version='1.0'?><p>x</p>", "x"),
        ("<template><p>inert</p></template>shown", "shown"),
        # hidden elements (an email's preview text) are not shown either
        (
            '<div style="display: none; max-height: 0">Preview &zwnj;&nbsp;&zwnj;</div><p>Body</p>',
            "Body",
        ),
        ("<p hidden>not this</p><p>this</p>", "this"),
        # blocks start lines; paragraphs and headings are set off by one blank line
        ("<h1>Hi &amp; welcome</h1>\n<p>Bo</p>", "Hi & welcome\n\nBo"),
        ("<div>one</div><div>two</div>", "one\ntwo"),
        ("<p>a</p><p>b</p><hr><blockquote>c</blockquote>", "a\n\nb\n\nc"),
        ("a<br>b<br/><br>c<br><br><br><br>d", "a\nb\n\nc\n\nd"),
        ("<div>a<br></div><div>b</div>", "a\nb"),
        ("<p>a</p><br><br><br><p>b</p>", "a\n\nb"),
        # inline elements do not
        (
            "Your order <b>42</b> <i>shipped</i>, <span>today</span>.",
            "Your order 42 shipped, today.",
        ),
        # lists, nested lists, numbered lists
        ("<ul><li>one</li><li>two</li></ul>after", "- one\n- two\nafter"),
        (
            "<ol><li>first<li>second<ul><li>nested</ul><li>third</ol>",
            "1. first\n2. second\n  - nested\n3. third",
        ),
        ('<ol start="7"><li>seven</li></ol>', "7. seven"),
        ("<ul><li><p>item</p></li></ul>", "- item"),
        # tables: a row per line, cells apart
        (
            "<table><tr><td>1 x Lamp</td><td>$10</td></tr>"
            "<tr><th>Total</th><th>$10</th></tr></table>",
            "1 x Lamp $10\nTotal $10",
        ),
        # links: their URL after their text, unless the text says it already
        (
            '<p>See <a href="https://shop.example/o?id=42&amp;t=1">your order</a>.</p>',
            "See your order (https://shop.example/o?id=42&t=1).",
        ),
        ('<a href="https://shop.example/">https://shop.example</a>', "https://shop.example"),
        ('<a href="https://shop.example/">shop.example</a>', "shop.example"),
        ('<a href="mailto:help@shop.example">help@shop.example</a>', "help@shop.example"),
        ('<a href="https://shop.example/t"><img src="b.png" alt=""></a>', "https://shop.example/t"),
        ('<a href="#top">Top</a> <a href="javascript:void(0)">Menu</a>', "Top Menu"),
        ('<a href="https://a.example/">A</a><p>next</p>', "A (https://a.example/)\n\nnext"),
        # entities decoded, whitespace collapsed as a browser does, except in <pre>
        (
            "<p>Tom&nbsp;&amp;&#32;Jerry &lt;3   and\n\n\tmore &eacute;</p>",
            "Tom & Jerry <3 and more é",
        ),
        ("<pre>\n  code\n    indented\n</pre><p>x</p>", "  code\n    indented\n\nx"),
        # a '>' or '<' inside an attribute value does not cut the text, nor does a
        # '<' that starts no tag
        ('<p title="a > b">Thanks</p><p title="a < b">again</p>', "Thanks\n\nagain"),
        ("1 < 2 and 3 > 2, x<y, <3", "1 < 2 and 3 > 2, x<y, <3"),
        ("", ""),
    ],
)
def test_html_becomes_the_text_a_browser_shows(html: str, text: str) -> None:
    assert _text(html) == text


def test_autoescaped_values_are_shown_as_written() -> None:
    assert _text("<p>Hi {{ name }}</p>", name="<b>Ana</b> & co") == "Hi <b>Ana</b> & co"


@pytest.mark.parametrize(
    "html",
    [
        # the standard library's parser alone rescans the rest of the input at every one
        # of these (over two minutes for the first on Python 3.11.7); here it is one pass
        "<a b='" * 25_000,
        "<a " * 25_000,
        "<!--" * 100_000,
        "<!" * 100_000,
        "</a " * 100_000,
        '<p title="' + "<b>" * 100_000,
        "<script>" + "</" * 100_000,
    ],
)
def test_malformed_markup_is_read_in_one_pass(html: str) -> None:
    from pepperpy.event.notifications._html_text import html_to_text

    text = html_to_text(html)

    assert "<!--" not in text and "<script" not in text
    assert len(text) <= len(html)


def test_a_long_conversion_is_checked_against_the_deadline() -> None:
    from pepperpy.event.notifications._html_text import CHECK_EVERY, html_to_text

    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise TimeoutError("past the deadline")

    with pytest.raises(TimeoutError):
        html_to_text("<p>x</p>" * (CHECK_EVERY * 10), check)
    with pytest.raises(TimeoutError):
        calls = 0
        html_to_text("<<a " * (CHECK_EVERY * 10), check)  # in the first pass too


def test_a_conversion_past_the_render_deadline_is_a_template_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pepperpy.event.notifications import _templates

    monkeypatch.setattr(_templates, "past_deadline", lambda: True)

    with pytest.raises(TemplateError, match="deriving its plain text took over"):
        _text("{% for i in range(600) %}<p>line {{ i }}</p>{% endfor %}")


async def test_a_long_conversion_on_the_event_loop_is_finished_in_a_render_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pepperpy.event.notifications import _templates

    loop_thread = threading.get_ident()
    checked_in: set[int] = set()

    def past_deadline() -> bool:  # the inline budget is always spent; a thread's never
        checked_in.add(threading.get_ident())
        return threading.get_ident() == loop_thread

    monkeypatch.setattr(_templates, "past_deadline", past_deadline)
    notifications = NotificationSystem()
    sms = notifications.add_channel("sms", MemoryChannel())
    notifications.add_template("long", html="{% for i in range(600) %}<p>{{ i }}</p>{% endfor %}")

    result = await notifications.notify(channels=["sms"], template="long", to="+15550001111")

    assert result.ok, result.failed
    assert sms.outbox[0].body.split("\n\n") == [str(i) for i in range(600)]
    assert loop_thread in checked_in and len(checked_in) == 2
    await notifications.close()
