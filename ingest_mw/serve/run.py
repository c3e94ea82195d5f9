"""Run ``ingest-mw serve``: start-up checks, then uvicorn with one or more workers."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import logging.config
import shlex
import signal
import sys
from types import FrameType
from typing import Any

from .. import __version__
from ..sinks.base import close_sync
from ..sinks.url import masked
from .app import AppSpec, ServeApp, routes
from .credentials import Credentials, resolve_credentials, resolve_ui_tokens
from .logs import log_config
from .startup import StartupError, check_rate_limit_storage, listen, open_sink

__all__ = ["import_server", "run_app", "serve", "server_config"]

logger = logging.getLogger("ingest_mw.serve")

#: File descriptors kept free beside the connections: the sink, logs, pipes to the supervisor.
SPARE_FILES = 64


def import_server() -> str:
    """The event loop to use; a :class:`StartupError` when the ``serve`` extra is missing."""
    try:
        import httptools  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise StartupError(f"ingest-mw serve needs {error.name}: pip install 'ingest-mw[serve]'") from None
    try:
        import uvloop  # noqa: F401
    except ImportError:
        logger.warning("uvloop is not installed: serving on asyncio's slower loop (pip install 'ingest-mw[serve]')")
        return "asyncio"
    return "uvloop"


def _open_files_for(max_connections: int) -> None:
    """Raise this process's open-file limit so ``--max-connections`` can be reached."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    from .protocol import MAX_LINGERING

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + MAX_LINGERING + SPARE_FILES  # the refused connections lingering too
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < needed:
            logger.warning(
                "--max-connections %d is above this process's open-file limit (%d): raise it (LimitNOFILE= in a"
                " systemd unit, ulimit -n) or lower --max-connections to %d",
                max_connections,
                hard,
                max(1, hard - MAX_LINGERING - SPARE_FILES),
            )


def _curl_lines(base: str, credentials: dict[str, Credentials]) -> list[str]:
    token = next(iter(credentials["token"].secrets.values()))
    key = next(iter(credentials["api_key"].secrets.values()))
    json_type = shlex.quote("Content-Type: application/json")
    bearer = shlex.quote(f"Authorization: Bearer {token}")
    api_key = shlex.quote(f"x-api-key: {key}")
    return [
        f'curl -X POST {base}/ -H {bearer} -H {json_type} -d \'{{"message":"hello"}}\'',
        f'curl -X POST {base}/v1/logs -H {api_key} -H {json_type} -d \'[{{"message":"hello"}}]\'',
    ]


def _base_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _announce(settings: argparse.Namespace, credentials: dict[str, Credentials], loop: str) -> None:
    base = _base_url(settings.host, settings.port)
    workers = settings.workers
    logger.info(
        "ingest-mw %s serving on %s: %d worker%s (%s), uvicorn with httptools on %s",
        __version__,
        base,
        workers,
        "" if workers == 1 else "s",
        settings.sources["workers"],
        loop,
    )
    logger.info("routes: %s", routes(settings.metrics, ui=bool(settings.ui_token or settings.ui_token_file)))
    logger.info("sink: %s", masked(settings.sink))
    logger.info("rate limit: %s per client IP, counted in %s", settings.rate_limit, settings.rate_limit_storage)
    for kind, what in (("token", "Better Stack source tokens"), ("api_key", "Baselime API keys")):
        found = credentials[kind]
        logger.info("%s: %s (%s)", what, ", ".join(sorted(found.secrets)), found.origin)
    flags = (("--token", "token"), ("--api-key", "api_key"), ("--ui-token", "ui_token"))
    for flag, origin in ((flag, settings.sources[name]) for flag, name in flags):
        if origin == flag:
            logger.warning(
                "%s on a command line is visible to every local user (ps, /proc/PID/cmdline): use %s-file", flag, flag
            )
    if workers > 1 and settings.rate_limit.strip().lower() != "none" and settings.rate_limit_storage == "memory://":
        logger.warning(
            "--rate-limit-storage memory:// with %d workers: each worker counts alone, so a client gets up to %d"
            " times %s; share one count with --rate-limit-storage redis://HOST:6379/0",
            workers,
            workers,
            settings.rate_limit,
        )
    if workers > 1 and settings.sink.startswith("memory://"):
        logger.warning("--sink memory:// with %d workers: each worker keeps its own events", workers)
    if credentials["token"].kept or credentials["api_key"].kept:
        logger.warning("try the kept credentials (the file named above holds them):")
        for line in _curl_lines(base, credentials):
            logger.warning("  %s", line)


def _prepare(settings: argparse.Namespace) -> tuple[AppSpec, str, dict[str, Credentials]]:
    """Every start-up check, in the parent, before a socket is bound."""
    loop = import_server()
    if settings.metrics and importlib.util.find_spec("prometheus_client") is None:
        raise StartupError("/metrics needs prometheus-client: pip install 'ingest-mw[serve]' (or --no-metrics)")
    # Stand-in credentials: the real ones are resolved (maybe generated) only once the rest holds.
    unchecked = AppSpec.from_settings(settings, tokens={"check": "check"}, api_keys={"check": "check"})
    try:
        unchecked.apis()  # every limit checked by its own component, as each worker will build it
    except ValueError as error:
        raise StartupError(f"--rate-limit {settings.rate_limit} or a limit: {error}") from None
    except ImportError as error:  # OTLP's classes: the serve extra brings them
        raise StartupError(f"{error}; or pip install 'ingest-mw[serve]'") from None
    sink = open_sink(settings.sink, settings.min_free_bytes)
    sink_path = getattr(sink, "path", None)
    close_sync(sink)
    check_rate_limit_storage(unchecked.rate_limit_component())
    credentials = resolve_credentials(settings, sink_path)
    spec = dataclasses.replace(
        unchecked,
        tokens=credentials["token"].secrets,
        api_keys=credentials["api_key"].secrets,
        ui_tokens=resolve_ui_tokens(settings),
    )
    return spec, loop, credentials


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises SIGINT/SIGTERM once it has shut down: nothing left to do."""


def _quiet_on_signals() -> None:
    """SIGINT and SIGTERM end a one-process server with status 0, after uvicorn's shutdown."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_quietly)


def server_config(app: Any, settings: argparse.Namespace, *, loop: str, logs: dict[str, Any] | None) -> Any:
    """The uvicorn config ``serve`` runs ``app`` with (``bench/http.py`` runs its
    minimal app with the same)."""
    from .protocol import ConnectionLimits, GuardedHttpToolsProtocol, ServeConfig

    return ServeConfig(
        app,
        connection_limits=ConnectionLimits(
            header_timeout=settings.header_timeout, max_connections=settings.max_connections
        ),
        http=GuardedHttpToolsProtocol,
        loop=loop,
        workers=settings.workers,
        lifespan="on",
        log_config=logs,
        log_level=settings.log_level,
        access_log=False,  # ours, if any (see ingest_mw.serve.logs)
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=settings.graceful_timeout,
        # Only --trusted-proxy may decide whose X-Forwarded-For to believe.
        proxy_headers=False,
        forwarded_allow_ips="",
    )


def run_app(app: Any, *, port: int, host: str = "127.0.0.1", log_level: str = "warning") -> None:
    """Serve any ASGI ``app`` on the stack ``serve`` runs, with ``serve``'s
    defaults (its uvicorn config, the protocol's connection guards, one
    worker, no access log) until SIGINT or SIGTERM: a benchmark's
    baseline app then runs on the very server ``serve`` does."""
    import uvicorn

    from ..cli import parser
    from .options import parse_settings

    argv = ["serve", "--host", host, "--port", str(port), "--log-level", log_level]
    settings = parse_settings(parser(), argv, environ={})
    logs = log_config(level=log_level, log_format="text", access_log=False)
    config = server_config(app, settings, loop=import_server(), logs=logs)
    _quiet_on_signals()  # as serve does
    uvicorn.Server(config).run(sockets=[listen(host, port)])


def serve(settings: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean shutdown. A
    :class:`StartupError` for a configuration that cannot serve."""
    logs = log_config(level=settings.log_level, log_format=settings.log_format, access_log=settings.access_log)
    logging.config.dictConfig(logs)
    spec, loop, credentials = _prepare(settings)
    _open_files_for(settings.max_connections)
    sock = listen(settings.host, settings.port)

    from uvicorn import Server
    from uvicorn.config import STARTUP_FAILURE

    from .workers import Supervisor

    config = server_config(ServeApp(spec), settings, loop=loop, logs=logs)
    _announce(settings, credentials, loop)
    if settings.workers == 1:
        _quiet_on_signals()
        server = Server(config)
        try:
            server.run(sockets=[sock])
        except SystemExit as exit:  # uvicorn's own, on a failed lifespan start-up
            return int(exit.code or 0)
        return 0
    if settings.metrics:
        from ..metrics import prepare_multiprocess

        prepare_multiprocess()  # before the workers start: they inherit PROMETHEUS_MULTIPROC_DIR
    supervisor = Supervisor(config, sockets=[sock])
    supervisor.metrics = settings.metrics
    supervisor.run()
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


def main(settings: argparse.Namespace) -> int:
    try:
        return serve(settings)
    except StartupError as error:
        print(f"ingest-mw serve: error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:  # a Ctrl-C during the start-up checks
        return 0
