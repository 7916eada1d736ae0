"""PatternIndex(order=...) that is not callable is refused at construction.

It used to be taken, and to fail only at the first topic matching two items, with
"TypeError: 'str' object is not callable" raised from match(), far from the mistake
(``order="priority"``, an attribute's name, where a function is wanted).
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import PatternIndex


@pytest.mark.parametrize("order", ["priority", 5, ("priority",)])
def test_an_order_that_is_not_callable_is_refused_naming_it(order: Any) -> None:
    with pytest.raises(TypeError, match="order must be a function") as caught:
        PatternIndex(order=order)
    assert str(caught.value).endswith(f"got {order!r}")


def test_a_callable_order_still_sorts() -> None:
    index: PatternIndex[tuple[str, int]] = PatternIndex(order=lambda item: -item[1])
    index.add("#", ("log", 0))
    index.add("users.*", ("auth", 10))
    assert index.match("users.login") == (("auth", 10), ("log", 0))
