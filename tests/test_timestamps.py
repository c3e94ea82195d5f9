from datetime import UTC, datetime, timedelta

import pytest
from clients import PREFIX, make_client

from ingest_mw import BaselimeAPI, BetterStackAPI, EventTimes, MemorySink, parse_dt

UTC = UTC
T = datetime(2022, 12, 31, 12, 45, 59, tzinfo=UTC)  # 1672490759


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1672490759, T),  # the contract's three examples
        (1672490759123, T.replace(microsecond=123000)),
        (1672490759123456000, T.replace(microsecond=123456)),
        (1672490759123456, T.replace(microsecond=123456)),  # microseconds
        (1672490759.5, T.replace(microsecond=500000)),  # float seconds
        (1672490759123.25, T.replace(microsecond=123250)),  # float milliseconds
        ("2022-12-31T13:45:59.123456Z", datetime(2022, 12, 31, 13, 45, 59, 123456, tzinfo=UTC)),
        ("2022-12-31 13:45:59.123456+02:00", datetime(2022, 12, 31, 11, 45, 59, 123456, tzinfo=UTC)),
        ("2023-08-09 07:03:30+00:00", datetime(2023, 8, 9, 7, 3, 30, tzinfo=UTC)),
        ("2022-12-31T13:45:59.123456789Z", datetime(2022, 12, 31, 13, 45, 59, 123456, tzinfo=UTC)),
        ("2022-12-31T13:45:59Z", datetime(2022, 12, 31, 13, 45, 59, tzinfo=UTC)),
        ("2022-12-31T13:45:59-05:30", datetime(2022, 12, 31, 19, 15, 59, tzinfo=UTC)),
        ("2022-12-31T13:45:59", datetime(2022, 12, 31, 13, 45, 59, tzinfo=UTC)),  # no offset: UTC
        # RFC 3339 section 5.6: "T" and "Z" may be lower case.
        ("2022-12-31t13:45:59z", datetime(2022, 12, 31, 13, 45, 59, tzinfo=UTC)),
        ("2022-12-31T13:45:59.123456z", datetime(2022, 12, 31, 13, 45, 59, 123456, tzinfo=UTC)),
        ("2022-12-31t13:45:59+01:00", datetime(2022, 12, 31, 12, 45, 59, tzinfo=UTC)),
        (datetime(2022, 12, 31, 13, 45, 59, tzinfo=UTC), datetime(2022, 12, 31, 13, 45, 59, tzinfo=UTC)),
    ],
)
def test_parse_dt_forms(value, expected):
    parsed = parse_dt(value)
    assert parsed == expected
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    ["yesterday", "", "z", "2022-13-45T00:00:00Z", "2022-12-31T13:45:59+01:00z", True, None]
    + [float("nan"), float("inf"), [1], {"a": 1}, 10**30],
)
def test_parse_dt_refuses(value):
    assert parse_dt(value) is None


def test_event_time_rules():
    received = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    times = EventTimes()
    recent = received - timedelta(minutes=14)
    assert times.event_time({"dt": recent.isoformat()}, received) == recent
    assert times.event_time({}, received) == received
    assert times.event_time({"dt": "garbage"}, received) == received
    old = received - timedelta(minutes=16)
    assert times.event_time({"dt": old.isoformat()}, received) == received
    assert EventTimes(max_past=None).event_time({"dt": old.isoformat()}, received) == old
    assert EventTimes(max_past=timedelta(hours=1)).event_time({"dt": old.isoformat()}, received) == old
    future = received + timedelta(days=1)
    assert times.event_time({"dt": future.isoformat()}, received) == future
    # The batch's own loop reads a lower-case "z" as parse_dt does.
    lower = [{"dt": "2024-01-01t11:50:00z"}, {"dt": "2024-01-01T11:55:00.5z"}, {"dt": "11:55z"}]
    assert times.event_times(lower, received) == [
        datetime(2024, 1, 1, 11, 50, tzinfo=UTC),
        datetime(2024, 1, 1, 11, 55, 0, 500000, tzinfo=UTC),
        received,
    ]


def test_event_time_field_order():
    received = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    times = EventTimes(fields=("timestamp", "dt"), max_past=None)
    a, b = received - timedelta(seconds=1), received - timedelta(seconds=2)
    assert times.event_time({"timestamp": a.isoformat(), "dt": b.isoformat()}, received) == a
    assert times.event_time({"dt": b.isoformat()}, received) == b


def test_a_fixed_unit_reads_every_number_in_it_whatever_its_size():
    received = datetime(2026, 12, 1, tzinfo=UTC)
    times = EventTimes(fields=("t",), max_past=None, units_per_second=10**9)
    events = [{"t": 1_500_000_000}, {"t": 1_796_130_000_123_456_789}, {"t": 2.5e9}, {"t": "2026-01-02T03:04:05Z"}]
    assert times.event_times(events, received) == [
        datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC),  # by magnitude this would be seconds: 2017
        datetime(2026, 12, 1, 13, 0, 0, 123456, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 2, 500000, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # a string is read as ever
    ]
    assert times.event_times([{"t": 10**40}, {"t": True}], received) == [received, received]


@pytest.mark.parametrize("units", [0, -1, 1.5, True, "ns"])
def test_a_fixed_unit_must_be_a_positive_int(units):
    with pytest.raises(ValueError, match="units_per_second must be a positive int or None"):
        EventTimes(units_per_second=units)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_leaves_the_calendar_in_utc_is_no_time(value):
    # Valid ISO text whose UTC instant is before year 1 or after 9999: unusable,
    # so the event is stored under its reception time, as any unparsable dt.
    received = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_dt(value) is None
    times = EventTimes(max_past=None)
    assert times.event_times([{"dt": value}, {"dt": "2024-05-01T11:59:00Z"}], received) == [
        received,
        datetime(2024, 5, 1, 11, 59, tzinfo=UTC),
    ]


def test_a_batch_with_such_a_time_is_stored_whole(adapter):
    sink = MemorySink()
    client = make_client(adapter, [BetterStackAPI(["tok"]), BaselimeAPI(["key"])], sink)
    body = b'[{"id": "ok"}, {"dt": "0001-01-01T00:00:00+01:00"}]'
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    assert client.request("POST", f"{PREFIX}/", body, headers).status == 202
    baselime = {"x-api-key": "key", "Content-Type": "application/json"}
    assert (
        client.request("POST", f"{PREFIX}/v1/ds", b'[{"timestamp": "9999-12-31T23:59:59-01:00"}]', baselime).status
        == 202
    )
    assert len(sink.events) == 3
    assert sink.events[1].data == {"dt": "0001-01-01T00:00:00+01:00"}  # kept as sent
