"""docs/bus.md quotes the error ``publish`` raises for a lone surrogate: the quote is the
message a user sees (it named the path without its leading ``['data']``, and a metadata
prefix the message does not have)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pepperpy.event import Event, EventBus, SerializationError

DOC = Path(__file__).resolve().parents[2] / "docs" / "bus.md"


def quoted() -> list[str]:
    """The messages the paragraph on lone surrogates quotes, without their ``...``."""
    text = DOC.read_text()
    paragraph = text[text.index("The error names the") :].split("\n- ", 1)[0]
    spans = re.findall(r"`([^`]*\.\.\.)`", paragraph.replace("\n  ", " "))
    return [span.removesuffix("...").rstrip(", ") for span in spans]


async def test_the_messages_bus_md_quotes_are_the_ones_raised() -> None:
    data, metadata, headers = quoted()
    async with EventBus() as bus:
        with pytest.raises(SerializationError) as raised:
            await bus.publish("users.renamed", {"user": {"name": "\ud800"}})
        assert str(raised.value).startswith(data)
        with pytest.raises(SerializationError) as raised:
            await bus.publish("users.renamed", Event("users.renamed", {}, {"by": "\ud800"}))
        assert str(raised.value).startswith(metadata)
        assert "at ['by']" in str(raised.value)
        with pytest.raises(SerializationError) as raised:
            await bus.publish("users.renamed", {}, headers={"by": "\ud800"})
        assert str(raised.value).startswith(headers)
        assert "at ['by']" in str(raised.value)
