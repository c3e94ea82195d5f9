"""ingest_mw.contrib.config: the options the framework integrations share,
checked with plain values (no framework involved)."""

from datetime import timedelta

import pytest

from ingest_mw import BaselimeAPI, BetterStackAPI, JSONMemorySink, MemorySink, SQLiteSink
from ingest_mw.contrib.config import (
    API_CLASSES,
    DEFAULTS,
    UNSET,
    ConfigError,
    build_apis,
    load,
    resolve_storage,
)
from ingest_mw.ratelimit import RateLimit


def setting(name: str) -> str:
    return f"CFG[{name}]"


def apis(**given: object) -> list:
    return build_apis(load(given, setting), setting)


def test_defaults_leave_the_api_defaults_alone() -> None:
    betterstack, baselime = apis(BETTERSTACK_TOKENS={"web": "t"}, BASELIME_API_KEYS=["k"])
    assert isinstance(betterstack, BetterStackAPI) and isinstance(baselime, BaselimeAPI)
    reference = BetterStackAPI(["t"])
    assert betterstack.body_limit.max_bytes == reference.body_limit.max_bytes
    assert betterstack.times.max_past == reference.times.max_past
    assert betterstack.rate_limit.limit == reference.rate_limit.limit
    assert baselime.rate_limit is BaselimeAPI(["k"]).rate_limit is None
    assert DEFAULTS["BETTERSTACK_MAX_BODY_BYTES"] is UNSET


def test_options_reach_the_api_constructors() -> None:
    (baselime,) = apis(
        APIS=["baselime"],
        BASELIME_API_KEYS={"team": "k"},
        BASELIME_MAX_BODY_BYTES=1000,
        BASELIME_MAX_EVENT_BYTES=100,
        BASELIME_MAX_PAST=90,
    )
    assert baselime.body_limit.max_bytes == 1000
    assert baselime.times.max_past == timedelta(seconds=90)
    assert baselime.auth.authenticate({"x-api-key": "k"}) == "team"


def test_apis_are_in_routing_order_whatever_the_setting_says() -> None:
    # Baselime claims every path; Better Stack must be tried first for "/".
    found = apis(APIS=("baselime", "betterstack"), BETTERSTACK_TOKENS=["t"], BASELIME_API_KEYS=["k"])
    assert [api.name for api in found] == ["betterstack", "baselime"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"BETTERSTACK_TOKEN": ["t"]},
            "CFG[BETTERSTACK_TOKEN] is not an ingest_mw setting; did you mean CFG[BETTERSTACK_TOKENS]?",
        ),
        ({"NOTHING_LIKE_IT": 1}, "the settings are APIS, BETTERSTACK_TOKENS"),
        ({"APIS": "betterstack"}, "give a list of one or more of 'betterstack', 'otlp', 'baselime'"),
        ({"APIS": ["datadog"]}, "give a list of one or more"),
        ({"APIS": []}, "give a list of one or more"),
        ({"BETTERSTACK_TOKENS": "s3cret"}, "CFG[BETTERSTACK_TOKENS] must be {'source name': 'secret', ...}"),
        (
            {"BETTERSTACK_TOKENS": {"web": ""}},
            "each a non-empty string; the secret of the entry 'web' is an empty string",
        ),
        ({"BETTERSTACK_TOKENS": {"web": 12345}}, "the secret of the entry 'web' is an int"),
        ({"BETTERSTACK_TOKENS": {}}, "each a non-empty string; got an empty dict"),
        ({"OTLP_TOKENS": {"x": "s", "y": None}}, "the secret of the entry 'y' is a NoneType"),
        ({"BASELIME_API_KEYS": ["k", 7]}, "the secret of the entry 'default' is an int"),
        ({"BASELIME_API_KEYS": []}, "CFG[BASELIME_API_KEYS] must be"),
        (
            {"BETTERSTACK_MAX_BODY_BYTES": 0},
            "CFG[BETTERSTACK_MAX_BODY_BYTES] = 0: give a positive whole number",
        ),
        ({"BASELIME_MAX_EVENT_BYTES": True}, "positive whole number of bytes"),
        ({"BETTERSTACK_MAX_PAST": "15m"}, "give a timedelta or a number of seconds, or None"),
        ({"BETTERSTACK_MAX_PAST": -1}, "give a timedelta or a number of seconds"),
    ],
)
def test_wrong_values_say_what_to_fix(given: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(given, setting)
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value)  # credentials never reach a message


def test_an_enabled_api_needs_its_credentials() -> None:
    with pytest.raises(
        ConfigError,
        match=r"CFG\[BASELIME_API_KEYS\] is not set: give the API keys .* leave 'baselime' out of CFG\[APIS\]",
    ):
        apis(BETTERSTACK_TOKENS=["t"])
    assert [api.name for api in apis(APIS=["betterstack"], BETTERSTACK_TOKENS=["t"])] == ["betterstack"]


def test_an_api_refusing_its_options_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**options: object) -> None:
        raise ValueError("no such option")

    monkeypatch.setitem(API_CLASSES, "betterstack", refuse)
    with pytest.raises(ConfigError, match=r"^CFG\[BETTERSTACK_\*\]: no such option$"):
        apis(APIS=["betterstack"], BETTERSTACK_TOKENS=["t"], BETTERSTACK_RATE_LIMIT=None)


def test_rate_limits_share_the_storage_and_proxy_settings() -> None:
    betterstack, baselime = apis(
        BETTERSTACK_TOKENS=["t"],  # its rate limit: the API's default, 500/minute
        BASELIME_API_KEYS=["k"],
        BASELIME_RATE_LIMIT="500/minute",
        RATE_LIMIT_STORAGE="redis://localhost:6379/1",
        RATE_LIMIT_STRATEGY="fixed-window",
        TRUSTED_PROXIES=["10.0.0.0/8"],
        RATE_LIMIT_FAIL_OPEN=False,
    )
    limit = betterstack.rate_limit
    assert isinstance(limit, RateLimit) and limit.limit == "500/minute"
    assert (limit.storage_uri, limit.strategy, limit.fail_open) == ("redis://localhost:6379/1", "fixed-window", False)
    assert [str(network) for network in limit.proxies.networks] == ["10.0.0.0/8"]
    assert baselime.rate_limit is limit  # the same limit is one budget per client across both APIs


def test_a_rate_limit_can_be_off_or_given_whole() -> None:
    own = RateLimit(limit="5/second")
    betterstack, baselime = apis(
        BETTERSTACK_TOKENS=["t"], BETTERSTACK_RATE_LIMIT=None, BASELIME_API_KEYS=["k"], BASELIME_RATE_LIMIT=own
    )
    assert (betterstack.rate_limit, baselime.rate_limit) == (None, own)


def test_a_wrong_rate_limit_names_the_settings_involved() -> None:
    with pytest.raises(ConfigError) as raised:
        apis(APIS=["betterstack"], BETTERSTACK_TOKENS=["t"], RATE_LIMIT_STRATEGY="fastest")
    message = str(raised.value)
    assert message.startswith("CFG[BETTERSTACK_RATE_LIMIT], CFG[RATE_LIMIT_STRATEGY]: unknown rate-limit strategy")
    with pytest.raises(ConfigError, match=r"^CFG\[BETTERSTACK_RATE_LIMIT\]: "):
        apis(APIS=["betterstack"], BETTERSTACK_TOKENS=["t"], BETTERSTACK_RATE_LIMIT="lots")


def store(batch: object) -> None:
    """A storage hook for resolve_storage to find by its dotted path."""


def test_storage_hook_from_a_callable_a_dotted_path_or_a_url(tmp_path) -> None:
    assert resolve_storage(store, "S") is store
    assert resolve_storage(f"{__name__}.store", "S") is store
    assert resolve_storage(f"{__name__}:store", "S") is store
    assert isinstance(resolve_storage("memory://", "S"), JSONMemorySink)
    sqlite = resolve_storage(f"sqlite:///{tmp_path}/events.db", "S")
    assert isinstance(sqlite, SQLiteSink)
    sqlite.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "no_such_module.store",
            "S = 'no_such_module.store' cannot be loaded (No module named 'no_such_module')",
        ),
        (f"{__name__}.nope", "cannot be loaded"),
        ("ftp://x", "cannot be loaded (unknown sink URL"),
        (MemorySink, "a sink class must be instantiated first"),
        ("ingest_mw.SQLiteSink", "is not a storage hook"),
        (42, "S = 42 is not a storage hook"),
    ],
)
def test_a_wrong_storage_hook_says_what_to_fix(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_storage(value, "S")
    assert message in str(raised.value)


def test_otlp_is_opt_in_and_takes_the_better_stack_tokens_unless_given_its_own() -> None:
    assert [api.name for api in apis(BETTERSTACK_TOKENS=["t"], BASELIME_API_KEYS=["k"])] == ["betterstack", "baselime"]
    found = apis(APIS=("baselime", "otlp", "betterstack"), BETTERSTACK_TOKENS={"web": "t"}, BASELIME_API_KEYS=["k"])
    assert [api.name for api in found] == ["betterstack", "otlp", "baselime"]  # OTLP's path before Baselime's
    otlp = found[1]
    assert otlp.match("/otlp/v1/logs") == {} and otlp.match("/v1/logs") is None  # beside Baselime's /v1/logs
    assert otlp.auth.authenticate({"authorization": "Bearer t"}) == "web"
    (own,) = apis(
        APIS=["otlp"],
        OTLP_TOKENS={"collector": "c"},
        OTLP_PATH="/v1/logs",
        OTLP_MAX_BODY_BYTES=1000,
        OTLP_MAX_RECORD_BYTES=100,
        OTLP_MAX_SHARED_BYTES=5000,
        OTLP_MAX_PAST=60,
        OTLP_RATE_LIMIT="5/second",
    )
    assert own.auth.authenticate({"authorization": "Bearer c"}) == "collector"
    assert own.codecs.negotiate("application/json").max_shared_bytes == 5000
    assert own.match("/v1/logs") == {}
    assert own.body_limit.max_bytes == 1000
    assert own.times.max_past == timedelta(seconds=60)
    assert own.rate_limit.limit == "5/second"


def test_otlp_without_any_tokens_says_which_settings_to_set() -> None:
    with pytest.raises(ConfigError, match=r"CFG\[OTLP_TOKENS\] \(or CFG\[BETTERSTACK_TOKENS\]\) is not set"):
        apis(APIS=["otlp"])
    with pytest.raises(ConfigError, match=r"CFG\[OTLP_MAX_RECORD_BYTES\] = 0: give a positive whole number"):
        apis(APIS=["otlp"], OTLP_TOKENS=["t"], OTLP_MAX_RECORD_BYTES=0)
