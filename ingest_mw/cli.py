"""ingest-mw serve: both ingest APIs on an ASGI server, SQLite by default."""

from __future__ import annotations

import argparse
import gc
import os
import re
import secrets
import signal
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__, tail
from .asgi import ASGIApp
from .baselime import BaselimeAPI
from .betterstack import RATE_LIMIT, BetterStackAPI
from .otlp import PATH_BESIDE_BASELIME, OTLPLogsAPI
from .ratelimit import RateLimit
from .sinks.url import sink_from_url
from .ui import UIMount

__all__ = ["build_app", "main", "parse_credentials"]

DEFAULT_SINK = "sqlite:///ingest.db"
#: uvicorn's log levels.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: The cyclic GC's first threshold under ``serve`` (Python's default is 700).
GC_THRESHOLD = 20_000


#: A credential's name: letters, digits, "_", "." and "-".
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def parse_credentials(values: Sequence[str], default_name: str = "default") -> dict[str, str]:
    """``["NAME=SECRET", "SECRET"]`` -> ``{name: secret}``; a bare secret is named
    ``default_name`` (numbered when there are several).

    A value is ``NAME=SECRET`` when it holds an "=" between text and more than "="
    signs: a bare secret may end in base64 padding ("dGVzdA=="), which is
    never split off. A ``NAME`` that is not a name is refused (``ValueError``,
    naming the name and never the secret), not taken silently as part of a
    bare secret.
    """
    named: dict[str, str] = {}
    bare: list[str] = []
    for value in values:
        name, equals, secret = value.partition("=")
        if not equals or not name or not secret.strip("="):
            bare.append(value)
        elif _NAME.fullmatch(name):
            named[name] = secret
        else:
            raise ValueError(
                f"{name!r} (before the '=' of a NAME=SECRET credential) is not a name:"
                " use letters, digits, '_', '.' and '-'"
            )
    for index, secret in enumerate(bare, 1):
        named[default_name if len(bare) == 1 else f"{default_name}-{index}"] = secret
    return named


def _from_env(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def _credentials(given: list[str] | None, env: str, what: str) -> dict[str, str]:
    values = given or _from_env(env)
    if values:
        return parse_credentials(values)
    generated = secrets.token_urlsafe(24)
    print(f"ingest-mw: no {what} given; generated one: {generated}", file=sys.stderr, flush=True)
    return {"default": generated}


def _rate_limit(args: argparse.Namespace) -> RateLimit | None:
    """The ``--rate-limit*`` flags as one component: both APIs share it, so a
    client has one budget on the whole server."""
    if args.rate_limit.strip().lower() == "none":
        return None
    return RateLimit(
        limit=args.rate_limit,
        storage_uri=args.rate_limit_storage,
        trusted_proxies=args.trusted_proxy or (),
    )


def _ui_tokens(args: argparse.Namespace) -> dict[str, str]:
    """The Live Tail page's tokens: none unless given (the page is off then)."""
    values = list(args.ui_token or ())
    if args.ui_token_file:
        with open(args.ui_token_file, encoding="utf-8") as file:
            values += [line.strip() for line in file if line.strip() and not line.lstrip().startswith("#")]
    return parse_credentials(values or _from_env("INGEST_MW_UI_TOKENS"))


def build_app(args: argparse.Namespace) -> Any:
    rate_limit = _rate_limit(args)  # first: a bad flag fails before secrets are generated
    tokens = _credentials(args.token, "INGEST_MW_TOKENS", "Better Stack source token (--token)")
    api_keys = _credentials(args.api_key, "INGEST_MW_API_KEYS", "Baselime API key (--api-key)")
    # Better Stack claims only "/" and OTLP only /otlp/v1/logs, so Baselime
    # serves /v1/<dataset> (and the 400 for every other path).
    apis = [
        BetterStackAPI(tokens, rate_limit=rate_limit),
        # OTLP takes the Better Stack source tokens, as Better Stack's own OTLP endpoint does.
        OTLPLogsAPI(tokens, path=PATH_BESIDE_BASELIME, rate_limit=rate_limit),
        BaselimeAPI(api_keys, rate_limit=rate_limit),
    ]
    app = ASGIApp(apis, sink=sink_from_url(args.sink))
    ui_tokens = _ui_tokens(args)
    return UIMount.for_sink(app, sink=app.sink, tokens=ui_tokens) if ui_tokens else app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest-mw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the ingest APIs over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--sink",
        default=DEFAULT_SINK,
        metavar="URL",
        help="where events go: sqlite:///PATH, jsonl:///PATH, memory://,"
        " postgresql://USER:PASSWORD@HOST:PORT/DB?table=events (extra postgres) or"
        " redis://HOST:PORT/DB?stream=ingest_mw:events&maxlen=N (extra redis) (default: %(default)s)",
    )
    serve.add_argument(
        "--token",
        action="append",
        metavar="[NAME=]TOKEN",
        help="a Better Stack source token, repeatable (or env INGEST_MW_TOKENS, comma-separated)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        metavar="[NAME=]KEY",
        help="a Baselime API key, repeatable (or env INGEST_MW_API_KEYS, comma-separated)",
    )
    serve.add_argument(
        "--rate-limit",
        default=RATE_LIMIT,
        metavar="LIMIT",
        help="requests per client IP, a limits string such as 10/second;500/minute,"
        " or none (default: %(default)s, Better Stack's)",
    )
    serve.add_argument(
        "--rate-limit-storage",
        default="memory://",
        metavar="URI",
        help="where requests are counted: memory:// (this process) or redis://HOST:PORT/DB"
        " to share the limit between servers (default: %(default)s)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="CIDR",
        help="a proxy whose X-Forwarded-For names the client, repeatable (default: none:"
        " the peer address is the client)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"uvicorn's log level: {', '.join(LOG_LEVELS)} (default: %(default)s)",
    )
    serve.add_argument(
        "--ui-token",
        action="append",
        metavar="[NAME=]TOKEN",
        help="a token of the Live Tail page at /ui, repeatable (or env INGEST_MW_UI_TOKENS, comma-separated;"
        " default: no page)",
    )
    serve.add_argument("--ui-token-file", metavar="PATH", help="UI tokens in a file, one [NAME=]TOKEN a line")
    tail.add_parser(commands, default_sink=DEFAULT_SINK)
    return parser


def _after_shutdown(signum: int, frame: object) -> None:
    """Runs only once uvicorn has finished shutting down: nothing left to do."""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, an unknown one refused with its own command's usage
    (argparse would print the top-level usage)."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.command == "tail":
        return tail.run(args)
    try:
        import uvicorn
    except ImportError:
        print("ingest-mw serve needs uvicorn: pip install 'ingest-mw[serve]'", file=sys.stderr)
        return 2
    try:
        app = build_app(args)
    except (ValueError, OSError) as exc:
        print(f"ingest-mw: {exc}", file=sys.stderr)
        return 2
    # uvicorn shuts down gracefully on SIGINT/SIGTERM (in-flight requests
    # finish, lifespan shutdown closes the sink), then re-raises the signal
    # to whatever handler was there before it. A no-op handler makes that a
    # clean exit with status 0 rather than death by signal.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _after_shutdown)
    # Decoding a 1000-event body makes some 4,000 container objects at once,
    # all alive until the batch is stored: at the default threshold (700
    # allocations) the cyclic GC would scan them several times per request and
    # free nothing. This process is ours, so it collects less often.
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="on",
        # Only --trusted-proxy may decide whose X-Forwarded-For to believe.
        proxy_headers=False,
        forwarded_allow_ips="",
    )
    return 0
