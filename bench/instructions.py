"""CPU instructions per single-event request, counted by valgrind (cachegrind), for each app of bench/metrics.py.

Issue 13, item 8 asks for the instruction count per request before and
after a change. Each kind of app (``off``, ``null``, ``on``, ``served``,
``wrapped``: see ``bench/metrics.py``) is run in process for two numbers of
requests under ``valgrind --tool=cachegrind``; the difference of the two
totals over the difference of the counts is the per-request figure, free of
start-up. ``PYTHONHASHSEED=0`` fixes the hash seed: without it the counts
move by about 1,000 from run to run. Needs ``valgrind``. Run from the
repository root (about a minute)::

    python3 bench/instructions.py                 # every kind
    python3 bench/instructions.py off served      # some
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("off", "null", "on", "served", "wrapped")
FEWER, MORE = 1000, 3000

# Run inside valgrind: N requests of one kind, after a warm-up (bench/metrics.py's own helpers).
CHILD = """
import gc, importlib.util, sys
sys.path[:] = [p for p in sys.path if not p.endswith("bench")]
sys.path.insert(0, {root!r})
spec = importlib.util.spec_from_file_location("bench_metrics", {metrics!r})
metrics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(metrics)
gc.set_threshold(metrics.GC_THRESHOLD, 20, 20)
app = metrics.build(sys.argv[1])
metrics.per_request_us(app, 200)
metrics.per_request_us(app, int(sys.argv[2]))
"""


def instructions(kind: str, requests: int) -> int:
    """Instructions valgrind counts for the whole child process."""
    child = CHILD.format(root=str(HERE.parent), metrics=str(HERE / "metrics.py"))
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
        + [sys.executable, "-c", child, kind, str(requests)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        timeout=600,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{kind}: valgrind failed:\n{done.stderr[-2000:]}")
    return int(found[1].replace(",", ""))


def per_request(kind: str) -> float:
    return (instructions(kind, MORE) - instructions(kind, FEWER)) / (MORE - FEWER)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", default=list(KINDS), choices=KINDS)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(args.kinds, pool.map(per_request, args.kinds)))
    base = counts.get("off")
    print(f"instructions per single-event request (cachegrind, {MORE} minus {FEWER} requests, PYTHONHASHSEED=0)")
    for kind, count in counts.items():
        extra = f"   {count - base:+,.0f} over off" if base is not None and kind != "off" else ""
        print(f"  {kind:<8} {count:>10,.0f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
