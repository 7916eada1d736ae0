"""The plain text of an HTML template part, as a reader would see it (SMS, push, the
text part of an email).

:func:`html_to_text` reads the markup with the standard library's
:class:`html.parser.HTMLParser` and writes what a browser shows:

* the contents of ``<head>``, ``<title>``, ``<style>``, ``<script>`` and ``<template>``,
  comments (Outlook's ``<!--[if mso]>`` blocks included), declarations and elements
  hidden with ``hidden`` or ``style="display: none"`` (an email's preview text) are
  dropped;
* block elements start new lines: paragraphs, headings, ``<blockquote>``, ``<pre>`` and
  ``<hr>`` are set off by a blank line, ``<div>``, ``<tr>``, list items and other blocks
  by a line break; ``<br>`` breaks the line; table cells are separated by a space;
* list items start with ``- `` (``1. ``, ``2. ``... in an ``<ol>``), indented two spaces
  per nesting level;
* a link is its text followed by its URL in brackets, ``Track it
  (https://example.com/t/42)``, unless the text already is the URL (or the address of
  a ``mailto:``/``tel:`` link); a link without text is its URL; ``#`` and
  ``javascript:`` links show no URL;
* character references are decoded (``&amp;`` is ``&``, ``&nbsp;`` a space) and
  whitespace is collapsed as a browser does: a run of spaces, tabs and line breaks is
  one space, except inside ``<pre>``; lines carry no trailing spaces, and there is
  never more than one blank line in a row. Images are left out.

The work is linear in the size of the markup. ``HTMLParser`` alone is not: on
malformed markup (``<!`` or ``<a b='`` repeated, an unclosed comment opener repeated)
it rescans the rest of the input at every opener, so a megabyte of it takes minutes on
Python 3.11.7 or 3.13.0 (CVE-2025-6069, fixed only in later patch releases). So
the markup is first read by :func:`_well_formed`, in one pass whose every step is
bounded by the next ``<``, by the closing quote of an attribute value or by the end of
the comment or element it drops: it removes comments, declarations and the raw
contents of ``<script>``, ``<style>`` and ``<title>``, keeps each tag it can read in
full, and writes every other ``<`` as ``&lt;`` (text, as a browser shows it). The
parser then only meets tags that end where they appear to, which it reads in one go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

__all__ = ["html_to_text"]

#: calls between two calls of the ``check`` callback (a deadline check)
CHECK_EVERY = 256

_WS = r"[\t\n\r\f ]"
_NAME = r"[a-zA-Z][a-zA-Z0-9:._-]*+"


def _attributes(unquoted: str = "") -> str:
    """A tag's attributes and its end; quoted values cannot hold the ``unquoted``
    characters (nor their own quote)."""
    value = rf"""(?:"[^"{unquoted}]*+"|'[^'{unquoted}]*+'|[^\t\n\r\f "'<>=`]++)"""
    attribute = rf"""[^\t\n\r\f "'<>/=]++(?:{_WS}*+={_WS}*+{value})?+"""
    return rf"(?:{_WS}*+{attribute}|{_WS}*+/(?!>))*+{_WS}*+/?>"


#: a start tag whose end is certain; possessive throughout, so a failed try costs its
#: length only (up to the next ``<`` outside a quoted value)
_START = re.compile(rf"<({_NAME}){_attributes()}")
_END = re.compile(rf"</{_NAME}[^<>]*+>")
#: a run of text and tags kept as they are (no ``<`` in an attribute value, not a
#: raw-text element), and of ``<`` that start nothing (written ``&lt;``, see
#: :data:`_LONE`): most templates are one such run, read in one call
_SAFE = re.compile(
    rf"(?:[^<]++|</{_NAME}[^<>]*+>|<(?![a-zA-Z/!?])"
    rf"|<(?!(?i:script|style|title)[\t\n\r\f />]){_NAME}{_attributes('<')})*+"
)
_LONE = re.compile(r"<(?![a-zA-Z/!?])")
#: ``<!DOCTYPE html>``, ``<?xml ...?>``, ``<![endif]>``: dropped
_DECLARATION = re.compile(r"<[!?][^<>]*+>")
#: a comment, ``<!-->`` and ``<!--->`` included (HTML's empty comments)
_COMMENT = re.compile(r"<!--(?:-?>|.*?--!?>)", re.DOTALL)
#: elements whose contents are raw text: not markup, and not shown
_RAW_END = {
    name: re.compile(rf"</{name}(?=[\t\n\r\f />])", re.IGNORECASE)
    for name in ("script", "style", "title")
}

_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
#: what may come in ``<head>``: any other element ends it, as in a browser
_HEAD = frozenset("base link meta noscript script style template title".split())
#: elements set off by a blank line, and those that only start a new line
_PARAGRAPHS = frozenset("blockquote h1 h2 h3 h4 h5 h6 hr p pre".split())
_BLOCKS = frozenset(
    """address article aside caption center dd details dialog div dl dt fieldset
    figcaption figure footer form header hgroup legend li main menu nav ol section
    summary table tbody tfoot thead tr ul""".split()
)
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")
_HIDDEN_SCHEMES = frozenset({"javascript", "vbscript", "data"})
_SHORT_SCHEMES = ("mailto:", "tel:", "sms:", "https://", "http://")


def html_to_text(markup: str, check: Callable[[], None] | None = None) -> str:
    """The plain text a reader sees in ``markup`` (see the module's documentation).

    ``check`` is called every :data:`CHECK_EVERY` steps; it may raise to stop the
    conversion (a render's deadline).
    """
    converter = _Converter(check)
    converter.feed(_well_formed(markup, check))
    converter.close()
    return converter.text()


def _well_formed(markup: str, check: Callable[[], None] | None) -> str:
    """``markup`` with comments, declarations and raw-text contents removed, every tag
    that can be read in full kept, and every other ``<`` written ``&lt;``."""
    out: list[str] = []
    done = 0  # markup[:done] is handled
    steps = 0
    while True:
        safe = _SAFE.match(markup, done)
        assert safe is not None  # it matches the empty string
        out.append(_LONE.sub("&lt;", safe.group()))
        if safe.end() == len(markup):
            return "".join(out)
        steps += 1
        if check is not None and steps % CHECK_EVERY == 0:
            check()
        done, piece = _construct(markup, safe.end())  # at a "<"
        out.append(piece)


def _construct(markup: str, at: int) -> tuple[int, str]:
    """Where the markup construct starting at ``markup[at] == "<"`` ends, and what to
    keep of it."""
    following = markup[at + 1 : at + 2]
    if following == "!" and markup.startswith("<!--", at):
        comment = _COMMENT.match(markup, at)
        return (comment.end() if comment else len(markup)), ""  # unclosed: to the end
    if following in ("!", "?"):
        declaration = _DECLARATION.match(markup, at)
        if declaration:
            return declaration.end(), ""
    elif following == "/":
        end = _END.match(markup, at)
        if end:
            return end.end(), end.group()
    elif following.isascii() and following.isalpha():
        start = _START.match(markup, at)
        if start:
            raw = _RAW_END.get(start.group(1).lower())
            if raw is not None:  # skip to its end tag (or to the end, as a browser does)
                closing = raw.search(markup, start.end())
                return (closing.start() if closing else len(markup)), ""
            tag = start.group()
            return start.end(), "<" + tag[1:].replace("<", "&lt;")  # the same value
    return at + 1, "&lt;"


class _Converter(HTMLParser):
    """Collects the text of well-formed markup (see :func:`_well_formed`)."""

    def __init__(self, check: Callable[[], None] | None) -> None:
        super().__init__(convert_charrefs=True)
        self._check = check
        self._steps = 0
        self._out: list[str] = []
        self._breaks = 0  # line breaks owed before the next text (at most 2)
        self._space = False  # a space owed before the next text on the same line
        self._prefix = ""  # a list item's marker, owed before its first text
        self._skip: str | None = None  # the element whose contents are dropped
        self._depth = 0  # how many of ``_skip`` are open
        self._lists: list[int | None] = []  # a counter per open <ol>, None per <ul>
        self._link: tuple[str | None, int] | None = None  # href, where its text starts
        self._pre = 0
        self._pre_start = False

    # -- output ---------------------------------------------------------------------

    def _step(self) -> None:
        self._steps += 1
        if self._check is not None and self._steps % CHECK_EVERY == 0:
            self._check()

    def _emit(self, text: str) -> None:
        out = self._out
        if out and self._breaks:
            out.append("\n" * self._breaks)
        elif out and self._space and not self._prefix:
            out.append(" ")
        if self._prefix:
            out.append(self._prefix)
            self._prefix = ""
        out.append(text)
        self._breaks = 0
        self._space = False

    def _block(self, breaks: int) -> None:
        if not self._prefix:  # a list item's first block stays on the marker's line
            self._breaks = max(self._breaks, breaks)
        self._space = False

    def text(self) -> str:
        """The text collected: lines without trailing spaces, one blank line at most."""
        lines: list[str] = []
        blank = False
        for line in "".join(self._out).split("\n"):
            line = line.rstrip()
            if not line:
                blank = bool(lines)
                continue
            if blank:
                lines.append("")
                blank = False
            lines.append(line)
        return "\n".join(lines)

    # -- parser events --------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._step()
        if self._skip is not None:
            if self._skip != "head" or (tag in _HEAD and tag != "body"):
                if tag == self._skip:
                    self._depth += 1
                return
            self._skip = None  # a body element ends <head>
        if tag == "body":
            return
        if tag in ("head", "template") or (tag not in _VOID and _hidden(attrs)):
            self._skip, self._depth = tag, 1
        elif tag == "br":
            self._breaks = min(self._breaks + 1, 2)
            self._space = False
        elif tag in ("td", "th"):
            self._space = True
        elif tag == "a":
            self._end_link()
            self._link = (dict(attrs).get("href"), len(self._out))
        elif tag == "li":
            self._block(1)
            depth = max(len(self._lists), 1)
            counter = self._lists[-1] if self._lists else None
            if counter is None:
                marker = "- "
            else:
                marker = f"{counter}. "
                self._lists[-1] = counter + 1
            self._prefix = "  " * (depth - 1) + marker
        elif tag in ("ul", "ol"):
            self._block(1)
            self._lists.append(_start(attrs) if tag == "ol" else None)
        elif tag in _PARAGRAPHS:
            self._block(2)
            if tag == "pre":
                self._pre += 1
                self._pre_start = True
        elif tag in _BLOCKS:
            self._block(1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:  # ``<div/>`` opens and closes; ``<br/>`` is one break
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        self._step()
        if self._skip is not None:
            if tag == self._skip:
                self._depth -= 1
                if self._depth == 0:
                    self._skip = None
            return
        if tag == "a":
            self._end_link()
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._prefix = ""
            self._block(1)
        elif tag in _PARAGRAPHS:
            self._prefix = ""
            self._block(2)
            if tag == "pre" and self._pre:
                self._pre -= 1
        elif tag in _BLOCKS:
            self._prefix = "" if tag == "li" else self._prefix
            self._block(1)

    def handle_data(self, data: str) -> None:
        self._step()
        if self._skip is not None:
            return
        if self._pre:
            text = data.replace("\r\n", "\n").replace("\r", "\n")
            if self._pre_start and text.startswith("\n"):
                text = text[1:]  # the line break right after <pre> is not shown
            self._pre_start = False
            if text:
                self._emit(text)
            return
        words = data.split()
        if not words:
            self._space = self._space or bool(data)
            return
        if data[0].isspace():
            self._space = True
        self._emit(" ".join(words))
        if data[-1].isspace():
            self._space = True

    def close(self) -> None:
        super().close()
        self._end_link()

    def _end_link(self) -> None:
        if self._link is None:
            return
        href, start = self._link
        self._link = None
        url = _shown_url(href)
        if url is None:
            return
        text = "".join(self._out[start:]).strip()
        if not text:
            self._emit(url)
        elif not _same(text, url):
            self._out.append(f" ({url})")  # on the text's line, before any break owed


def _hidden(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if name == "hidden" or (name == "style" and value and _DISPLAY_NONE.search(value)):
            return True
    return False


def _start(attrs: list[tuple[str, str | None]]) -> int:
    """An ``<ol>``'s first number (its ``start``, else 1)."""
    value = dict(attrs).get("start") or ""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else 1


def _shown_url(href: str | None) -> str | None:
    """The URL to show for a link, or None (no href, a fragment, a script)."""
    if href is None:
        return None
    url = "".join(href.split())
    if not url or url.startswith("#"):
        return None
    scheme = _SCHEME.match(url)
    if scheme and scheme.group(1).lower() in _HIDDEN_SCHEMES:
        return None
    return url


def _same(text: str, url: str) -> bool:
    """Whether a link's text already says its URL (give or take the scheme and a
    trailing slash): ``example.com`` for ``https://example.com/``, an address for its
    ``mailto:``."""
    shown = text.rstrip("/")
    if shown == url.rstrip("/"):
        return True
    lowered = url.lower()
    for scheme in _SHORT_SCHEMES:
        if lowered.startswith(scheme):
            return shown == url[len(scheme) :].rstrip("/")
    return False
