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
