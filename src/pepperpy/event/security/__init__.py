"""Security: encryption at rest, access control and a tamper-evident audit log."""

from __future__ import annotations

from ._access import ACTIONS, AccessControl, AccessRule
from ._audit import AuditEntry, AuditFailure, AuditLog, AuditVerification
from ._encryption import (
    KeyRing,
    KeyStore,
    MemoryKeyStore,
    PostgresKeyStore,
    SQLiteKeyStore,
    StreamEncryption,
)
from ._principal import acting_as, current_principal

__all__ = [
    "ACTIONS",
    "AccessControl",
    "AccessRule",
    "AuditEntry",
    "AuditFailure",
    "AuditLog",
    "AuditVerification",
    "KeyRing",
    "KeyStore",
    "MemoryKeyStore",
    "PostgresKeyStore",
    "SQLiteKeyStore",
    "StreamEncryption",
    "acting_as",
    "current_principal",
]
