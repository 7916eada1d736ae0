"""The walks behind comparing, printing and pickling deep events (``_nested``) agree with
Python's own ``==``, ``repr()`` and a pickle round trip, on any data an event holds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event._frozen import MAX_DEPTH, FrozenList, freeze, nested_too_deep
from pepperpy.event._nested import flatten, nested_equal, nested_repr, unflatten
from tests.core.test_deep_events import Colour
from tests.core.test_freeze_depth import cyclic_dict, nested

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.sampled_from([Decimal("1.5"), b"x", Colour.RED, date(2020, 1, 1)]),
)
_data = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_data, _data)
def test_the_walks_agree_with_pythons_own(data: Any, other: Any) -> None:
    frozen = freeze(data)
    assert nested_repr(frozen) == repr(frozen)
    assert nested_equal(frozen, freeze(other)) == (frozen == freeze(other))
    assert nested_equal(frozen, data) == (frozen == data)
    for value in (data, frozen):
        restored = unflatten(*flatten(value, "data"))
        assert restored == value
        assert repr(restored) == repr(value)
        kinds = [type(c) for c in (value, restored)]
        assert kinds[0] is kinds[1]  # dicts stay dicts, read-only ones read-only


def test_a_dict_never_equals_a_list_nor_a_shorter_one() -> None:
    assert not nested_equal({}, [])
    assert not nested_equal([1], [1, 2])
    assert not nested_equal({"a": 1}, {"b": 1})
    assert not nested_equal(FrozenList([{"a": 1}]), [{"a": 2}])
    assert nested_equal(FrozenList([{"a": 1}]), [{"a": 1.0}])


def test_a_damaged_flat_form_is_refused() -> None:
    shape, leaves = flatten({"a": [1, 2]}, "data")
    with pytest.raises(ValueError, match="damaged"):
        unflatten(shape, leaves[:-1])
    with pytest.raises(ValueError, match="damaged"):
        unflatten([*shape, shape[-1]], leaves)


@pytest.mark.parametrize("shape", ["dict", "list", "tuple", "mixed"])
def test_nested_too_deep_counts_levels_as_freeze_does(shape: str) -> None:
    assert not nested_too_deep(nested(MAX_DEPTH, shape))
    assert nested_too_deep(nested(MAX_DEPTH + 1, shape))
    assert not nested_too_deep({"a": 1, "b": "x"})
    assert not nested_too_deep("text")


def test_nested_too_deep_says_yes_for_a_cycle_and_looks_at_shared_containers_once() -> None:
    assert nested_too_deep(cyclic_dict())
    shared: Any = [0]
    for _ in range(MAX_DEPTH - 1):  # each level holds the one below it twice: 2**252 paths
        shared = [shared, shared]
    assert not nested_too_deep(shared)
    assert nested_too_deep([shared])
