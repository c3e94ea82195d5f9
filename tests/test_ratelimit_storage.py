"""A rate-limit storage that freezes or refuses our credentials, through both adapters under a mount prefix.

Real ``redis-server`` processes: one frozen with SIGSTOP (it still accepts
connections, then never answers), one that requires a password.
"""

from __future__ import annotations

import logging
import signal
import time

import pytest
from clients import PREFIX, make_client

from ingest_mw import BetterStackAPI, MemorySink, RateLimit

TOKEN = "tok"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def post(client):
    return client.request("POST", f"{PREFIX}/", b'{"message":"m"}', HEADERS)


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_frozen_redis_costs_a_request_about_half_a_second(adapter, redis_server, fail_open):
    sink = MemorySink()
    rate_limit = RateLimit(limit="100/minute", storage_uri=redis_server.url, fail_open=fail_open)
    client = make_client(adapter, BetterStackAPI([TOKEN], rate_limit=rate_limit), sink)
    assert post(client).status == 202
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        reply = post(client)
        elapsed = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert elapsed < 1.0, elapsed  # storage_timeout=0.25 by default: connect, then answer
    assert reply.status == (202 if fail_open else 503)


def test_wrong_redis_credentials_are_refused_not_silently_uncounted(adapter, redis_with_password, caplog):
    wrong = redis_with_password.url.replace(":right@", ":wrong@")
    sink = MemorySink()
    rate_limit = RateLimit(limit="100/minute", storage_uri=wrong, fail_open=True)
    client = make_client(adapter, BetterStackAPI([TOKEN], rate_limit=rate_limit), sink)
    with caplog.at_level(logging.WARNING, logger="ingest_mw"):
        replies = [post(client) for _ in range(3)]
    assert [r.status for r in replies] == [503] * 3  # fail_open does not cover a wrong password
    assert {r.headers.get("retry-after") for r in replies} == {"5"}  # as for any storage outage: clients come back
    assert sink.batches == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "refused the credentials" in r.getMessage()]
    assert len(errors) == 1  # once per warn_interval
    assert "wrong" not in errors[0].getMessage().split("(")[0]  # the URI is logged without its password


def test_verify_names_the_storage_and_the_reason_without_the_password(redis_with_password):
    wrong = redis_with_password.url.replace(":right@", ":wrong@")
    with pytest.raises(
        ValueError, match=r"rate-limit storage redis://:\*\*\*@127\.0\.0\.1:\d+/0 refused the credentials"
    ):
        RateLimit(limit="1/second", storage_uri=wrong).verify()
    RateLimit(limit="1/second", storage_uri=redis_with_password.url).verify()  # the right one passes
    redis_with_password.stop()
    with pytest.raises(ValueError, match="cannot be reached"):
        RateLimit(limit="1/second", storage_uri=redis_with_password.url).verify()


def test_storage_timeout_is_checked_when_made():
    with pytest.raises(ValueError, match="storage_timeout = 0"):
        RateLimit(limit="1/second", storage_timeout=0)
