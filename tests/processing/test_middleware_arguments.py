"""Middleware options given as users slip: refused when made, saying what to pass.

``ValidateMiddleware(EventValidator)`` (the class) was taken, and every event then
failed deep inside with ``validate() missing 1 required positional argument: 'data'``;
``RetryMiddleware`` refused an uncalled factory or ``None`` without saying what to pass.
"""

from __future__ import annotations

import pytest

from pepperpy.event import EventValidator, RetryMiddleware, RetryPolicy, ValidateMiddleware


def test_validate_middleware_refuses_the_validator_class() -> None:
    with pytest.raises(TypeError, match="instance, not the class EventValidator"):
        ValidateMiddleware(EventValidator)  # type: ignore[arg-type]


def test_validate_middleware_takes_an_instance() -> None:
    validator = EventValidator()
    assert ValidateMiddleware(validator).validator is validator


@pytest.mark.parametrize(
    ("policy", "hint"),
    [
        (RetryPolicy.exponential, r"call it, RetryPolicy\.exponential\(\.\.\.\)"),
        ("fixed", r"use RetryPolicy\.FIXED"),
        (None, r"RetryPolicy\.NONE makes one try"),
    ],
)
def test_retry_middleware_says_what_to_pass(policy: object, hint: str) -> None:
    with pytest.raises(TypeError, match=r"^policy must be a RetryPolicy, got .*" + hint):
        RetryMiddleware(policy)  # type: ignore[arg-type]
    retry = RetryMiddleware()
    with pytest.raises(TypeError, match=hint):
        retry.policy = policy  # type: ignore[assignment]
