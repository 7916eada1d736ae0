"""Access control: allow/deny rules over patterns, per principal, per action.

A rule names principals (a pattern over dot-separated principal names, so ``#`` is
everyone and ``svc.*`` every service), an action (``publish``, ``subscribe``,
``append``, ``read``, ``delete`` or ``*``) and a target pattern (topics or stream
names). A deny rule that matches wins over any allow; with no matching rule the
``default`` decides. Every denial raises :class:`AccessDenied` and, with an audit log,
is recorded; so is every rule change.

When the request names a pattern (a subscription, a read of ``orders.#`` or of the whole
log), rules are read fail-closed: an allow rule counts only if it covers everything the
pattern can match, and a deny rule applies as soon as it *overlaps* the pattern, i.e.
some topic matches both. So ``deny("svc.mailer", "subscribe", "orders.refund.#")``
refuses ``orders.#`` and ``orders.*.issued`` too, instead of letting the broader pattern
deliver what the deny names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .._errors import AccessDenied, ClosedError, ConfigurationError, PatternError
from .._options import check_instance
from .._patterns import _match_tokens, could_overlap, parse_pattern, parse_topic
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
        """True when this rule decides ``principal`` doing ``action`` on ``target``.

        ``target`` may be a pattern: an allow rule then has to cover all of it, a deny
        rule only has to overlap it (see the module docstring).
        """
        if self.action != "*" and self.action != action:
            return False
        if not _match_tokens(parse_pattern(self.principals), parse_topic(principal)):
            return False
        if self.effect == "deny":
            return _target_overlaps(self.targets, target)
        return _target_covered(self.targets, target)

    def __str__(self) -> str:
        return f"{self.effect}({self.principals!r}, {self.action!r}, {self.targets!r})"


def _is_pattern(target: str) -> bool:
    return any(token in ("*", "#") for token in parse_pattern(target))


def _target_covered(rule_pattern: str, target: str) -> bool:
    """True when every topic ``target`` can match also matches ``rule_pattern``."""
    rule = parse_pattern(rule_pattern)
    if _is_pattern(target):
        return _covers(rule, parse_pattern(target))
    return _match_tokens(rule, parse_topic(target))


def _target_overlaps(rule_pattern: str, target: str) -> bool:
    """True when some topic matches both ``rule_pattern`` and ``target``."""
    if _is_pattern(target):
        return could_overlap(rule_pattern, target)
    return _match_tokens(parse_pattern(rule_pattern), parse_topic(target))


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


def _checked_default(value: object) -> Literal["allow", "deny"]:
    if value == "allow" and value.__class__ is str:
        return "allow"
    if value == "deny" and value.__class__ is str:
        return "deny"
    raise ConfigurationError(f"default must be 'allow' or 'deny', got {value!r}")


#: the actions a request names: one each (a rule's ``*`` stands for any of them)
_REQUESTED = ACTIONS - {"*"}


def _check_request(action: object, target: object) -> None:
    """Refuse a request no rule can be read for: an action that is not one of
    :data:`ACTIONS` (a typo would otherwise be decided by the default alone, so
    ``check("pubish", ...)`` passed under ``default="allow"`` whatever a deny rule for
    ``publish`` said), or ``*``, or a target that is not a str."""
    if action.__class__ is not str or action not in _REQUESTED:
        raise ConfigurationError(
            f"unknown action {action!r} to check; use one of {sorted(_REQUESTED)}"
        )
    if not isinstance(target, str):
        raise TypeError(f"the target to check must be a str, got {type(target).__name__}")


def _invalid_principal(who: str) -> str | None:
    """What is wrong with a principal name, or None when it is one (a topic-like name)."""
    try:
        parse_topic(who)
    except PatternError as exc:
        return str(exc)
    return None


class AccessControl:
    """Rules over patterns, checked by stores and buses before they act.

    ``AccessControl(default="deny")`` refuses whatever no rule allows (the safe choice
    for production); ``default="allow"`` only refuses what a deny rule names. Changing
    :attr:`default` later is a policy change like a rule change: checked and audited.
    """

    def __init__(
        self, *, default: Literal["allow", "deny"] = "deny", audit: AuditLog | None = None
    ) -> None:
        self._default = _checked_default(default)
        self.audit = audit  # checked by the setter
        self._rules: list[AccessRule] = []
        #: bumped by every change of the rules or the default: readers made under the old
        #: rules check again (a revoked right stops an open reader or subscription)
        self._version = 0

    @property
    def audit(self) -> AuditLog | None:
        """The log rule changes and denials are recorded in (None: not recorded)."""
        return self._audit

    @audit.setter
    def audit(self, log: AuditLog | None) -> None:
        """Anything but an :class:`AuditLog` or None raises ``TypeError`` here, not an
        ``AttributeError`` at the first denial or rule change (a path given, say)."""
        check_instance(log, AuditLog, "audit", optional=True)
        self._audit = log

    @property
    def default(self) -> Literal["allow", "deny"]:
        """What decides a request no rule names: ``"allow"`` or ``"deny"``."""
        return self._default

    @default.setter
    def default(self, value: Literal["allow", "deny"]) -> None:
        """Change the default policy: validated, then audited as ``policy.default``.

        Anything but ``"allow"`` or ``"deny"`` raises ``ConfigurationError`` (a typo
        such as ``"alow"`` must not silently become a policy). The audit entry comes
        first: a closed audit log refuses the change, as it refuses rule changes.
        """
        new = _checked_default(value)
        if self.audit is not None:
            self.audit.record(
                "policy.default",
                "#",
                principal=current_principal(),
                details={"old": self._default, "new": new},
            )
        self._default = new
        self._version += 1

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
        self._audit_change("rule.add", rule)  # first: a closed audit log refuses the change
        self._rules.append(rule)
        self._version += 1
        return rule

    def remove(self, rule: AccessRule) -> bool:
        """Remove ``rule``; True if it was there."""
        if rule not in self._rules:
            return False
        self._audit_change("rule.remove", rule)
        self._rules.remove(rule)
        self._version += 1
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
        """Decide without raising or auditing (an invalid principal name: False)."""
        allowed, _ = self._decide(principal or ANONYMOUS, action, target)
        return allowed

    def _decide(self, who: str, action: str, target: str) -> tuple[bool, AccessRule | None]:
        """The decision and the deny rule behind a refusal (None: no rule allowed it).

        A principal that is not a valid name (``"John Smith"``, ``"svc.*"``) is refused:
        no rule can name it, and a wildcard must not pass for many principals.
        """
        _check_request(action, target)
        if _invalid_principal(who) is not None:
            return False, None
        allowed = self._default == "allow"
        # a copy (one C call, atomic): a rule removed meanwhile by another thread would
        # shift the list under the loop, which then skipped the rule after it
        for rule in tuple(self._rules):
            if rule.applies(who, action, target):
                if rule.effect == "deny":
                    return False, rule
                allowed = True
        return allowed, None

    def check(
        self,
        action: str,
        target: str,
        principal: str | None = None,
        *,
        needed_by: str | None = None,
    ) -> None:
        """Raise :class:`AccessDenied` (and audit it) unless the action is allowed.

        ``principal`` defaults to the one set with :func:`acting_as`. A refusal caused
        by a deny rule names the rule in the message and in the audit entry's details.
        ``needed_by`` says which request needs this permission when it is not the one
        the caller named: a subscription to ``deadletter.#`` also receives the data of
        every topic, so the bus checks ``subscribe`` on ``#`` for it. The message and
        the audit entry's ``details["needed_by"]`` carry it.

        The decision never waits; neither does the refusal on an event loop: there the
        entry goes to a file log's writer thread (:meth:`AuditLog.record_off_loop`), and
        code that can ``await`` uses :meth:`acheck`, which raises once it is written. A
        refusal that finds the audit log closed still raises ``AccessDenied``, with a
        note and the ``ClosedError`` as its cause.
        """
        refusal = self._refusal(action, target, principal, needed_by=needed_by)
        if refusal is None:
            return
        if self.audit is not None:
            try:
                self.audit.record_off_loop(**refusal.entry)
            except ClosedError as exc:
                raise _unaudited(refusal.error) from exc
        raise refusal.error

    async def acheck(
        self,
        action: str,
        target: str,
        principal: str | None = None,
        *,
        needed_by: str | None = None,
    ) -> None:
        """:meth:`check` for async code: a refusal is written to the audit log (on a
        worker thread, never blocking the loop) before ``AccessDenied`` is raised."""
        refusal = self._refusal(action, target, principal, needed_by=needed_by)
        if refusal is None:
            return
        if self.audit is not None:
            try:
                await self.audit.arecord(**refusal.entry)
            except ClosedError as exc:
                raise _unaudited(refusal.error) from exc
        raise refusal.error

    def _refusal(
        self,
        action: str,
        target: str,
        principal: str | None = None,
        *,
        needed_by: str | None = None,
    ) -> _Refusal | None:
        """The refusal of a request, or None when it is allowed; records nothing.

        For code that audits a denial in a log of its own (a store with its own
        ``audit=``): :attr:`_Refusal.entry` is the audit entry :meth:`check` writes.
        """
        who = principal if principal is not None else current_principal()
        allowed, rule = self._decide(who or ANONYMOUS, action, target)
        if allowed:
            return None
        details: dict[str, str] = {}
        if rule is not None:
            details["rule"] = str(rule)
        invalid = _invalid_principal(who or ANONYMOUS)
        if invalid is not None:
            details["invalid_principal"] = invalid
        if needed_by is not None:
            details["needed_by"] = needed_by
        denied = AccessDenied(who or ANONYMOUS, action, target)
        message = str(denied)
        if needed_by is not None:
            message += f" (needed by {needed_by})"
        if rule is not None:
            message += f": refused by {rule}"
        if invalid is not None:
            message += f": not a valid principal name ({invalid})"
        denied.args = (message,)
        entry = {
            "action": action,
            "target": target,
            "principal": who,
            "outcome": "denied",
            "details": details or None,
        }
        return _Refusal(denied, entry)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A refused request: the error to raise and the audit entry that records it."""

    error: AccessDenied
    #: keyword arguments for :meth:`AuditLog.record` (action, target, principal, ...)
    entry: dict[str, Any]


def _unaudited(denied: AccessDenied) -> AccessDenied:
    """``denied``, noting that the closed audit log could not record it."""
    denied.add_note("the denial was not recorded: the audit log is closed")
    return denied
