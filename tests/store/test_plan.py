"""The shared append decision: deciding a group at once equals deciding it one by one.

Both durable backends commit groups of appends with :func:`plan_group`; the memory
backend decides each append alone with :func:`plan_append`. This property keeps the two
paths equivalent, whatever the mix of streams, expectations, retries and deletions.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import ANY, NO_STREAM, STREAM_EXISTS, AppendResult
from pepperpy.event.store.base import NewRecord, PendingAppend, StreamState, plan_group

STREAMS = ["a.1", "a.2", "b.1"]
IDS = [f"id-{n}" for n in range(6)]


def record(event_id: str) -> NewRecord:
    return NewRecord(event_id, "t", 1, b"null", None, 0, None, None)


appends = st.lists(
    st.builds(
        PendingAppend,
        st.sampled_from(STREAMS),
        st.lists(st.sampled_from(IDS), min_size=1, max_size=3, unique=True).map(
            lambda ids: [record(i) for i in ids]
        ),
        st.one_of(st.sampled_from([ANY, NO_STREAM, STREAM_EXISTS]), st.integers(0, 4)),
    ),
    min_size=1,
    max_size=12,
)
states = st.dictionaries(
    st.sampled_from(STREAMS),
    st.builds(
        lambda written, hidden, deleted: StreamState(written, min(hidden, written), deleted),
        st.integers(0, 4),
        st.integers(0, 4),
        st.booleans(),
    ),
)


def outcome_key(outcome: AppendResult | BaseException) -> Any:
    if isinstance(outcome, BaseException):
        return (type(outcome).__name__, str(outcome))
    return outcome


@settings(max_examples=300, deadline=None)
@given(appends, states)
def test_a_group_decides_like_its_appends_one_by_one(
    batch: list[PendingAppend], initial: dict[str, StreamState]
) -> None:
    first = 100
    together = plan_group(batch, copy.deepcopy(initial), {})
    grouped = [outcome_key(o) for o in together.outcomes(first)]

    one_by_one: list[Any] = []
    state = copy.deepcopy(initial)
    known: dict[tuple[str, str], tuple[int, int]] = {}
    head = first
    rows = []
    for append in batch:
        plan = plan_group([append], state, known)
        (outcome,) = plan.outcomes(head)
        one_by_one.append(outcome_key(outcome))
        for offset, stream, position, rec in plan.rows:
            known[(stream, rec.id)] = (position, head + offset)  # now committed
            rows.append((stream, position, rec.id, head + offset))
        head += plan.count
    assert grouped == one_by_one
    assert together.count == head - first
    assert [(s, p, r.id, first + o) for o, s, p, r in together.rows] == rows
