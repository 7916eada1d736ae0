"""Which address a channel sends to, found in the ``notify`` context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import RecipientError

__all__ = ["RECIPIENT_FIELDS", "resolve_recipient"]

#: channel kind -> attribute (or key) of ``user`` holding that channel's address
RECIPIENT_FIELDS: dict[str, str] = {"email": "email", "sms": "phone", "push": "device_token"}


def _field(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def resolve_recipient(
    channel: str,
    kind: str,
    to: str | Mapping[str, str] | None,
    context: Mapping[str, Any],
    *,
    required: bool,
) -> str | None:
    """The address for channel ``channel`` (of ``kind``), or None when it needs none.

    ``to`` wins: a string for every channel, or a mapping by channel name (or kind).
    Otherwise ``user.<field>`` for the kinds in :data:`RECIPIENT_FIELDS`, where ``user``
    may be a mapping or an object. A missing address for a kind that has a field raises
    :class:`RecipientError` when the channel ``required`` one.
    """
    if to is not None:
        if isinstance(to, Mapping):
            picked = to.get(channel, to.get(kind))
        else:
            picked = to
        if picked is not None and picked != "":
            if not isinstance(picked, str):
                raise RecipientError(f"to= for channel {channel!r} must be a str, got {picked!r}")
            return picked
    field = RECIPIENT_FIELDS.get(kind)
    if field is None:
        return None
    user = context.get("user")
    value = _field(user, field) if user is not None else None
    if value is None or value == "":
        if not required:
            return None
        where = "no user in the context" if user is None else f"user has no {field!r}"
        if isinstance(to, Mapping):
            # a to= mapping was given: its keys are what to check first (a misspelt
            # channel name read "pass to=", as if none had been)
            keys = ", ".join(repr(key) for key in list(to)[:10]) or "none"
            kinds = "" if kind == channel else f" nor its kind {kind!r}"
            raise RecipientError(
                f"channel {channel!r} ({kind}) has no recipient: to= names neither "
                f"{channel!r}{kinds} (its keys: {keys}), and {where}"
            )
        raise RecipientError(
            f"channel {channel!r} ({kind}) has no recipient: {where}; pass to= or user.{field}"
        )
    return str(value)
