"""ingest-mw: serve the Better Stack, Baselime and OTLP ingest APIs over HTTP, and tail what arrived."""

from __future__ import annotations

from collections.abc import Sequence

from . import __version__, tail
from .serve.credentials import parse_credentials
from .serve.options import ServeParser, add_options, default_of_option, parse_settings

__all__ = ["main", "parse_credentials", "parser"]


def parser() -> ServeParser:
    top = ServeParser(prog="ingest-mw", description=__doc__)
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", required=True, parser_class=ServeParser)
    serve = commands.add_parser(
        "serve",
        help="serve the ingest APIs over HTTP",
        description="Serve the Better Stack, Baselime and OTLP/HTTP logs ingest APIs over HTTP. Every option can"
        " also be set by its environment variable; a flag wins.",
    )
    add_options(serve)
    tail.add_parser(commands, default_sink=default_of_option("sink"))
    return top


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    settings = parse_settings(top, argv)
    if settings.command == "tail":
        return tail.run(settings)
    from .serve.run import main as serve

    return serve(settings)
