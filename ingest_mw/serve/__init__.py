"""``ingest-mw serve``: both ingest APIs on uvicorn (httptools, uvloop), SQLite by default.

A thin layer over the adapters: the options table (:mod:`.options`), the
start-up checks (:mod:`.startup`), credentials that survive a restart
(:mod:`.credentials`), the connection protections uvicorn lacks
(:mod:`.protocol`), logs (:mod:`.logs`) and the worker processes (:mod:`.run`).
"""

from __future__ import annotations

from .app import GC_THRESHOLD, AppSpec, ServeApp
from .credentials import parse_credentials
from .options import OPTIONS, Option, options_markdown

__all__ = ["GC_THRESHOLD", "OPTIONS", "AppSpec", "Option", "ServeApp", "options_markdown", "parse_credentials"]
