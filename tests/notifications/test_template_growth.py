"""Templates whose own steps grow a value (no operand from the event needed) are bounded.

Each template below doubles a string or a list fifty times, or loops without an end in
sight, by steps that the first sandbox bounds did not see: ``~``, ``+``, filters with
big arguments, block output, list methods, ``str.format`` fields. Each must be refused
with a clear ``TemplateError`` within a couple of seconds and ~100 MB (the values are
measured with tracemalloc), instead of taking the process's memory or a render thread
for ever.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from pepperpy.event import NotificationSystem, TemplateError

BIG = "x" * 900_000
START = "{% set s = 'ab' %}"


def fifty(step: str) -> str:
    return step * 50


def _refused(source: str, refused: str, *, html: bool = False, **context: object) -> None:
    notifications = NotificationSystem()
    notifications.add_channel("email", "memory://")
    if html:
        notifications.add_template("bomb", html=source)
    else:
        notifications.add_template("bomb", source)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateError, match="the sandbox refused") as caught:
            notifications.render("bomb", "email", **context)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused in str(caught.value)
    # not a speed check (refusals take milliseconds): a bound that only an unbounded
    # render can pass, loose enough for a loaded machine (3 s was passed under load)
    assert elapsed < 20.0, f"took {elapsed:.1f}s"
    assert peak < 100_000_000, f"allocated {peak / 1e6:.0f} MB"


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        (START + fifty("{% set s = s ~ s %}"), "the result of ~ would be longer than 1000000"),
        (START + fifty("{% set s = s + s %}"), "adding a str of 524288 and one of 524288"),
        ("{% set l = [1] %}" + fifty("{% set l = l + l %}"), "adding a list of 131072"),
        (START + fifty("{% set s = ['', '', '']|join(s) %}"), "the join filter would give over"),
        (START + fifty("{% set s = s|replace('a', 'aa') %}"), "the replace filter would give"),
        (START + fifty("{% set s = s|center(s|length * 2) %}"), "center filter's width is over"),
        ("{% set s = 'a\nb' %}" + fifty("{% set s = s|indent(s, true) %}"), "indent filter"),
        (START + fifty("{% set s = s|wordwrap(1, wrapstring=s) %}"), "wordwrap filter would"),
        ("{% set l = [1] %}" + fifty("{% set l = [l]|sum(start=l) %}"), "sum filter would"),
        ("{% set l = [1] %}" + fifty("{% set _ = l.extend(l) %}"), "list.extend() would add over"),
        (
            "{% set ns = namespace(s='ab') %}"
            "{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "the result of ~ would be longer",
        ),
        (
            "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='ab') %}"
            "{% for i in range(60) %}{% set ns.s = twice(ns.s) %}{% endfor %}",
            "a block's output would be longer than 1000000",
        ),
        # shared references: small in memory, enormous written out, compared or hashed
        ("{% set l = ['ab'] %}" + fifty("{% set l = [l, l] %}") + "{{ l }}", "a list would be"),
        (
            "{% set a = ['ab'] %}{% set b = ['ab'] %}"
            + fifty("{% set a = [a, a] %}{% set b = [b, b] %}")
            + "{{ a == b }}",
            "a list would be longer than 1000000",
        ),
        (
            "{% set t = ('ab',) %}" + fifty("{% set t = (t, t) %}") + "{{ {t: 1}|length }}",
            "a tuple would be longer than 1000000",
        ),
        (
            "{% set d = {'k': 'ab'} %}" + fifty("{% set d = {'a': d, 'b': d} %}") + "{{ d }}",
            "a dict would be longer than 1000000",
        ),
    ],
    ids=[
        "concat",
        "str plus",
        "list plus",
        "join",
        "replace",
        "center",
        "indent",
        "wordwrap",
        "sum",
        "list.extend",
        "namespace in a loop",
        "macro in a loop",
        "nested list output",
        "nested lists compared",
        "nested tuple hashed",
        "nested dict output",
    ],
)
def test_a_value_doubled_fifty_times_is_refused(source: str, refused: str) -> None:
    _refused(source, refused)


@pytest.mark.parametrize("html", [False, True], ids=["text", "html"])
def test_a_loop_building_block_output_is_refused(html: bool) -> None:
    source = "{% set s %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endset %}{{ s }}"
    _refused(source, "a block's output would be longer than 1000000", html=html, big=BIG)


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("{{ (('%(a)s' * 150000) % {'a': big})|length }}", "formatting with % would give over"),
        ("{{ ('{0}' * 200000).format(big)|length }}", "str.format() would give over"),
        ("{{ '{0:{1}}'.format('x', 999999999)|length }}", "width over 999999"),
        ("{{ ('a.com ' * 150000)|urlize(target=big)|length }}", "urlize filter would give"),
        ("{{ ({big: range(10000)|list}|pprint)|length }}", "pprint filter's value"),
        ("{{ ('\t' * 100000).expandtabs(1000)|length }}", "str.expandtabs() would be longer"),
        ("{{ ('x' * 1000).translate({120: big})|length }}", "str.translate() would be longer"),
        ("{{ ([1]|batch(100000000, 0)|list)|length }}", "batch filter would fill rows"),
        ("{{ ([1]|slice(1000000000)|list)|length }}", "slice filter would make over"),
        ("{{ lipsum(1000000)|length }}", "lipsum() would give over"),
    ],
    ids=[
        "percent fields",
        "format fields",
        "nested format width",
        "urlize",
        "pprint",
        "expandtabs",
        "translate",
        "batch",
        "slice",
        "lipsum",
    ],
)
def test_one_step_with_a_huge_result_is_refused_before_it_runs(source: str, refused: str) -> None:
    _refused(source, refused, big=BIG)


def test_a_loop_keeping_what_each_step_makes_is_refused() -> None:
    # every value is under the limit, but together they would take 90 GB
    source = (
        "{% set l = [] %}{% for i in range(100000) %}{% set _ = l.append(big ~ i) %}{% endfor %}"
    )
    _refused(source, "the template computed over 32000000 characters in all", big=BIG)


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in l %}{% for j in l %}{% endfor %}{% endfor %}",
        "{% for c in s %}{% for d in s %}{% endfor %}{% endfor %}",
    ],
    ids=["nested lists", "nested strings"],
)
def test_loops_over_anything_stop_at_the_deadline(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy.event.notifications import _sandbox

    monkeypatch.setattr(_sandbox, "RENDER_TIMEOUT", 0.3)
    _refused(source, "took over 0.3s to render", l=list(range(100_000)), s="x" * 100_000)


def test_templates_using_the_bounded_steps_within_reason_render() -> None:
    notifications = NotificationSystem()
    notifications.add_channel("email", "memory://")
    notifications.add_template(
        "fine",
        "{% macro row(x) %}[{{ x }}]{% endmacro %}"
        "{% set ns = namespace(s='', items=[]) %}"
        "{% for i in range(300) %}{% set ns.s = ns.s ~ i ~ ',' %}"
        "{% set _ = ns.items.append(i) %}{% endfor %}"
        "{{ ns.s|length }} {{ ns.items|sum }} {{ [[1, 2], [3]]|sum(start=[]) }} "
        "{{ ['a', 'b']|join('-') }} {{ 'a' + 'b' }} {{ [1] + [2] }} "
        "{{ '{} {:>3}'.format('x', 7) }} {{ '%s=%d' % ('n', 4) }} "
        "{% set block %}{% for i in range(3) %}{{ row(i) }}{% endfor %}{% endset %}{{ block }} "
        "{{ {'a': [1, 2]}|tojson(indent=1)|length }} {{ {'k': [1]}|pprint }} "
        "{{ 'ab cd'|wordwrap(2) }} {{ 'see a.com'|urlize|length }} {{ [1, 2, 3]|batch(2)|list }} "
        "{{ 'a\\tb'.expandtabs(4) }} {{ 'x'|indent(2, true) }} {{ (1, 2) + (3,) }}",
    )

    body = notifications.render("fine", "email").body

    assert body == (
        "1090 44850 [1, 2, 3] a-b ab [1, 2] x   7 n=4 [0][1][2] 23 {'k': [1]} "
        "ab\ncd 9 [[1, 2], [3]] a   b   x (1, 2, 3)"
    )


def test_the_written_out_size_is_never_less_than_str_makes_it() -> None:
    from jinja2.utils import Namespace

    from pepperpy.event.notifications._measure import measure

    text = 'it\'s a "quote" \\ back\nslash é \x00 \U0001f600'
    shared = [text, 2**100, -7]
    values: list[object] = [
        text,
        [text, text],
        (text,),
        {text: [1, 2.5, None, True]},
        {1, 2},
        frozenset({"a"}),
        [shared, shared, (shared, {"k": shared})],
        {"a": 1}.items(),
        Namespace(a=[1, 2], b="x"),
        b"\x00bytes",
        [-(2**70), 2**63, 0, -1, 10**18],
        [[[[]]]],
    ]
    cyclic: list[object] = [1]
    cyclic.append(cyclic)
    values.append(cyclic)
    for value in values:
        assert measure(value, 10**6) >= len(str(value)), value
