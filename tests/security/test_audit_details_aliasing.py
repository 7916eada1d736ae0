"""What a log recorded does not change with the objects its caller holds.

Before, a memory log kept the very entry ``record()`` returned, holding the caller's
nested values, and hashed it again on every read: changing a list given in ``details``
after ``record()`` returned, or changing the returned entry's details, changed the
recorded entry, and ``verify()`` then reported tampering nobody did (a file log keeps
the bytes it hashed, and was not affected). A memory log now keeps those bytes too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event.security import AuditLog


@pytest.fixture(params=["memory", "file"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> AuditLog:
    made = AuditLog() if request.param == "memory" else AuditLog(str(tmp_path / "audit.db"))
    request.addfinalizer(made.close)
    return made


def test_changing_the_details_given_after_record_changes_nothing_recorded(
    log: AuditLog,
) -> None:
    details = {"ids": ["a", "b"], "nested": {"n": 1}}
    log.record("append", "orders.1", details=details)
    details["ids"].append("forged")
    details["nested"]["n"] = 2
    assert log.entries()[0].details == {"ids": ["a", "b"], "nested": {"n": 1}}
    result = log.verify()
    assert (result.ok, result.checked) == (True, 1)


def test_changing_a_returned_entry_changes_nothing_recorded(log: AuditLog) -> None:
    entry = log.record("append", "orders.1", details={"ids": ["a"]})
    entry.details["ids"].append("forged")
    log.entries()[0].details["ids"].append("forged too")
    assert log.entries()[0].details == {"ids": ["a"]}
    result = log.verify()
    assert (result.ok, result.checked) == (True, 1)


def test_later_entries_chain_after_what_was_recorded(log: AuditLog) -> None:
    details = {"ids": ["a"]}
    first = log.record("append", "orders.1", details=details)
    details["ids"].append("b")
    second = log.record("append", "orders.1", details=details)
    assert second.previous_hash == first.hash == log.entries()[0].hash
    assert [entry.details for entry in log.entries()] == [{"ids": ["a"]}, {"ids": ["a", "b"]}]
    assert log.verify().ok
