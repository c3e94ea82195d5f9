"""The benchmark scripts still drive the flow as the adapters do: every case
of bench/pipeline.py answers as it should, with its events stored (no timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parent.parent / "bench" / "pipeline.py"


@pytest.fixture(scope="module")
def pipeline():
    path = list(sys.path)
    spec = importlib.util.spec_from_file_location("ingest_mw_bench_pipeline_under_test", PIPELINE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # the script rearranges the import path for itself
    return module


def test_every_pipeline_case_answers_and_stores_what_it_expects(pipeline):
    sink = pipeline.StoringSink()
    cases = pipeline.build_cases(big=False)
    assert cases
    for case in cases:
        case.check(sink)  # SystemExit on a wrong status or number of events stored
