"""CloudEvents 1.0: our structured-mode JSON, its extension rules, and the official SDK."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from pepperpy.event import Event, SerializationError

SDK_JSON = JSONFormat()


def _sdk_read(raw: bytes) -> CloudEvent:
    event = SDK_JSON.read(None, raw)
    assert isinstance(event, CloudEvent)
    return event


# -- our own round trips ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        0,
        -1.5,
        True,
        "text",
        "123",
        "true",
        "null",
        '{"looks": "like json"}',
        [1, [2, {}]],
        {"nested": {"a": [None, "x"]}},
        b"\x00\xffbinary",
    ],
)
def test_every_data_shape_round_trips(data: Any) -> None:
    event = Event("shape.test", data)
    via_dict = Event.from_cloudevent(event.to_cloudevent())
    via_json = Event.from_json(event.to_json())
    for back in (via_dict, via_json):
        assert back.data == data
        assert type(back.data) is type(event.data)
        assert back == event


def test_all_attributes_round_trip() -> None:
    when = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
    event = Event(
        "user.created",
        {"name": "Ann"},
        {"traceparent": "00-abc-01", "count": 3},
        id="evt-1",
        timestamp=when,
        version=4,
        source="urn:svc:users",
        subject="user/1",
    )
    back = Event.from_json(event.to_json())
    assert back.to_dict() == event.to_dict()
    assert back.timestamp == when
    assert (back.source, back.subject, back.version) == ("urn:svc:users", "user/1", 4)


def test_structured_form_is_cloudevents_1_0() -> None:
    when = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    event = Event("user.created", {"a": 1}, id="e1", timestamp=when, subject="s")
    ce = event.to_cloudevent()
    assert ce == {
        "specversion": "1.0",
        "id": "e1",
        "source": "pepperpy-event",
        "type": "user.created",
        "time": "2024-01-01T12:00:00Z",
        "subject": "s",
        "datacontenttype": "application/json",
        "data": {"a": 1},
    }
    assert json.loads(event.to_json()) == ce
    assert isinstance(event.to_json(), bytes)


def test_binary_data_uses_data_base64() -> None:
    ce = Event("blob.stored", b"\x01\x02").to_cloudevent()
    assert "data" not in ce
    assert ce["data_base64"] == base64.b64encode(b"\x01\x02").decode()
    assert ce["datacontenttype"] == "application/octet-stream"


def test_the_cloudevent_dict_is_json_whatever_the_data_holds() -> None:
    # datetime, Decimal, UUID and bytes inside data are given in their JSON form, as in
    # to_json(): the dict is "the structured-mode JSON object" and json.dumps can write it
    import decimal
    import uuid

    at = datetime(2024, 1, 1, tzinfo=UTC)
    data = {"at": at, "total": decimal.Decimal("9.99"), "ref": uuid.UUID(int=1), "n": [b"\x00"]}
    event = Event("order.placed", data)
    ce = event.to_cloudevent()
    assert ce["data"] == json.loads(event.to_json())["data"]
    assert ce["data"]["at"] == "2024-01-01T00:00:00+00:00" and ce["data"]["total"] == "9.99"
    assert json.loads(json.dumps(ce)) == json.loads(event.to_json())
    assert event.data["at"] == at, "the event keeps its own values"
    plain = Event("t", {"a": [1, 2.5, None]}).to_cloudevent()
    assert plain["data"] == {"a": [1, 2.5, None]}


def test_no_data_means_no_data_member() -> None:
    ce = Event("ping").to_cloudevent()
    assert "data" not in ce and "data_base64" not in ce and "datacontenttype" not in ce


def test_version_travels_as_an_extension_only_when_not_one() -> None:
    assert "pepperpyversion" not in Event("t").to_cloudevent()
    assert Event("t", version=2).to_cloudevent()["pepperpyversion"] == 2
    ce = Event("t", version=2).to_cloudevent()
    ce["pepperpyversion"] = "2"  # a string-typed extension from another SDK
    assert Event.from_cloudevent(ce).version == 2


# -- extension rules --------------------------------------------------------------------


def test_valid_metadata_entries_become_extensions() -> None:
    metadata = {"traceparent": "00-x-01", "tenant": "acme", "retries": 2, "urgent": True}
    ce = Event("t", None, metadata).to_cloudevent()
    for key, value in metadata.items():
        assert ce[key] == value
    assert "pepperpymetadata" not in ce


def test_other_metadata_travels_packed_and_comes_back_as_it_was() -> None:
    metadata: dict[str, Any] = {
        "camelCase": "x",  # upper case is not allowed in extension names
        "with-dash": 1,
        "averyveryverylongname21": "x",  # 23 characters: over the 20 allowed
        "ratio": 0.5,  # floats are not a CloudEvents extension type
        "nested": {"a": [1, 2]},
        "nothing": None,
        "id": "not the event id",  # a context attribute name
        "data": "not the data",
        "time": "never",
        "datacontenttype": "",  # CloudEvents requires a non-empty one
        "dataschema": 5,  # optional attribute with a non-string value
        "ok": "plain",
    }
    event = Event("t", {"payload": 1}, metadata)
    ce = event.to_cloudevent()
    assert ce["ok"] == "plain"
    packed = json.loads(ce["pepperpymetadata"])
    assert packed == {k: v for k, v in metadata.items() if k != "ok"}
    assert ce["id"] == event.id and ce["data"] == {"payload": 1}
    back = Event.from_json(event.to_json())
    assert back.metadata == metadata
    assert back.data == {"payload": 1}


def test_dataschema_with_a_string_passes_through_as_the_attribute() -> None:
    ce = Event("t", {"a": 1}, {"dataschema": "https://example.com/s.json"}).to_cloudevent()
    assert ce["dataschema"] == "https://example.com/s.json"
    assert Event.from_cloudevent(ce).metadata == {"dataschema": "https://example.com/s.json"}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ({"a": 1}, "application/json"),  # the type written for JSON data anyway
        (b"\x00", "application/octet-stream"),  # ... and for bytes
        ({"a": 1}, "application/json; charset=utf-8"),
        ("<a/>", "application/xml"),
        (None, "text/plain"),
    ],
)
def test_a_datacontenttype_in_metadata_is_written_as_the_attribute(
    data: Any, content_type: str
) -> None:
    event = Event("t", data, {"datacontenttype": content_type})
    ce = json.loads(event.to_json())
    assert ce["datacontenttype"] == content_type
    assert "pepperpymetadata" not in ce or content_type in (
        "application/json",
        "application/octet-stream",
    )
    back = Event.from_json(event.to_json())
    assert back.metadata == {"datacontenttype": content_type} and back.data == data


# -- interop with the official SDK -------------------------------------------------------


def test_sdk_reads_what_we_write() -> None:
    when = datetime(2024, 3, 1, 8, 30, 15, 250000, tzinfo=UTC)
    event = Event(
        "order.placed",
        {"total": 12.5, "items": ["a"]},
        {"traceparent": "00-1-01", "attempt": 2, "flag": False, "Mixed": "packed"},
        timestamp=when,
        version=3,
        source="urn:shop",
        subject="order/7",
    )
    sdk = _sdk_read(event.to_json())
    assert sdk.get_id() == event.id
    assert sdk.get_type() == "order.placed"
    assert sdk.get_source() == "urn:shop"
    assert sdk.get_subject() == "order/7"
    assert sdk.get_time() == when
    assert sdk.get_datacontenttype() == "application/json"
    assert sdk.get_data() == {"total": 12.5, "items": ["a"]}
    assert sdk.get_extension("traceparent") == "00-1-01"
    assert sdk.get_extension("attempt") == 2
    assert sdk.get_extension("flag") is False
    assert sdk.get_extension("pepperpyversion") == 3
    assert json.loads(sdk.get_extension("pepperpymetadata")) == {"Mixed": "packed"}
    # and what the SDK writes back out, we read as the same event
    assert Event.from_json(SDK_JSON.write(sdk)).to_dict() == event.to_dict()


def test_sdk_reads_our_binary_data() -> None:
    event = Event("blob.stored", b"\x00\x01\xfe\xff")
    sdk = _sdk_read(event.to_json())
    assert sdk.get_data() == b"\x00\x01\xfe\xff"
    assert Event.from_json(SDK_JSON.write(sdk)).data == b"\x00\x01\xfe\xff"


def test_we_read_what_the_sdk_writes() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    sdk = CloudEvent(
        {
            "id": "sdk-1",
            "source": "https://example.com/orders",
            "type": "com.example.order.created",
            "time": when,
            "subject": "order/9",
            "datacontenttype": "application/json",
            "tenant": "acme",
            "priority": 5,
            "dataschema": "https://example.com/order.json",
        },
        {"order": 9, "lines": [{"sku": "x", "qty": 1}]},
    )
    event = Event.from_json(SDK_JSON.write(sdk))
    assert event.id == "sdk-1"
    assert event.type == "com.example.order.created"
    assert event.source == "https://example.com/orders"
    assert event.subject == "order/9"
    assert event.timestamp == when
    assert event.timestamp.utcoffset() == timedelta(0)
    assert event.data == {"order": 9, "lines": [{"sku": "x", "qty": 1}]}
    assert event.version == 1
    assert event.metadata == {
        "tenant": "acme",
        "priority": 5,
        "dataschema": "https://example.com/order.json",
    }
    # and we write it back so the SDK sees the same extensions and data
    again = _sdk_read(event.to_json())
    assert again.get_extension("tenant") == "acme"
    assert again.get_extension("priority") == 5
    assert again.get_dataschema() == "https://example.com/order.json"
    assert again.get_data() == sdk.get_data()


def test_we_read_sdk_binary_data_and_plain_text() -> None:
    binary = CloudEvent({"id": "b", "source": "s", "type": "blob"}, b"\x10\x20")
    assert Event.from_json(SDK_JSON.write(binary)).data == b"\x10\x20"
    text = CloudEvent(
        {"id": "t", "source": "s", "type": "note", "datacontenttype": "text/plain"}, "hello"
    )
    assert Event.from_json(SDK_JSON.write(text)).data == "hello"
    json_string = CloudEvent(
        {"id": "j", "source": "s", "type": "note", "datacontenttype": "application/json"}, "42"
    )
    assert Event.from_json(SDK_JSON.write(json_string)).data == "42", "a JSON string stays one"


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", "hello"),
        ("application/xml", "<order id='7'/>"),
        ("text/csv", "a,b\n1,2"),
        ("application/cloudevents+json", {"a": 1}),
        ("application/json", b'{"a": 1}'),  # JSON sent as data_base64
        ("application/vnd.apache.thrift.binary", b"\x80\x01"),
        ("text/plain", None),  # a type with no data
    ],
)
def test_a_producers_datacontenttype_is_kept_and_written_back(content_type: str, data: Any) -> None:
    # it was dropped on reading: a relay relabelled text as application/json, and JSON
    # sent as data_base64 as application/octet-stream
    attributes = {"id": "1", "source": "/shop", "type": "order.placed"}
    sdk = CloudEvent({**attributes, "datacontenttype": content_type}, data)
    event = Event.from_json(SDK_JSON.write(sdk))
    assert event.metadata == {"datacontenttype": content_type}
    assert event.data == data
    again = _sdk_read(event.to_json())
    assert again.get_datacontenttype() == content_type
    assert again.get_data() == data
    assert Event.from_json(event.to_json()).metadata == {"datacontenttype": content_type}


def test_without_a_datacontenttype_the_default_is_written_and_none_kept() -> None:
    # CloudEvents: data with no datacontenttype is JSON; bytes are written as octet-stream
    for data, written in (({"a": 1}, "application/json"), (b"\x01", "application/octet-stream")):
        event = Event.from_json(
            SDK_JSON.write(CloudEvent({"id": "1", "source": "s", "type": "t"}, data))
        )
        assert event.metadata == {}
        assert _sdk_read(event.to_json()).get_datacontenttype() == written
    no_data = Event.from_json(SDK_JSON.write(CloudEvent({"id": "1", "source": "s", "type": "t"})))
    assert "datacontenttype" not in json.loads(no_data.to_json())


def test_sdk_written_event_without_time_gets_one() -> None:
    raw = json.dumps({"specversion": "1.0", "id": "x", "source": "s", "type": "t"})
    before = datetime.now(UTC)
    event = Event.from_json(raw)
    assert event.timestamp >= before - timedelta(seconds=1)
    assert event.data is None


# -- malformed input -------------------------------------------------------------------

VALID: dict[str, Any] = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"specversion": None}, "specversion"),
        ({"id": ""}, "id"),
        ({"id": 5}, "id"),
        ({"source": None}, "source"),
        ({"type": ["t"]}, "type"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2024-01-01T00:00:00"}, "offset"),
        ({"time": 1700000000}, "time"),
        ({"data_base64": "!!not base64!!"}, "base64"),
        ({"data_base64": 12}, "base64"),
        ({"pepperpymetadata": "not json"}, "JSON"),
        ({"pepperpymetadata": "[1, 2]"}, "pepperpymetadata"),
        ({"pepperpyversion": 0}, "pepperpyversion"),
        ({"pepperpyversion": "two"}, "pepperpyversion"),
        ({"pepperpyversion": True}, "pepperpyversion"),
    ],
)
def test_malformed_cloudevents_raise_serialization_error(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(SerializationError, match=message):
        Event.from_cloudevent({**VALID, **change})
    with pytest.raises(SerializationError, match=message):
        Event.from_json(json.dumps({**VALID, **change}))


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type"])
def test_missing_required_attribute_is_refused(missing: str) -> None:
    broken = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(SerializationError, match=missing):
        Event.from_cloudevent(broken)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b'"string"', b"\xff\xfe", "null"])
def test_malformed_json_documents_are_refused(raw: bytes | str) -> None:
    with pytest.raises(SerializationError):
        Event.from_json(raw)


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(SerializationError, match="JSON object"):
        Event.from_cloudevent(["specversion"])  # type: ignore[arg-type]


def test_ints_beyond_the_cloudevents_integer_range_travel_packed() -> None:
    metadata = {"small": 2**31 - 1, "negative": -(2**31), "big": 2**31, "huge": -(2**40)}
    event = Event("t", None, metadata)
    ce = event.to_cloudevent()
    assert ce["small"] == 2**31 - 1 and ce["negative"] == -(2**31)
    assert "big" not in ce and "huge" not in ce
    assert json.loads(ce["pepperpymetadata"]) == {"big": 2**31, "huge": -(2**40)}
    assert Event.from_json(event.to_json()).metadata == metadata


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00.123456789Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-01t00:00:00z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T05:30:00+05:30", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T00:00:00.1Z", datetime(2024, 1, 1, 0, 0, 0, 100000, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_from_other_producers(text: str, expected: datetime) -> None:
    """Go and Java SDKs write nanoseconds; RFC 3339 allows lower-case 't' and 'z'."""
    event = Event.from_cloudevent({**VALID, "time": text})
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == timedelta(0)


# -- property-based round trips ------------------------------------------------------------

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
metadata_keys = (
    st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True)
    | st.text(min_size=1, max_size=24)
    | st.sampled_from(["id", "type", "time", "subject", "data", "dataschema", "specversion"])
)
metadata_maps = st.dictionaries(metadata_keys, json_values, max_size=6)


CONTEXT_ATTRIBUTES = {
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "data",
    "data_base64",
    "dataschema",
    "pepperpyversion",
    "pepperpymetadata",
}


def _travels_as_extension(key: str, value: Any) -> bool:
    """The SPEC's rule, written independently of the implementation."""
    if key == "dataschema":  # a URI: CloudEvents refuses an empty one
        return isinstance(value, str) and value != ""
    if key in CONTEXT_ATTRIBUTES or not re.fullmatch(r"[a-z0-9]{1,20}", key):
        return False
    if isinstance(value, bool | str):
        return True
    return isinstance(value, int) and -(2**31) <= value < 2**31


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_values | st.binary(max_size=32), metadata=metadata_maps)
@example(data=None, metadata={"dataschema": ""})  # found by hypothesis: the SDK refused it
def test_any_event_round_trips_through_our_json_and_the_sdk(data: Any, metadata: Any) -> None:
    event = Event("prop.test", data, metadata)
    raw = event.to_json()
    back = Event.from_json(raw)
    assert back == event
    assert back.data == event.data
    assert back.metadata == metadata
    assert back.timestamp == event.timestamp
    sdk = _sdk_read(raw)
    assert sdk.get_id() == event.id
    assert sdk.get_data() == (None if data is None else data)
    for key, value in metadata.items():
        if _travels_as_extension(key, value):
            assert sdk.get_attributes()[key] == value
        elif key not in CONTEXT_ATTRIBUTES:
            assert key not in sdk.get_attributes()
    again = Event.from_json(SDK_JSON.write(sdk))
    assert again == event and again.metadata == metadata


@pytest.mark.parametrize(
    ("attribute", "value", "reason"),
    [
        ("type", "a\x00b", "NUL"),
        ("id", "x\ud800", "lone surrogate"),
        ("source", "\x00", "NUL"),
        ("subject", "s\x00", "NUL"),
    ],
)
def test_attributes_no_store_can_hold_are_refused(attribute: str, value: str, reason: str) -> None:
    document = Event("t", subject="s").to_cloudevent()
    document[attribute] = value
    with pytest.raises(SerializationError, match=f"{attribute!r} {'contains'}.*{reason}"):
        Event.from_cloudevent(document)


def test_a_version_beyond_the_greatest_is_refused() -> None:
    document = Event("t", version=2).to_cloudevent()
    document["pepperpyversion"] = 2**31
    with pytest.raises(SerializationError, match="from 1 to 2147483647"):
        Event.from_cloudevent(document)


# -- any malformed input raises SerializationError only ------------------------------------
#
# A transport skips a message it cannot read (SerializationError) and goes on; any other
# error ended the Redis listener, and every ungrouped subscription with it.


@pytest.mark.parametrize(
    "version",
    [
        "\u00b2",  # "²".isdigit() is True, int() refuses it
        "\u0663",  # ARABIC-INDIC DIGIT THREE: int() would read it, CloudEvents has no such
        "9" * 5000,  # int() refuses text of more than 4,300 digits with a ValueError
        "2147483648",
        "0",
        "",
        "+2",
        " 2",
    ],
)
def test_a_version_in_text_must_be_ascii_digits_in_range(version: str) -> None:
    document = {**VALID, "pepperpyversion": version}
    with pytest.raises(SerializationError, match="pepperpyversion"):
        Event.from_cloudevent(document)
    with pytest.raises(SerializationError, match="pepperpyversion"):
        Event.from_json(json.dumps(document))


def test_a_version_in_ascii_digits_is_read() -> None:
    assert Event.from_cloudevent({**VALID, "pepperpyversion": "7"}).version == 7
    assert Event.from_cloudevent({**VALID, "pepperpyversion": "2147483647"}).version == 2**31 - 1


@pytest.mark.parametrize(
    "change",
    [
        {"pepperpyversion": 10**5000},  # its repr() raises ValueError
        {"specversion": 10**5000},
        {"time": 10**5000},
        {"data_base64": 10**5000},
        {"time": datetime(2024, 1, 1)},  # naive
        {"time": datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))},  # before year 1
        {"data": {1: "int key"}},
        {"data": {"v": float("nan")}},
        {"pepperpymetadata": {"a": 1}, "data": {"deep": [[[[[]]]]] * 2, "set": {1}}},
    ],
    ids=lambda change: "+".join(change),
)
def test_python_values_no_json_holds_raise_serialization_error(change: dict[str, Any]) -> None:
    with pytest.raises(SerializationError):
        Event.from_cloudevent({**VALID, **change})


def test_an_integer_literal_too_long_for_int_raises_serialization_error() -> None:
    raw = '{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "pepperpyversion": %s}'
    with pytest.raises(SerializationError):
        Event.from_json(raw % ("9" * 5000))


def _branch(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` as one branch of a ``one_of`` (which would flatten its own branches)."""
    return strategy.map(lambda value: value)


_hostile_values = st.one_of(
    _branch(json_scalars),
    _branch(st.integers(min_value=-(10**80), max_value=10**80)),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=6),
    st.text(alphabet="0123456789\u00b2\u0663", min_size=1, max_size=12),
    st.integers(min_value=-3, max_value=2**32).map(str),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.text(alphabet=st.characters(categories=["Cs", "Cc", "Zs", "Nd"]), max_size=4),
    st.sampled_from(
        [
            "1.0",
            "",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "AAAA",
            "=",
            "{}",
            '{"a": 1}',
        ]
    ),
    _branch(
        st.recursive(
            json_scalars,
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=6), inner, max_size=3)
            ),
            max_leaves=8,
        )
    ),
)
_ATTRIBUTES = sorted(CONTEXT_ATTRIBUTES | {"partitionkey"})


def _read_or_refused(document: dict[str, Any]) -> None:
    """Read ``document`` both ways: an Event, or SerializationError, and nothing else."""
    try:
        Event.from_cloudevent(document)
    except SerializationError:
        pass
    try:
        text = json.dumps(document)
    except ValueError:  # an int the json module cannot write (over 4,300 digits)
        return
    try:
        event = Event.from_json(text)
    except SerializationError:
        return
    back = Event.from_json(event.to_json())  # what was read can be written again
    assert back == event and back.metadata == event.metadata


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attribute=st.sampled_from(_ATTRIBUTES), value=_hostile_values)
@example(attribute="pepperpyversion", value="\u00b2")
@example(attribute="pepperpyversion", value="9" * 5000)
@example(attribute="time", value="0001-01-01T00:30:00+01:00")
def test_any_value_of_any_attribute_is_read_or_refused_with_serialization_error(
    attribute: str, value: Any
) -> None:
    _read_or_refused({**VALID, attribute: value})


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.dictionaries(
        st.sampled_from(_ATTRIBUTES) | st.text(max_size=8), _hostile_values, max_size=8
    ),
    keep=st.sets(st.sampled_from(sorted(VALID))),
)
def test_any_document_is_read_or_refused_with_serialization_error(
    document: dict[str, Any], keep: set[str]
) -> None:
    _read_or_refused({**document, **{name: VALID[name] for name in keep}})


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64) | st.text(max_size=64))
@example(raw=b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "\\ud800"}')
def test_any_text_is_read_or_refused_with_serialization_error(raw: bytes | str) -> None:
    try:
        Event.from_json(raw)
    except SerializationError:
        pass


# -- what cannot be written is refused clearly ---------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "where"),
    [
        ({1: "x"}, r"metadata: .*int key 1"),
        ({"ok": "y", (2, 3): "x"}, r"metadata: .*tuple key \(2, 3\)"),
        ({"nested": {4: "x"}}, r"at metadata\['nested'\]: .*int key 4"),
    ],
)
def test_metadata_keys_that_are_not_str_are_refused_naming_the_key(
    metadata: dict[Any, Any], where: str
) -> None:
    """As ``publish`` and the store refuse them: JSON would turn such a key into text."""
    event = Event("a.b", {"x": 1}, metadata)
    with pytest.raises(SerializationError, match=where):
        event.to_json()
    with pytest.raises(SerializationError, match=where):
        event.to_cloudevent()


@pytest.mark.parametrize("data", [{"v": "\ud800"}, {"\udc00": 1}, ["x\udfff"], "\ud83d"])
def test_text_that_is_not_utf8_is_refused_by_to_cloudevent_as_by_to_json(data: Any) -> None:
    # to_cloudevent() returned such data as it was, in a dict no UTF-8 JSON can hold
    event = Event("a.b", data)
    with pytest.raises(SerializationError, match="holds a lone surrogate"):
        event.to_json()
    with pytest.raises(SerializationError, match="holds a lone surrogate"):
        event.to_cloudevent()
