"""Wrong-typed security options are refused where they are given, saying what to pass.

Before, ``AccessControl(audit="audit.db")`` was accepted, and the first denial or rule
change raised ``AttributeError: 'str' object has no attribute ...`` from inside the
library (a denial then never raised ``AccessDenied``); and an audit key given as text
was refused as "must be at least 16 bytes", whatever its length.
"""

from __future__ import annotations

import pytest

from pepperpy.event import AccessDenied, ConfigurationError
from pepperpy.event.security import AccessControl, AuditLog


@pytest.mark.parametrize(
    "audit", ["audit.db", object(), AccessControl()], ids=["path", "object", "acl"]
)
def test_access_control_refuses_an_audit_that_is_no_audit_log(audit: object) -> None:
    with pytest.raises(TypeError, match=r"^audit must be an AuditLog or None, got "):
        AccessControl(audit=audit)  # type: ignore[arg-type]


def test_assigning_a_wrong_audit_later_is_refused_and_changes_nothing() -> None:
    log = AuditLog()
    acl = AccessControl(audit=log)
    with pytest.raises(TypeError, match="audit must be an AuditLog or None"):
        acl.audit = "audit.db"  # type: ignore[assignment]
    assert acl.audit is log
    with pytest.raises(AccessDenied):
        acl.check("read", "orders.1", principal="svc")
    assert [(entry.action, entry.outcome) for entry in log.entries()] == [("read", "denied")]
    acl.audit = None
    assert acl.audit is None
    acl.allow("svc", "read", "orders.#")  # nothing to record it in: allowed
    assert len(log.entries()) == 1


@pytest.mark.parametrize(
    ("key", "how"),
    [
        ("s" * 32, r"key\.encode\(\) for a passphrase, bytes\.fromhex\(key\) for a hex key"),
        (bytearray(32), r"bytes\(key\)"),
        (12345, r"os\.urandom\(32\)"),
    ],
    ids=["str", "bytearray", "int"],
)
def test_an_audit_key_that_is_not_bytes_is_named_as_such(key: object, how: str) -> None:
    with pytest.raises(TypeError, match=rf"^the audit key must be bytes, got \w+: pass .*{how}"):
        AuditLog(key=key)  # type: ignore[arg-type]


def test_a_short_audit_key_says_how_long_it_is() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^the audit key must be at least 16 bytes, got 5$"
    ):
        AuditLog(key=b"short")
    assert AuditLog(key=b"k" * 16).record("append", "orders.1").hash
