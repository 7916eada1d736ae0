"""A request to AccessControl names one known action and a str target, or is refused.

Before, an unknown action (a typo: ``check("pubish", ...)``) matched no rule and was
decided by the default alone: under ``default="allow"`` it passed whatever a deny rule
said; ``"*"`` as the requested action skipped every rule for a named action the same
way; and a target that is not a str was decided too.
"""

from __future__ import annotations

import pytest

from pepperpy.event import AccessDenied, ConfigurationError
from pepperpy.event.security import AccessControl, AuditLog


@pytest.mark.parametrize("action", ["pubish", "*", "READ", "", 1, None])
async def test_an_unknown_or_wildcard_action_is_refused_not_decided(action: object) -> None:
    log = AuditLog()
    acl = AccessControl(default="allow", audit=log)
    acl.deny("svc.mailer", "publish", "#")
    with pytest.raises(ConfigurationError, match=r"^unknown action .* to check; use one of"):
        acl.check(action, "orders.1", principal="svc.mailer")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown action"):
        await acl.acheck(action, "orders.1", principal="svc.mailer")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown action"):
        acl.is_allowed("svc.mailer", action, "orders.1")  # type: ignore[arg-type]
    assert [entry.action for entry in log.entries()] == ["rule.add"]  # nothing decided


@pytest.mark.parametrize("target", [5, None, b"orders.1"])
def test_a_target_that_is_not_a_str_is_refused(target: object) -> None:
    acl = AccessControl(default="allow")
    with pytest.raises(TypeError, match="the target to check must be a str, got"):
        acl.check("read", target)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", ["publish", "subscribe", "append", "read", "delete"])
def test_every_known_action_is_decided_by_its_rules(action: str) -> None:
    acl = AccessControl(default="allow")
    acl.deny("svc.mailer", action, "orders.#")
    assert acl.is_allowed("svc.other", action, "orders.1")
    with pytest.raises(AccessDenied):
        acl.check(action, "orders.1", principal="svc.mailer")
