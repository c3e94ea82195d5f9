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
    python3 bench/instructions.py --cold minimal lean off served

Three more kinds give the floor the ratios of issue 13's item 8 are read
against: from ``bench/http.py``, ``minimal`` (read the body,
``orjson.loads``, 202) and ``lean`` (its lean Better Stack endpoint); and
``hand``, every rule of ``served``'s request written by hand in one function
(``bench/by_hand.py``, keeping nothing, as the others).

``--cold`` adds what a request costs a server whose caches other work has
filled (a server's own ``write`` calls, and the other servers of a
side-by-side run): cachegrind's cache simulator (32 KiB I1, 48 KiB D1, 2 MiB
LL) with the caches evicted before every request (an 8 MiB copy), minus a
run that only evicts. ``from memory`` is the cache lines a request had to
fetch past LL, code (``LLi``) and data (``LLd``): on the server, these cost
more than the instructions themselves (about four minutes; the cold runs
are short, so a count moves by some tens of lines from run to run).
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
KINDS = ("off", "null", "on", "served", "wrapped", "minimal", "lean", "hand")
FEWER, MORE = 1000, 3000
COLD_FEWER, COLD_MORE = 100, 300
#: The simulated caches of --cold: a common server core's L1s, an L2-sized LL.
CACHES = ["--I1=32768,8,64", "--D1=49152,12,64", "--LL=2097152,16,64"]

# Run inside valgrind: N requests of one kind, after a warm-up (bench/metrics.py's
# own helpers); "evict" before the count: the caches evicted before each request
# ("only": no request at all, the baseline of --cold).
CHILD = """
import asyncio, gc, importlib.util, sys
sys.path[:] = [p for p in sys.path if not p.endswith("bench")]
sys.path.insert(0, {root!r})

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

metrics = load("bench_metrics", {metrics!r})
gc.set_threshold(metrics.GC_THRESHOLD, 20, 20)
kind, requests, evict = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind in ("minimal", "lean", "hand"):
    http = load("bench_http", {http!r})
    if kind == "hand":
        # As the other kinds of bench/metrics.py: nothing kept.
        app = load("bench_by_hand", {by_hand!r}).by_hand_app(metrics.TOKEN, http.minimal_app, keep=False)
    else:
        app = http.minimal_app if kind == "minimal" else http.lean_app()
else:
    app = metrics.build(kind)
if evict == "no":
    metrics.per_request_us(app, 200)
    metrics.per_request_us(app, requests)
else:
    dirty, clean = bytearray(8 << 20), bytes(8 << 20)
    scope = {{"type": "http", "method": "POST", "path": "/", "root_path": "", "headers": metrics.HEADERS,
             "client": ("127.0.0.1", 50000), "query_string": b""}}
    message = {{"type": "http.request", "body": metrics.BODY, "more_body": False}}

    async def receive():
        return message

    async def send(message):
        if message["type"] == "http.response.start" and message["status"] != 202:
            raise SystemExit(f"the app answered {{message['status']}}")

    async def run(count, cold):
        for _ in range(count):
            if cold:
                dirty[:] = clean
            if evict != "only":
                await app(dict(scope), receive, send)

    asyncio.run(run(200, False))
    asyncio.run(run(requests, True))
"""
COUNTS = {"instructions": "I   refs", "code from memory": "LLi misses", "data from memory": "LLd misses"}


def counted(kind: str, requests: int, evict: str) -> dict[str, int]:
    """What valgrind counts for the whole child process (``evict``: no, yes, only)."""
    paths = {name: str(HERE / f"{name}.py") for name in ("metrics", "http", "by_hand")}
    child = CHILD.format(root=str(HERE.parent), **paths)
    caches = ["--cache-sim=no"] if evict == "no" else ["--cache-sim=yes", *CACHES]
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", *caches, "--cachegrind-out-file=/dev/null"]
        + [sys.executable, "-c", child, kind, str(requests), evict],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        timeout=1200,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind}: valgrind failed:\n{done.stderr[-2000:]}")
    found = {}
    for name, label in COUNTS.items():
        match = re.search(re.escape(label) + r":\s+([\d,]+)", done.stderr)
        if match is not None:
            found[name] = int(match[1].replace(",", ""))
    if "instructions" not in found:
        raise SystemExit(f"{kind}: no count in valgrind's output:\n{done.stderr[-2000:]}")
    return found


def per_request(kind: str, cold: bool = False) -> dict[str, float]:
    """Each count per request: the difference of two runs over the difference of their requests."""
    evict = "yes" if cold else "no"
    fewer, more = (COLD_FEWER, COLD_MORE) if cold else (FEWER, MORE)
    low, high = counted(kind, fewer, evict), counted(kind, more, evict)
    return {name: (high[name] - low[name]) / (more - fewer) for name in high}


def eviction_only() -> dict[str, float]:
    """What evicting the caches costs per request by itself (--cold's baseline)."""
    low, high = counted("off", COLD_FEWER, "only"), counted("off", COLD_MORE, "only")
    return {name: (high[name] - low[name]) / (COLD_MORE - COLD_FEWER) for name in high}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--cold", action="store_true", help="also the cache lines fetched from memory, caches evicted")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        hot = dict(zip(args.kinds, pool.map(per_request, args.kinds)))
        if args.cold:
            baseline = pool.submit(eviction_only)
            cold = dict(zip(args.kinds, pool.map(per_request, args.kinds, [True] * len(args.kinds))))
            evicting = baseline.result()
    base = hot.get("off")
    print(f"instructions per single-event request (cachegrind, {MORE} minus {FEWER} requests, PYTHONHASHSEED=0)")
    for kind, counts in hot.items():
        count = counts["instructions"]
        extra = f"   {count - base['instructions']:+,.0f} over off" if base is not None and kind != "off" else ""
        print(f"  {kind:<8} {count:>10,.0f}{extra}")
    if args.cold:
        print(
            f"cache lines from memory per request, the caches evicted before each ({COLD_MORE} minus"
            f" {COLD_FEWER} requests, less eviction alone): code + data"
        )
        for kind, counts in cold.items():
            code, data = (counts[name] - evicting[name] for name in ("code from memory", "data from memory"))
            print(f"  {kind:<8} {code + data:>10,.0f}   ({code:,.0f} + {data:,.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
