"""Access control: allow/deny rules over patterns, per principal, per action.

A rule names principals (a pattern over dot-separated principal names, so ``#`` is
everyone and ``svc.*`` every service), an action (``publish``, ``subscribe``,
``append``, ``read``, ``delete`` or ``*``) and a target pattern (topics or stream
names). A deny rule that matches wins over any allow; with no matching rule the
``default`` decides. Every denial raises :class:`AccessDenied` and, with an audit log,
is recorded; so is every rule change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._errors import AccessDenied, ConfigurationError
from .._patterns import _match_tokens, parse_pattern, parse_topic
from ._audit import AuditLog
from ._principal import current_principal

__all__ = ["ACTIONS", "AccessControl", "AccessRule"]

Action = Literal["publish", "subscribe", "append", "read", "delete", "*"]
ACTIONS: frozenset[str] = frozenset({"publish", "subscribe", "append", "read", "delete", "*"})
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class AccessRule:
    """One rule: ``effect`` for ``principals`` doing ``action`` on ``targets``."""

    effect: Literal["allow", "deny"]
    principals: str
    action: str
    targets: str

    def applies(self, principal: str, action: str, target: str) -> bool:
        if self.action != "*" and self.action != action:
            return False
        if not _match_tokens(parse_pattern(self.principals), parse_topic(principal)):
            return False
        return _target_matches(self.targets, target, action)


def _target_matches(rule_pattern: str, target: str, action: str) -> bool:
    rule = parse_pattern(rule_pattern)
    if action == "subscribe" or any(token in ("*", "#") for token in target.split(".")):
        # a subscription pattern is covered only if everything it can match is covered
        return _covers(rule, parse_pattern(target))
    return _match_tokens(rule, parse_topic(target))


def _covers(rule: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """True when every topic matching ``pattern`` also matches ``rule``."""
    if not rule:
        return not pattern
    head = rule[0]
    if head == "#":
        return any(_covers(rule[1:], pattern[i:]) for i in range(len(pattern) + 1))
    if not pattern:
        return False
    if pattern[0] == "#":
        return False
    if head == "*" or head == pattern[0]:
        return (pattern[0] != "*" or head == "*") and _covers(rule[1:], pattern[1:])
    return False


class AccessControl:
    """Rules over patterns, checked by stores and buses before they act.

    ``AccessControl(default="deny")`` refuses whatever no rule allows (the safe choice
    for production); ``default="allow"`` only refuses what a deny rule names.
    """

    def __init__(
        self, *, default: Literal["allow", "deny"] = "deny", audit: AuditLog | None = None
    ) -> None:
        if default not in ("allow", "deny"):
            raise ConfigurationError(f"default must be 'allow' or 'deny', got {default!r}")
        self.default = default
        self.audit = audit
        self._rules: list[AccessRule] = []

    @property
    def rules(self) -> tuple[AccessRule, ...]:
        return tuple(self._rules)

    def allow(self, principals: str, action: str, targets: str) -> AccessRule:
        """Allow ``principals`` (pattern) to ``action`` on ``targets`` (pattern)."""
        return self._add("allow", principals, action, targets)

    def deny(self, principals: str, action: str, targets: str) -> AccessRule:
        """Deny ``principals`` (pattern) to ``action`` on ``targets`` (pattern)."""
        return self._add("deny", principals, action, targets)

    def _add(
        self, effect: Literal["allow", "deny"], principals: str, action: str, targets: str
    ) -> AccessRule:
        if action not in ACTIONS:
            raise ConfigurationError(f"unknown action {action!r}; use one of {sorted(ACTIONS)}")
        parse_pattern(principals)
        parse_pattern(targets)
        rule = AccessRule(effect, principals, action, targets)
        self._rules.append(rule)
        self._audit_change("rule.add", rule)
        return rule

    def remove(self, rule: AccessRule) -> bool:
        """Remove ``rule``; True if it was there."""
        try:
            self._rules.remove(rule)
        except ValueError:
            return False
        self._audit_change("rule.remove", rule)
        return True

    def _audit_change(self, action: str, rule: AccessRule) -> None:
        if self.audit is not None:
            self.audit.record(
                action,
                rule.targets,
                principal=current_principal(),
                details={
                    "effect": rule.effect,
                    "principals": rule.principals,
                    "action": rule.action,
                },
            )

    def is_allowed(self, principal: str | None, action: str, target: str) -> bool:
        """Decide without raising or auditing."""
        who = principal or ANONYMOUS
        allowed = self.default == "allow"
        for rule in self._rules:
            if rule.applies(who, action, target):
                if rule.effect == "deny":
                    return False
                allowed = True
        return allowed

    def check(self, action: str, target: str, principal: str | None = None) -> None:
        """Raise :class:`AccessDenied` (and audit it) unless the action is allowed.

        ``principal`` defaults to the one set with :func:`acting_as`.
        """
        who = principal if principal is not None else current_principal()
        if self.is_allowed(who, action, target):
            return
        if self.audit is not None:
            self.audit.record(action, target, principal=who, outcome="denied")
        raise AccessDenied(who or ANONYMOUS, action, target)
