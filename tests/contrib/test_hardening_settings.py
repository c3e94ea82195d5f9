"""The hardening limits as framework settings: one Admission for every API, each API's caps."""

import orjson
import pytest
import webtest
from flask import Flask

from ingest_mw import MemorySink
from ingest_mw.admission import shared
from ingest_mw.contrib.config import ConfigError, build_apis, load
from ingest_mw.contrib.flask import IngestMW

CREDENTIALS = {"BETTERSTACK_TOKENS": {"web": "t"}, "BASELIME_API_KEYS": {"team": "k"}}


def setting(name: str) -> str:
    return f"CFG[{name}]"


def test_admission_settings_make_one_admission_for_every_api() -> None:
    betterstack, baselime = build_apis(
        load({**CREDENTIALS, "MAX_REQUESTS": 3, "STORAGE_WAIT": 0.5, "MAX_REQUESTS_PER_CLIENT": 0}, setting), setting
    )
    assert betterstack.admission is baselime.admission is not shared()
    assert betterstack.admission.requests.size == 3
    assert betterstack.admission.storage_wait == 0.5
    assert betterstack.admission.max_requests_per_client == 0


def test_without_admission_settings_the_apis_share_the_process_one() -> None:
    betterstack, baselime = build_apis(load(CREDENTIALS, setting), setting)
    assert betterstack.admission is baselime.admission is shared()


def test_a_wrong_admission_setting_names_itself() -> None:
    with pytest.raises(ConfigError, match=r"CFG\[MAX_REQUESTS\]: max_requests = 0: give a positive whole number"):
        build_apis(load({**CREDENTIALS, "MAX_REQUESTS": 0}, setting), setting)


def test_flask_settings_reach_the_event_caps_of_each_api() -> None:
    app = Flask("host")
    app.config.update(
        INGEST_MW_BETTERSTACK_TOKENS={"web": "t"},
        INGEST_MW_BASELIME_API_KEYS={"team": "k"},
        INGEST_MW_STORAGE=MemorySink(),
        INGEST_MW_BETTERSTACK_MAX_EVENTS=2,
        INGEST_MW_BASELIME_MAX_DEPTH=2,
    )
    IngestMW(app)
    client = webtest.TestApp(app)
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    refused = client.post("/ingest/", b"[{},{},{}]", headers=headers, expect_errors=True)
    assert refused.status_int == 413
    assert b"at most 2 events per request" in refused.body
    deep = client.post(
        "/ingest/v1/logs",
        b'[{"a":{"b":{}}}]',
        headers={"x-api-key": "k", "Content-Type": "application/json"},
        expect_errors=True,
    )
    assert deep.status_int == 400
    assert "deeper than 2 levels" in orjson.loads(deep.body)["detail"]


def test_a_sink_that_asks_for_store_slots_gets_them_unless_the_settings_say(tmp_path) -> None:
    from ingest_mw.sinks import SQLiteSink

    sink = SQLiteSink(tmp_path / "e.db")
    betterstack, baselime = build_apis(load(CREDENTIALS, setting), setting, sink)
    assert betterstack.admission is baselime.admission is not shared()
    assert betterstack.admission.stores.size == SQLiteSink.concurrent_batches == 64
    (given, _) = build_apis(load({**CREDENTIALS, "MAX_CONCURRENT_STORES": 5}, setting), setting, sink)
    assert given.admission.stores.size == 5
    (plain, _) = build_apis(load(CREDENTIALS, setting), setting, MemorySink())
    assert plain.admission is shared()  # a sink that asks for nothing: the process's own
    sink.close()
