"""A decision reads the rules as they were when it began, whatever changes meanwhile.

Rules may be changed from another thread while a store or a bus on another thread
decides (an admin thread revoking, stores on several event loops sharing one
AccessControl). Before, the decision looped over the live list: a rule removed ahead of
the loop's position shifted the list under it, and the loop skipped the rule after,
which could be a deny: the request was allowed. Simulated here deterministically by a
rule removed from inside the loop, as another thread could at that point.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import AccessDenied
from pepperpy.event.security import AccessControl, AccessRule


def test_a_rule_removed_during_a_decision_does_not_hide_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acl = AccessControl(default="allow")
    first = acl.allow("svc.reports", "read", "sales.#")
    acl.deny("svc.mailer", "read", "hr.#")
    real = AccessRule.applies
    removed: list[AccessRule] = []

    def applies(rule: AccessRule, *args: Any) -> bool:
        if not removed:  # another thread removes the first rule now
            removed.append(rule)
            acl.remove(first)
        return real(rule, *args)

    monkeypatch.setattr(AccessRule, "applies", applies)
    assert not acl.is_allowed("svc.mailer", "read", "hr.pay")
    monkeypatch.setattr(AccessRule, "applies", real)
    assert removed == [first] and acl.rules == (AccessRule("deny", "svc.mailer", "read", "hr.#"),)
    with pytest.raises(AccessDenied, match="refused by deny"):
        acl.check("read", "hr.pay", principal="svc.mailer")
