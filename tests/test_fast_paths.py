"""The hot paths give exactly what the plain rules give (no timing here: see bench/)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ingest_mw import Batch, EventTimes, IngestError, MemorySink, parse_dt
from ingest_mw.batch import Event, Events
from ingest_mw.codecs import all_objects, require_objects
from ingest_mw.jsonarray import JSONArrayCodec, object_sizes, split_array
from ingest_mw.sinks import as_async

UTC = UTC
RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def slow_event_time(times: EventTimes, event: dict, received_at: datetime) -> datetime:
    """The rule as the docs state it, one call at a time."""
    value = next((event[f] for f in times.fields if event.get(f) is not None), None)
    parsed = None if value is None else parse_dt(value)
    if parsed is None or (times.max_past is not None and parsed < received_at - times.max_past):
        return received_at
    return parsed


DT_VALUES = [
    None,
    "2024-05-01T11:59:00Z",
    "2024-05-01T11:59:00.123456789+00:00",
    "2024-05-01 13:59:00+02:00",
    "2024-05-01T11:59:00",  # no offset: UTC
    "2024-05-01T11:00:00Z",  # an hour old
    "2024-05-01T12:30:00-01:00",  # in the future
    "garbage",
    "",
    1714564740,
    1714564740123,
    1714564740.5,
    True,
    float("nan"),
    [1],
    {"a": 1},
    datetime(2024, 5, 1, 11, 59, tzinfo=UTC),
    datetime(2024, 5, 1, 11, 59),
]


@pytest.mark.parametrize("fields", [("dt",), ("timestamp", "dt")])
@pytest.mark.parametrize("max_past", [timedelta(minutes=15), None])
def test_event_times_match_the_rule_event_by_event(fields, max_past):
    times = EventTimes(fields=fields, max_past=max_past)
    events = [{"dt": v} for v in DT_VALUES] + [{"timestamp": v, "dt": "2024-05-01T11:58:00Z"} for v in DT_VALUES]
    events.append({})
    got = times.event_times(events, RECEIVED)
    assert got == [slow_event_time(times, e, RECEIVED) for e in events]
    assert got == [times.event_time(e, RECEIVED) for e in events]
    assert all(t.utcoffset() == timedelta(0) for t in got)


def test_events_pair_each_object_with_its_time_decided_once():
    calls = []

    class Decide:
        def event_times(self, data, received_at):
            calls.append(len(data))
            return [received_at - timedelta(seconds=n) for n in range(len(data))]

    decide = Decide()
    events = Events([{"a": 1}, {"b": 2}, {"c": 3}], decide, RECEIVED)
    assert len(events) == 3 and calls == []  # nothing decided until asked
    expected = [Event(RECEIVED - timedelta(seconds=n), d) for n, d in enumerate([{"a": 1}, {"b": 2}, {"c": 3}])]
    assert list(events) == expected
    assert all(type(e) is Event for e in events)
    assert events[1] == expected[1] and events[-1] == expected[2] and events[1:] == expected[1:]
    assert events == expected and events.times == [e.time for e in expected]
    assert calls == [3]  # decided once for all the uses above
    with pytest.raises(IndexError):
        events[3]
    assert events == Events([{"a": 1}, {"b": 2}, {"c": 3}], decide, RECEIVED)
    assert events != expected[:2] and events != Events([{"a": 1}], decide, RECEIVED)
    assert Events([], decide, RECEIVED) == [] and Events([], decide, RECEIVED) != ""
    assert Events([], decide, RECEIVED) != ()


@pytest.mark.parametrize(
    ("items", "expected"), [([], True), ([{}], True), ([{}, {"a": 1}], True), ([{}, []], False), ([1], False)]
)
def test_all_objects(items, expected):
    assert all_objects(items) is expected


def test_require_objects_still_names_the_first_bad_element():
    with pytest.raises(IngestError, match="event 2 is a string"):
        require_objects([{}, {}, "x", 1])


def _random_body(rng: random.Random) -> tuple[bytes, list]:
    def value(depth: int):
        r = rng.random()
        if depth > 4 or r < 0.4:
            return rng.choice([1, "s", "},{", '"}, {"', "x\\y", None, "é", ""])
        if r < 0.7:
            return {f"k{i}": value(depth + 1) for i in range(rng.randrange(3))}
        return [value(depth + 1) for _ in range(rng.randrange(3))]

    events = [{"i": i, "v": value(0)} for i in range(rng.randrange(0, 6))]
    option = rng.choice([0, orjson.OPT_INDENT_2])
    body = orjson.dumps(events, option=option)
    return rng.choice([b"", b" \n"]) + body + rng.choice([b"", b"\r\n"]), events


def test_object_sizes_agree_with_the_scanner_or_abstain():
    rng = random.Random(7)
    answered = 0
    for _ in range(2000):
        body, events = _random_body(rng)
        sizes = object_sizes(body, len(events))
        if sizes is not None:
            answered += 1
            assert sizes == [end - start for start, end in split_array(body)]
    assert answered > 500


def test_object_sizes_abstains_on_separators_inside_strings_and_nested_arrays():
    assert object_sizes(b'[{"a":"},{"},{"b":1}]', 2) is None
    assert object_sizes(b'[{"a":[{"b":1},{"c":2}]}]', 1) is None
    assert object_sizes(b'[{"a":1} ,\n {"b":22}]', 2) == [7, 8]
    assert object_sizes(b" [ ] ", 0) == []


@pytest.mark.parametrize("limit", [8, 9, 10, 1000])
def test_codec_measures_each_event_past_the_limit(limit):
    # The body is longer than the limit, so each object is measured: 9 and 10 bytes.
    body = b'[{"a":123},{"b":"45"}]'
    codec = JSONArrayCodec(max_event_bytes=limit)
    decoded = codec.decode(body)
    sizes = [9, 10]
    assert decoded.events == [e for e, s in zip(orjson.loads(body), sizes) if s <= limit]
    assert [i for i, _ in decoded.invalid] == [i for i, s in enumerate(sizes) if s > limit]


def test_scanner_follows_elements_nested_deeper_than_its_fast_pattern():
    deep = b"[" * 12 + b'"]"' + b"]" * 12
    body = b"[" + deep + b', {"a":' + deep + b"}, 3]"
    n = len(deep)
    assert split_array(body) == [(1, 1 + n), (3 + n, 3 + n + 6 + n), (len(body) - 2, len(body) - 1)]
    with pytest.raises(IngestError, match="string is never closed"):
        split_array(b"[" + b"[" * 12 + b'"abc')
    with pytest.raises(IngestError, match="never closed"):
        split_array(b"[" + b"{" * 12)


def test_memory_sink_is_awaited_on_the_loop_and_subclasses_keep_their_colour():
    sink = MemorySink()
    store = as_async(sink)
    batch = Batch(api="betterstack", source="s", received_at=RECEIVED, events=[])
    asyncio.run(store(batch))
    assert sink.batches == [batch]

    class Blocking(MemorySink):
        acall = None  # type: ignore[assignment]

    blocking = Blocking()
    store = as_async(blocking)
    assert getattr(store, "__self__", None) is not blocking  # back to a worker thread
    asyncio.run(store(batch))
    assert blocking.batches == [batch]


# --- Content-Type values remembered as sent -------------------------------------------


def test_negotiation_by_remembered_values_agrees_with_parsing_and_stays_bounded():
    from ingest_mw.codecs import (
        _KNOWN_VALUE_LENGTH,
        _KNOWN_VALUES,
        CodecNegotiation,
        JSONCodec,
        MsgPackCodec,
        media_type,
    )

    json_codec, msgpack_codec = JSONCodec(), MsgPackCodec()
    negotiation = CodecNegotiation([json_codec, msgpack_codec])
    plain = {"application/json": json_codec, "application/msgpack": msgpack_codec}
    long_value = "application/json; " + "x" * _KNOWN_VALUE_LENGTH
    refused = ["text/plain", "", None, "application/json-seq"]
    values = [
        " Application/MsgPack ",
        "APPLICATION/JSON;q=1",
        long_value,
        *refused,
        *(f"application/json; charset=utf-{i}" for i in range(200)),
    ]
    for _ in range(2):  # first seen, then (if remembered) found as sent
        for value in values:
            expected = plain.get(media_type(value))
            if expected is None:
                with pytest.raises(IngestError) as refusal:
                    negotiation.negotiate(value)
                assert refusal.value.status == 415
            else:
                assert negotiation.negotiate(value) is expected
    remembered = negotiation._by_value
    assert remembered[" Application/MsgPack "] is msgpack_codec
    assert remembered["APPLICATION/JSON;q=1"] is json_codec
    assert not any(value in remembered for value in refused)
    assert long_value not in remembered  # a long value is parsed each time, never kept
    # However many distinct values clients send, a fixed number is remembered.
    assert len(remembered) == _KNOWN_VALUES


def test_a_codecs_media_type_matches_in_any_case():
    from ingest_mw.codecs import CodecNegotiation, JSONCodec

    class ShoutingJSON(JSONCodec):
        media_types = ("Application/Vnd.Example+JSON",)

    codec = ShoutingJSON()
    negotiation = CodecNegotiation([codec])
    for value in ("application/vnd.example+json", "Application/Vnd.Example+JSON", "APPLICATION/VND.EXAMPLE+JSON"):
        assert negotiation.negotiate(value) is codec


def _depth(value) -> int:
    """How deeply ``value`` nests, as the depth cap counts (an event object is level 1)."""
    if type(value) is dict:
        return 1 + max(map(_depth, value.values()), default=0)
    if type(value) is list:
        return 1 + max(map(_depth, value), default=0)
    return 0


def _random_nested(rng: random.Random, depth: int):
    """A JSON value nesting up to ``depth`` more levels, empty containers at the bottom too."""
    r = rng.random()
    if depth == 0 or r < 0.2:
        return rng.choice([1, 2.5, "s", None, True, "", {}, []])
    if r < 0.6:
        return {f"k{i}": _random_nested(rng, depth - 1) for i in range(rng.randrange(1, 4))}
    return [_random_nested(rng, depth - 1) for _ in range(rng.randrange(1, 4))]


@pytest.mark.parametrize("plain", [True, False])
def test_the_depth_cap_refuses_exactly_the_events_deeper_than_it(plain):
    from ingest_mw.eventcaps import EventCaps

    rng = random.Random(11)
    refused = accepted = 0
    for _ in range(3000):
        events = [{"v": _random_nested(rng, rng.randrange(0, 9))} for _ in range(rng.randrange(1, 4))]
        cap = rng.randrange(1, 9)
        deepest = max(map(_depth, events))
        try:
            EventCaps(max_depth=cap).check(events, 10_000, plain=plain)
        except IngestError as error:
            assert error.status == 400 and f"deeper than {cap} levels" in error.detail
            assert deepest > cap, (events, cap)
            refused += 1
        else:
            assert deepest <= cap, (events, cap)
            accepted += 1
    assert refused > 500 and accepted > 500


def test_a_msgpack_extension_type_is_measured_by_the_general_walk():
    import msgpack

    from ingest_mw.codecs import MsgPackCodec
    from ingest_mw.eventcaps import EventCaps

    codec = MsgPackCodec(caps=EventCaps(max_depth=3))
    plain = codec.decode(msgpack.packb([{"a": {"b": datetime(2024, 5, 1, tzinfo=UTC)}}], datetime=True))
    assert plain.plain  # a timestamp decodes to a datetime, which holds nothing
    extended = codec.decode(msgpack.packb([{"a": {"b": msgpack.ExtType(5, b"xy")}}]))
    assert not extended.plain  # an ExtType leads to its class: never walked by referents
    EventCaps(max_depth=2).check(extended.events, 100, plain=extended.plain)
    with pytest.raises(IngestError, match="deeper than 1 levels"):
        EventCaps(max_depth=1).check(extended.events, 100, plain=extended.plain)


def test_a_wrong_plain_promise_costs_the_general_walk_not_a_wrong_answer():
    # A host's codec that says plain=True while its events hold objects of other
    # classes (an IntEnum, a UUID): each leads to its class and from there to the
    # whole interpreter; the walk notices and measures them the general way.
    import enum
    import uuid

    from ingest_mw.eventcaps import EventCaps

    class Level(enum.IntEnum):
        INFO = 9

    flat = [{"level": Level.INFO, "id": uuid.uuid4(), "tags": ["a"]}]
    for cap in (1, 2, 12, 64):
        if cap == 1:
            with pytest.raises(IngestError, match="deeper than 1 levels"):
                EventCaps(max_depth=cap).check(flat, 100, plain=True)  # the list is level 2
        else:
            EventCaps(max_depth=cap).check(flat, 100, plain=True)
    deep: dict = {"leaf": Level.INFO}
    for _ in range(70):
        deep = {"a": deep}
    with pytest.raises(IngestError, match="deeper than 64 levels"):
        EventCaps().check([deep], 10_000, plain=True)


def test_a_container_every_event_shares_is_walked_once_per_level():
    # OTLP's records share their resource and scope: 50,000 records under one
    # resource of 1,000 nested attributes are 50 million values if walked per
    # record. Walked once, the check is instant, and still exact.
    import time

    from ingest_mw.eventcaps import EventCaps

    resource = {f"a{i}": [i, {"x": [1]}] for i in range(1000)}
    events = [{"body": "x", "resource": resource} for _ in range(50_000)]
    started = time.process_time()
    EventCaps(max_depth=5).check(events, 10**6)  # event, resource, list, dict, list: 5 levels
    assert time.process_time() - started < 2  # walked per record, this is minutes of CPU
    with pytest.raises(IngestError, match="deeper than 4 levels"):
        EventCaps(max_depth=4).check(events, 10**6)
