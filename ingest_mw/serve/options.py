"""The options of ``ingest-mw serve``: one table that builds the command line,
reads the environment and writes the reference docs, so the three cannot drift.

Each :class:`Option` has a flag (``--rate-limit-storage``), an environment
variable (``INGEST_MW_RATE_LIMIT_STORAGE``), a default and a help text, as in
uvicorn's config and gunicorn's settings. A flag given on the command line wins
over its environment variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ..admission import Admission
from ..betterstack import RATE_LIMIT
from ..eventcaps import MAX_DEPTH, MAX_EVENTS
from ..ratelimit import RateLimit
from ..sinks.disk import MIN_FREE_BYTES
from ..sinks.group import GROUP_BATCHES
from ..sinks.url import SCHEMES

__all__ = ["OPTIONS", "Option", "ServeParser", "default_of_option", "options_markdown", "parse_settings"]

ENV_PREFIX = "INGEST_MW_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def port(value: str) -> int:
    """A TCP port, 1-65535."""
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port: use a number from 1 to 65535")
    return int(value)


def seconds(value: str) -> float:
    """A duration in seconds, more than 0."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration: use seconds, more than 0 (e.g. 10 or 0.5)")
    return number


def seconds_or_zero(value: str) -> float:
    """A duration in seconds, 0 or more."""
    return 0.0 if value.strip() in ("0", "0.0") else seconds(value)


def count(value: str) -> int:
    """A whole number, 1 or more."""
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a count: use a whole number, 1 or more")
    return int(value)


def count_or_zero(value: str) -> int:
    """A whole number, 0 or more."""
    return 0 if value.strip() == "0" else count(value)


_SIZE = re.compile(r"(\d+)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)


def size(value: str) -> int:
    """Bytes: a whole number, or with a unit: 512KiB, 128MiB, 1GiB (K, M, G: powers of 1024)."""
    match = _SIZE.fullmatch(value.strip())
    if match is None or int(match[1]) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size: use bytes, or 512KiB, 128MiB, 1GiB")
    return int(match[1]) * 1024 ** " kmg".index(match[2].lower() or " ")  # type: ignore[no-any-return]


def size_or_zero(value: str) -> int:
    """Bytes as :func:`size` reads them, or ``0``."""
    return 0 if value.strip() == "0" else size(value)


def default_of(component: Callable[..., Any], argument: str) -> Any:
    """The default of a component's keyword argument: written once, where it is used."""
    return inspect.signature(component).parameters[argument].default


def workers(value: str) -> int:
    """``N`` processes, or ``auto``: one per CPU this process may run on."""
    if value.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        return count(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers: use 1, 2, ... or auto") from None


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in allowed:
            raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(allowed)}")
        return value.lower()

    parse.__doc__ = f"One of {', '.join(allowed)}."
    return parse


@dataclass(frozen=True, kw_only=True)
class Option:
    """One setting of ``serve``: its flag, environment variable, default and help."""

    name: str  # the attribute on the parsed settings, e.g. "rate_limit_storage"
    help: str
    default: Any = None
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    # Repeatable on the command line; comma-separated in the environment.
    repeatable: bool = False
    # A switch (--access-log / --no-access-log); 1/0, true/false... in the environment.
    switch: bool = False
    # The variable's name when it is not INGEST_MW_<NAME> (INGEST_MW_TOKENS, kept from before the table).
    env_name: str | None = None
    # Other variables read when the first is unset (WEB_CONCURRENCY, as uvicorn and gunicorn read it).
    env_fallbacks: tuple[str, ...] = ()
    # The default in words, where the value alone would not say it.
    default_doc: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return self.env_name or ENV_PREFIX + self.name.upper()

    def from_env(self, environ: Mapping[str, str]) -> tuple[str, Any] | None:
        """``(variable, value)`` when the environment sets this option; an
        :class:`argparse.ArgumentTypeError` naming the variable when it is wrong."""
        for variable in (self.env, *self.env_fallbacks):
            raw = environ.get(variable)
            if raw is None:
                continue
            try:
                if self.switch:
                    if raw.strip().lower() not in _TRUE + _FALSE:
                        raise argparse.ArgumentTypeError(f"{raw!r} is not a switch: use 1 or 0 (true/false, yes/no)")
                    return variable, raw.strip().lower() in _TRUE
                if self.repeatable:
                    return variable, [self.parse(v.strip()) for v in raw.split(",") if v.strip()]
                return variable, self.parse(raw.strip())
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentTypeError(f"environment variable {variable}: {error}") from None
        return None

    def default_text(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        if self.switch:
            return "on" if self.default else "off"
        if self.default is None or self.default == []:
            return "none"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


OPTIONS: tuple[Option, ...] = (
    Option(name="host", default="127.0.0.1", metavar="ADDRESS", help="address to listen on; 0.0.0.0 for every IPv4"),
    Option(name="port", default=8080, parse=port, metavar="PORT", help="TCP port to listen on"),
    Option(
        name="workers",
        default=1,
        parse=workers,
        metavar="N",
        env_fallbacks=("WEB_CONCURRENCY",),
        help="processes serving the one port, or auto (one per CPU); a worker that dies is replaced",
    ),
    Option(
        name="sink",
        default="sqlite:///ingest.db",
        metavar="URL",
        help="where events go: " + ", ".join(SCHEMES) + " (sqlite:///relative/path, sqlite:////absolute/path)",
    ),
    Option(
        name="min_free_bytes",
        default=MIN_FREE_BYTES,
        default_doc=f"{MIN_FREE_BYTES // 2**20}MiB",
        parse=size_or_zero,
        metavar="BYTES",
        help="sqlite and jsonl: /readyz answers 503 while the file's disk has less free (0: not asked)",
    ),
    Option(
        name="state_dir",
        metavar="DIR",
        default_doc="beside the sink's file",
        help="where generated credentials are kept",
    ),
    Option(
        name="token_file",
        metavar="PATH",
        help="Better Stack (and OTLP) source tokens, one [NAME=]TOKEN a line (the production way)",
    ),
    Option(
        name="api_key_file",
        metavar="PATH",
        help="Baselime API keys, one [NAME=]KEY a line (the production way)",
    ),
    Option(
        name="token",
        repeatable=True,
        default=[],
        metavar="[NAME=]TOKEN",
        env_name="INGEST_MW_TOKENS",
        help="a Better Stack source token (OTLP's too), repeatable; visible to local users on a command line:"
        " prefer --token-file",
    ),
    Option(
        name="api_key",
        repeatable=True,
        default=[],
        metavar="[NAME=]KEY",
        env_name="INGEST_MW_API_KEYS",
        help="a Baselime API key, repeatable; visible to local users on a command line: prefer --api-key-file",
    ),
    Option(
        name="ui_token_file",
        metavar="PATH",
        help="tokens of the Live Tail page at /ui, one [NAME=]TOKEN a line; without a UI token there is no page",
    ),
    Option(
        name="ui_token",
        repeatable=True,
        default=[],
        metavar="[NAME=]TOKEN",
        env_name="INGEST_MW_UI_TOKENS",
        help="a token of the Live Tail page at /ui, repeatable; prefer --ui-token-file",
    ),
    Option(
        name="rate_limit",
        default=RATE_LIMIT,  # Better Stack's own
        metavar="LIMIT",
        help="requests per client IP, a limits string such as 10/second;500/minute, or none",
    ),
    Option(
        name="rate_limit_storage",
        default="memory://",
        metavar="URI",
        help="where requests are counted: memory:// (each worker alone) or redis://[:PASSWORD@]HOST:PORT/DB (shared)",
    ),
    Option(
        name="trusted_proxy",
        repeatable=True,
        default=[],
        metavar="CIDR",
        help="a proxy whose X-Forwarded-For names the client, repeatable (none: the peer is the client)",
    ),
    Option(
        name="header_timeout",
        default=10.0,
        parse=seconds,
        metavar="SECONDS",
        # Real clients send their headers in one packet; a slow-headers attack holds a socket per connection.
        help="close a connection whose request headers are not complete within this time (answered 408)",
    ),
    Option(
        name="keep_alive_timeout",
        default=5.0,
        parse=seconds,
        metavar="SECONDS",
        help="close an idle keep-alive connection after this time",
    ),
    Option(
        name="max_connections",
        default=1000,
        parse=count,
        metavar="N",
        # Under the common 1024 file-descriptor limit, with room for the sink and logs.
        help="open connections per worker; one more is answered 503 at once, before anything is read",
    ),
    Option(
        name="graceful_timeout",
        default=20.0,
        parse=seconds,
        metavar="SECONDS",
        # Below the 30 s a Kubernetes pod or a systemd unit with TimeoutStopSec=30 gets before SIGKILL.
        help="on SIGTERM/SIGINT, time for in-flight requests to finish before stalled clients are dropped",
    ),
    Option(
        name="drain_delay",
        default=0.0,
        parse=seconds_or_zero,
        metavar="SECONDS",
        help="on SIGTERM, keep serving this long with /readyz answering 503, so a load balancer stops first",
    ),
    Option(
        name="metrics",
        switch=True,
        default=True,
        help="serve GET /metrics (Prometheus text format, summed over the workers); keep it off the internet",
    ),
    # --- the core's limits (ingest_mw.admission, ingest_mw.eventcaps), per worker process ---
    Option(
        name="max_requests",
        default=default_of(Admission, "max_requests"),
        parse=count,
        metavar="N",
        help="requests served at once per worker; one more is answered 503 + Retry-After, never queued",
    ),
    Option(
        name="max_requests_per_client",
        default=default_of(Admission, "max_requests_per_client"),
        parse=count_or_zero,
        metavar="N",
        help="of those, at once for one client address (0: no such cap), so that one client cannot take them all",
    ),
    Option(
        name="max_body_bytes_in_flight",
        default=default_of(Admission, "max_body_bytes_in_flight"),
        default_doc=f"{default_of(Admission, 'max_body_bytes_in_flight') // 2**20}MiB",
        parse=size,
        metavar="BYTES",
        help="body bytes all requests of a worker hold at once (e.g. 128MiB); past it, 503 before a body is read",
    ),
    Option(
        name="max_concurrent_stores",
        default=None,
        default_doc=f"{GROUP_BATCHES} for sqlite and jsonl (group commit), else "
        f"{default_of(Admission, 'max_concurrent_stores')}",
        parse=count,
        metavar="N",
        help="batches inside the sink at once per worker",
    ),
    Option(
        name="max_storage_waiting",
        default=default_of(Admission, "max_storage_waiting"),
        parse=count_or_zero,
        metavar="N",
        help="batches waiting for the sink per worker; past it, 503 at once",
    ),
    Option(
        name="storage_wait",
        default=default_of(Admission, "storage_wait"),
        parse=seconds,
        metavar="SECONDS",
        help="how long a batch may wait for the sink before its 503 (nothing stored, nothing acknowledged)",
    ),
    Option(
        name="max_parallel_decodes",
        default=default_of(Admission, "max_parallel_decodes"),
        parse=count,
        metavar="N",
        help="large bodies decoded at once per worker, off the event loop",
    ),
    Option(
        name="body_idle_timeout",
        default=default_of(Admission, "body_idle_timeout"),
        parse=seconds,
        metavar="SECONDS",
        help="a request body that sends nothing this long is answered 408 and its connection closed",
    ),
    Option(
        name="retry_after",
        default=default_of(Admission, "retry_after"),
        parse=count_or_zero,
        metavar="SECONDS",
        help="the Retry-After of every 503 for a limit reached",
    ),
    Option(
        name="max_events",
        default=MAX_EVENTS,
        parse=count,
        metavar="N",
        help="events per request; more is answered 413 naming the cap",
    ),
    Option(
        name="max_depth",
        default=MAX_DEPTH,
        parse=count,
        metavar="N",
        help="nesting depth of an event; deeper is answered 400 naming the cap",
    ),
    Option(
        name="rate_limit_storage_timeout",
        default=default_of(RateLimit, "storage_timeout"),
        parse=seconds,
        metavar="SECONDS",
        help="the most one rate-limit storage call may take (a frozen Redis), then --rate-limit-fail-open decides",
    ),
    Option(
        name="rate_limit_fail_open",
        switch=True,
        default=default_of(RateLimit, "fail_open"),
        help="with the rate-limit storage down, accept requests uncounted (--no-rate-limit-fail-open: 503)",
    ),
    Option(
        name="log_level",
        default="info",
        parse=choice(*LOG_LEVELS),
        metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)}",
    ),
    Option(
        name="log_format",
        default="text",
        parse=choice(*LOG_FORMATS),
        metavar="FORMAT",
        help="text, or json: one JSON object a line",
    ),
    Option(
        name="access_log",
        switch=True,
        default=False,
        help="one line per request (API, source, status, events, bytes, duration; never a query string)",
    ),
)


def default_of_option(name: str) -> Any:
    """The default of the option ``name`` in the table (the sink ``tail`` reads, say)."""
    return next(option.default for option in OPTIONS if option.name == name)


class ServeParser(argparse.ArgumentParser):
    """An argument parser whose every error is one line and status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option] = OPTIONS) -> None:
    """Add every option of the table to ``parser`` (defaults are applied later,
    so that the environment can be told apart from the command line)."""
    for option in options:
        text = f"{option.help} (env {option.env}; default: {option.default_text()})".replace("%", "%%")
        if option.switch:
            parser.add_argument(option.flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(
                option.flag,
                action="append" if option.repeatable else "store",
                type=option.parse,
                metavar=option.metavar,
                default=None,
                help=text,
            )


def parse_settings(
    parser: ServeParser, argv: Sequence[str] | None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """The parsed command line with every unset option taken from the
    environment, else its default; ``settings.sources[name]`` says which."""
    settings, unknown = parser.parse_known_args(argv)
    if unknown:  # refused by the command they were given to, not the top level
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        command = commands[0].choices[settings.command] if commands else parser
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    environ = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    for option in OPTIONS:
        if getattr(settings, option.name, None) is not None:
            sources[option.name] = option.flag
            continue
        try:
            found = option.from_env(environ)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        if found is None:
            value = list(option.default) if isinstance(option.default, list) else option.default
            sources[option.name] = "default"
        else:
            sources[option.name], value = found
        setattr(settings, option.name, value)
    settings.sources = sources
    return settings


def options_markdown(options: Sequence[Option] = OPTIONS) -> str:
    """The options table as Markdown, for ``docs/serving.md``."""
    lines = ["| flag | environment variable | default | what it does |", "|---|---|---|---|"]
    for option in options:
        flag = f"{option.flag}, --no-{option.flag[2:]}" if option.switch else f"{option.flag} {option.metavar}"
        env = ", ".join(f"`{name}`" for name in (option.env, *option.env_fallbacks))
        lines.append(f"| `{flag}` | {env} | `{option.default_text()}` | {option.help.replace('|', '&#124;')} |")
    return "\n".join(lines) + "\n"
