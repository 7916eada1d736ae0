"""Event.caused(): a follow-up event carrying correlation and causation ids."""

from __future__ import annotations

import pytest

from pepperpy.event import Event


def test_a_chain_shares_the_first_event_s_id_as_correlation() -> None:
    placed = Event("order.placed", {"order": 1})
    paid = placed.caused("payment.taken", {"order": 1, "amount": 30})
    shipped = paid.caused("order.shipped", {"order": 1})
    assert paid.metadata == {"correlationid": placed.id, "causationid": placed.id}
    assert shipped.metadata == {"correlationid": placed.id, "causationid": paid.id}
    assert shipped.type == "order.shipped" and shipped.data == {"order": 1}
    assert len({placed.id, paid.id, shipped.id}) == 3  # new events, new ids


def test_an_incoming_correlation_id_is_carried_on() -> None:
    request = Event("http.request", None, {"correlationid": "req-42", "user": "ann"})
    reply = request.caused("http.reply")
    assert reply.metadata == {"correlationid": "req-42", "causationid": request.id}


def test_given_metadata_is_kept_and_wins() -> None:
    first = Event("a.b")
    follow = first.caused("a.c", metadata={"tenant": "acme", "correlationid": "mine"})
    assert follow.metadata == {"correlationid": "mine", "causationid": first.id, "tenant": "acme"}


def test_options_reach_the_new_event() -> None:
    first = Event("a.b")
    follow = first.caused("a.c", [1, 2], version=2, source="billing", subject="x")
    assert (follow.version, follow.source, follow.subject) == (2, "billing", "x")
    assert list(follow.data) == [1, 2]


def test_the_ids_are_cloudevents_extension_attributes() -> None:
    first = Event("a.b")
    follow = first.caused("a.c")
    wire = follow.to_cloudevent()
    assert wire["correlationid"] == first.id and wire["causationid"] == first.id
    assert Event.from_json(follow.to_json()).metadata == follow.metadata


def test_bad_arguments_are_refused_as_for_the_constructor() -> None:
    first = Event("a.b")
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        first.caused("a.c", metadata=["x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword"):
        first.caused("a.c", colour="red")
