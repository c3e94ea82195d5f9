"""The options table is the one source of ``serve``'s flags, environment variables and docs."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from ingest_mw.cli import parser
from ingest_mw.serve.options import OPTIONS, options_markdown, parse_settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "serving.md"


def test_the_docs_hold_the_options_table_as_generated():
    text = DOCS.read_text()
    table = re.search(r"<!-- options table:[^\n]*-->\n(.*?)<!-- end of options table -->", text, re.DOTALL)
    assert table is not None
    assert table[1] == options_markdown(), "regenerate it: python3 -c 'from ingest_mw.serve import options_markdown'"


def test_help_names_every_option_with_its_variable_and_default(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS:
        assert option.flag in shown and option.env in shown, option.name


def settings(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    return parse_settings(parser(), ["serve", *argv], environ)


def test_a_flag_wins_over_its_variable_which_wins_over_the_default():
    assert settings([], {}).port == 8080
    assert settings([], {"INGEST_MW_PORT": "9000"}).port == 9000
    chosen = settings(["--port", "9001"], {"INGEST_MW_PORT": "9000"})
    assert (chosen.port, chosen.sources["port"]) == (9001, "--port")


def test_variables_of_every_kind():
    chosen = settings(
        [],
        {
            "INGEST_MW_ACCESS_LOG": "yes",
            "INGEST_MW_TRUSTED_PROXY": "10.0.0.0/8, 192.168.0.0/16",
            "WEB_CONCURRENCY": "3",
            "INGEST_MW_HEADER_TIMEOUT": "2.5",
        },
    )
    assert chosen.access_log is True
    assert chosen.trusted_proxy == ["10.0.0.0/8", "192.168.0.0/16"]
    assert (chosen.workers, chosen.sources["workers"]) == (3, "WEB_CONCURRENCY")
    assert chosen.header_timeout == 2.5
    assert settings(["--no-access-log"], {"INGEST_MW_ACCESS_LOG": "1"}).access_log is False
    assert settings([], {"INGEST_MW_WORKERS": "2", "WEB_CONCURRENCY": "3"}).workers == 2


def test_a_wrong_variable_is_one_line_naming_it(capsys):
    with pytest.raises(SystemExit) as exit:
        settings([], {"INGEST_MW_ACCESS_LOG": "maybe"})
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "environment variable INGEST_MW_ACCESS_LOG: 'maybe' is not a switch" in err


def test_workers_auto_is_one_per_cpu_this_process_may_use():
    assert settings(["--workers", "auto"], {}).workers == len(os.sched_getaffinity(0))


def test_sizes_take_units():
    chosen = settings(["--max-body-bytes-in-flight", "64MiB"], {"INGEST_MW_MAX_EVENTS": "500"})
    assert (chosen.max_body_bytes_in_flight, chosen.max_events) == (64 * 1024 * 1024, 500)


def test_store_slots_are_the_sinks_own_unless_given(tmp_path):
    from ingest_mw.serve import AppSpec
    from ingest_mw.sinks import JSONLinesSink, MemorySink, SQLiteSink
    from ingest_mw.sinks.group import GROUP_BATCHES

    def slots(sink, **given) -> int:
        base = settings([f"--{k.replace('_', '-')}={v}" for k, v in given.items()], {})
        spec = AppSpec.from_settings(base, tokens={"t": "tok"}, api_keys={"k": "key"})
        return {api.admission.stores.size for api in spec.apis(sink)}.pop()

    assert slots(SQLiteSink(tmp_path / "e.db")) == GROUP_BATCHES == 64  # commits the batches that meet together
    assert slots(JSONLinesSink(tmp_path / "e.jsonl")) == GROUP_BATCHES
    assert slots(MemorySink()) == 8  # the admission's own default
    assert slots(SQLiteSink(tmp_path / "e.db"), max_concurrent_stores=5) == 5  # given: it wins
