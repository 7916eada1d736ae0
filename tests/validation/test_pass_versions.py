"""An unknown type let through (``unknown_types="pass"``) keeps the version given: 0
became 1 silently (``version or 1``), and ``check()`` returned -5 or 2**40, versions no
Event holds. They raise what ``Event()`` raises for them."""

from __future__ import annotations

import pytest

from pepperpy.event import EventValidator


@pytest.mark.parametrize("version", [0, -5, 2**40])
async def test_a_version_no_event_holds_is_refused(version: int) -> None:
    validator = EventValidator(unknown_types="pass")
    with pytest.raises(ValueError, match="event version must be an int from 1 to"):
        await validator.validate("audit.noted", {}, version=version)
    with pytest.raises(ValueError, match="event version must be an int from 1 to"):
        validator.check("audit.noted", {}, version=version)


async def test_the_version_given_is_kept() -> None:
    validator = EventValidator(unknown_types="pass")
    assert (await validator.validate("audit.noted", {}, version=7)).version == 7
    assert validator.check("audit.noted", {}, version=7) == ({}, 7)
    assert (await validator.validate("audit.noted", {})).version == 1
