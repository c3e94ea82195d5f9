"""``ingest-mw tail``: print what a sink stored, and follow it as events arrive."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any, BinaryIO

import orjson

from .read import Query, Reader, StoredEvent, parse_since, reader_from_url
from .read.follow import Watch
from .read.query import level_message_rest

__all__ = ["add_parser", "format_line", "run"]

#: Events printed before following, and per read while following.
DEFAULT_LIMIT = 100
_FOLLOW_BATCH = 1000

_RESET = "\033[0m"
_DIM = "\033[2m"
#: Level colours by the level's first letters, as most log viewers colour them.
_LEVEL_COLOURS = {
    "fat": "\033[1;35m",
    "cri": "\033[1;35m",
    "eme": "\033[1;35m",
    "ale": "\033[1;35m",
    "err": "\033[31m",
    "war": "\033[33m",
    "inf": "\033[32m",
    "not": "\033[36m",
    "deb": "\033[2;37m",
    "tra": "\033[2;37m",
}


def add_parser(subparsers: Any, *, default_sink: str) -> argparse.ArgumentParser:
    """Add the ``tail`` command to ``ingest-mw``'s subcommands."""
    tail: argparse.ArgumentParser = subparsers.add_parser(
        "tail", help="print stored events, and follow them", description=__doc__
    )
    tail.add_argument(
        "--sink",
        # None here: the command line reads it from INGEST_MW_SINK, as serve does, else this default.
        default=None,
        metavar="URL",
        help="what to read: sqlite:///PATH, jsonl:///PATH or postgresql://..., as given to serve"
        f" (env INGEST_MW_SINK; default: {default_sink})",
    )
    tail.add_argument("-f", "--follow", action="store_true", help="print new events as they are stored, until Ctrl-C")
    tail.add_argument("--since", metavar="TIME", help="events from this time on: 10m, 2h, 7d ago, or an ISO time")
    tail.add_argument("--until", metavar="TIME", help="events before this time (same forms as --since)")
    tail.add_argument("--api", help="only this API's events (betterstack, baselime, ...)")
    tail.add_argument("--source", help="only events sent with this credential's name")
    tail.add_argument("--dataset", help="only this dataset's events (Baselime)")
    tail.add_argument("--service", help="only this service's events (Baselime)")
    tail.add_argument(
        "--level", action="append", metavar="LEVEL", help="only these levels, any case (repeatable, or a,b)"
    )
    tail.add_argument("--grep", metavar="TEXT", help="only events whose JSON contains TEXT, ignoring case")
    tail.add_argument(
        "-n",
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help="print the newest N matching events first (0: all; default: %(default)s)",
    )
    tail.add_argument(
        "--json", action="store_true", help="one stored row per line as JSON (the default when not on a terminal)"
    )
    tail.add_argument("--utc", action="store_true", help="show and read times in UTC, not local time")
    return tail


def query_from_args(args: argparse.Namespace) -> Query:
    """The filters of the command line; ``ValueError`` says which one is wrong."""
    if args.limit < 0:
        raise ValueError("--limit must be 0 (all) or more")
    return Query(
        since=parse_since(args.since, naive_utc=args.utc) if args.since else None,
        until=parse_since(args.until, naive_utc=args.utc) if args.until else None,
        api=args.api,
        source=args.source,
        dataset=args.dataset,
        service=args.service,
        levels=frozenset(args.level or ()),
        text=args.grep,
        limit=args.limit,
    )


#: What an event's text may not send to a terminal as it is: C0 and C1 controls
#: and DEL (escape sequences, a line break that forges another line), Unicode's
#: line and paragraph separators and its bidirectional overrides; each shown
#: as its escape instead (``\x1b``, ``\n``, ``\u202e``).
_UNPRINTABLE = {
    code: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}


def printable(text: str) -> str:
    """``text`` with what a terminal would act on shown as escapes (see :data:`_UNPRINTABLE`)."""
    return text.translate(_UNPRINTABLE)


def format_line(event: StoredEvent, *, utc: bool = False, colour: bool = False) -> str:
    """One event for a terminal: time, level, source/dataset, message, then the rest compact."""
    data = event.data
    at = datetime.fromisoformat(event.dt)
    at = at if utc else at.astimezone()
    when = at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}"
    level, message, rest = level_message_rest(data)
    # Every part that comes from a client is made printable: anyone with an
    # ingest credential writes these, and the operator's terminal reads them.
    level = level or "-"
    message = printable(message) if message else ""
    origin = printable("/".join(part for part in (event.source, event.dataset, event.service) if part))
    level_text = f"{printable(level.upper()):<5}"
    extra = orjson.dumps(rest).decode() if rest else ""
    if colour:
        paint = _LEVEL_COLOURS.get(level[:3].lower(), "")
        level_text = f"{paint}{level_text}{_RESET}" if paint else level_text
        when = f"{_DIM}{when}{_RESET}"
        extra = f"{_DIM}{extra}{_RESET}" if extra else ""
    return " ".join(part for part in (when, level_text, origin, message, extra) if part)


class _Printer:
    def __init__(self, out: BinaryIO, *, as_json: bool, with_id: bool, utc: bool, colour: bool) -> None:
        self.out = out
        self.with_id = with_id
        self.as_json = as_json
        self.utc = utc
        self.colour = colour

    def print(self, events: Iterable[StoredEvent]) -> None:
        if self.as_json:
            lines = [event.row_json(with_id=self.with_id) for event in events]
        else:
            lines = [format_line(event, utc=self.utc, colour=self.colour).encode() for event in events]
        if lines:
            self.out.write(b"\n".join(lines) + b"\n")
            self.out.flush()


def _follow(reader: Reader, query: Query, cursor: int, printer: _Printer) -> None:
    # The watch's first look comes after ``cursor`` was taken: what was stored
    # in between is in neither, so it is read before the first wait.
    watch = Watch(reader)
    step = query.but(limit=_FOLLOW_BATCH)
    while True:
        while events := reader.after(cursor, step):
            printer.print(events)
            cursor = events[-1].id
        watch.wait()


def run(args: argparse.Namespace) -> int:
    """Run ``ingest-mw tail``; 2 with one line on stderr for bad input."""
    try:
        query = query_from_args(args)
        reader = reader_from_url(args.sink)
    except ValueError as exc:
        print(f"ingest-mw tail: {exc}", file=sys.stderr)
        return 2
    on_terminal = sys.stdout.isatty()
    printer = _Printer(
        sys.stdout.buffer,
        as_json=args.json or not on_terminal,
        with_id=reader.stores_ids,
        utc=args.utc,
        colour=on_terminal and not os.environ.get("NO_COLOR"),
    )
    try:
        # The cursor first: what arrives during the search is printed by the follow.
        cursor = reader.cursor()
        printer.print(reversed(reader.search(query.up_to(cursor))))
        if args.follow:
            _follow(reader, query, cursor, printer)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # | head: the reader left
        sys.stderr.close()
    finally:
        reader.close()
    return 0
