"""The string- and bracket-aware scanner on its own."""

import orjson
import pytest

from ingest_mw import IngestError
from ingest_mw.jsonarray import JSONArrayCodec, split_array


def elements(body: bytes) -> list[bytes]:
    return [body[start:end] for start, end in split_array(body)]


def test_spans_of_every_kind_of_element():
    body = b' [ {"a":"x]\\"}","b":[1,{"c":2}]} , 1.5e3,"s,]\\\\", [ ], null,true ] \n'
    assert elements(body) == [b'{"a":"x]\\"}","b":[1,{"c":2}]}', b"1.5e3", b'"s,]\\\\"', b"[ ]", b"null", b"true"]


def test_empty_array():
    assert split_array(b" [ ] ") == []


def test_spans_match_orjson_on_valid_json():
    value = [{"k": i, "s": '],[{"' * i, "n": {"d": [i]}} for i in range(20)]
    body = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    assert [orjson.loads(e) for e in elements(body)] == value


@pytest.mark.parametrize("body", [b"[", b"[{}", b'["a', b"[{}]]", b"[{} {}]", b"[,{}]", b"[{},]", b'{"a":1}', b""])
def test_broken_arrays_raise_400(body):
    with pytest.raises(IngestError) as info:
        split_array(body)
    assert info.value.status == 400


def test_codec_fast_path_returns_orjson_result_unchanged():
    decoded = JSONArrayCodec(max_event_bytes=1000).decode(b'[{"a":1},{"b":2}]')
    assert decoded.events == [{"a": 1}, {"b": 2}] and not decoded.invalid


def test_a_refused_elements_kind_survives_what_a_tuple_goes_through():
    import copy
    import pickle

    from ingest_mw.codecs import InvalidEvent

    element = InvalidEvent(3, "larger than 256 KiB of JSON", "too_large")
    index, reason = element  # still the pair callers unpack
    assert (index, reason) == (3, "larger than 256 KiB of JSON") == element
    for again in (
        element._replace(index=4),
        type(element)._make((3, "x")),
        pickle.loads(pickle.dumps(element)),
        copy.deepcopy(element),
    ):
        assert again.kind == "too_large"
    assert InvalidEvent(1, "x").kind == "invalid"
    assert repr(element) == "InvalidEvent(index=3, reason='larger than 256 KiB of JSON', kind='too_large')"
    with pytest.raises(ValueError, match="give one of too_large, invalid_json, not_an_object, invalid"):
        InvalidEvent(1, "x", "odd")
