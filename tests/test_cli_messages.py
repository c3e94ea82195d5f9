"""What ``ingest-mw`` prints for a mistake: one clear line naming the command at fault (issue 13, item 7:
one line and status 2, no usage block; ``--help`` has the usage)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ingest_mw.cli import parse_credentials


def ingest_mw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest_mw", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value", ["bad name=s3cr3t", "web/1=s3cr3t", "a b c=s3cr3t"])
def test_a_name_that_is_not_a_name_is_refused_in_one_line_without_the_secret(value):
    result = ingest_mw("serve", "--token", value)
    name = value.partition("=")[0]
    assert result.returncode == 2
    assert result.stderr == (
        f"ingest-mw serve: error: --token: {name!r} (before the '=' of a NAME=SECRET credential) is not a name:"
        " use letters, digits, '_', '.' and '-'\n"
    )
    assert "s3cr3t" not in result.stderr


def test_names_are_letters_digits_and_dot_dash_underscore():
    assert parse_credentials(["1web=secret", "a.b-c_d=s2", "dGVzdA==", "=x"]) == {
        "1web": "secret",
        "a.b-c_d": "s2",
        "default-1": "dGVzdA==",
        "default-2": "=x",
    }


def test_help_is_plain_text():
    out = ingest_mw("--help").stdout
    assert "``" not in out and ":func:" not in out
    assert "ingest-mw: serve the Better Stack, Baselime and OTLP ingest APIs" in " ".join(out.split())


def test_serve_help_lists_the_log_levels():
    out = " ".join(ingest_mw("serve", "--help").stdout.split())
    assert "--log-level LEVEL one of critical, error, warning, info, debug, trace (env INGEST_MW_LOG_LEVEL;" in out


def test_an_unknown_serve_flag_is_refused_by_serve():
    result = ingest_mw("serve", "--prot", "9000")
    assert result.returncode == 2
    assert result.stderr == (
        "ingest-mw serve: error: unrecognized arguments: --prot 9000 (see ingest-mw serve --help)\n"
    )


def test_a_bad_log_level_is_refused_with_the_choices():
    result = ingest_mw("serve", "--log-level", "loud")
    assert result.returncode == 2
    assert result.stderr == (
        "ingest-mw serve: error: argument --log-level: 'loud' is not one of critical, error, warning, info, debug,"
        " trace (see ingest-mw serve --help)\n"
    )


def test_a_sink_short_of_disk_space_starts_with_a_warning_one_that_cannot_write_does_not(tmp_path, caplog):
    # What serve's start-up does with its sink's check: the real disk of the
    # test's directory, asked for more than it has, is a warning (the sink may
    # still store, /readyz says 503 meanwhile); a missing file is the one line.
    import logging
    import shutil

    from ingest_mw import SQLiteSink
    from ingest_mw.serve.startup import StartupError, prove_writable

    cramped = SQLiteSink(tmp_path / "events.db", min_free_bytes=shutil.disk_usage(tmp_path).free + 2**40)
    with caplog.at_level(logging.WARNING, "ingest_mw.serve"):
        prove_writable(cramped, "sqlite:///events.db")
    assert "--sink sqlite:///events.db: not ready until it has room: SQLite sink " in caplog.text
    assert "MiB free on its disk, under min_free_bytes" in caplog.text
    cramped.close()

    (tmp_path / "gone").mkdir()
    gone = SQLiteSink(tmp_path / "gone" / "events.db")
    shutil.rmtree(tmp_path / "gone")
    with pytest.raises(StartupError, match=r"^--sink sqlite:///gone/events.db: not writable: .*\(fix its"):
        prove_writable(gone, "sqlite:///gone/events.db")
