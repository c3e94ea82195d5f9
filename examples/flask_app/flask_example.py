"""A Flask app that receives logs into its own SQLite database.

    cd examples/flask_app && flask --app flask_example run

Better Stack clients post to /ingest/, Baselime clients to /ingest/v1/<dataset>;
GET /events shows what arrived. The storage hook is the app's own code
(``store_events``), named in the config by its dotted path.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import orjson
from flask import Flask, current_app

from ingest_mw import Batch
from ingest_mw.batch import event_json
from ingest_mw.contrib.flask import IngestMW

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    dt TEXT NOT NULL,
    api TEXT NOT NULL,
    source TEXT NOT NULL,
    dataset TEXT,
    service TEXT,
    namespace TEXT,
    data TEXT NOT NULL
)
"""
COLUMNS = ("received_at", "dt", "api", "source", "dataset", "service", "namespace", "data")
INSERT = f"INSERT INTO log_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def connect() -> sqlite3.Connection:
    return sqlite3.connect(current_app.config["EVENTS_DATABASE"])


def store_events(batch: Batch) -> None:
    """The storage hook: the batch in one transaction, committed before the client hears 202.

    IngestMW calls it inside an app context, hence ``current_app``.
    """
    received_at = batch.received_at.isoformat()
    rows = [
        (received_at, event.time.isoformat(), batch.api, batch.source, batch.dataset)
        + batch.labels(event.data)  # a Baselime event's own service/namespace, else the headers'
        + (event_json(event.data).decode(),)
        for event in batch.events
    ]
    db = connect()
    try:
        with db:  # commits, or rolls back and raises (the client then gets a 500)
            db.executemany(INSERT, rows)
    finally:
        db.close()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        EVENTS_DATABASE=os.path.join(app.instance_path, "events.db"),
        INGEST_MW_BETTERSTACK_TOKENS={"example": "example-token"},
        INGEST_MW_BASELIME_API_KEYS={"example": "example-key"},
        INGEST_MW_STORAGE="flask_example:store_events",
    )
    app.config.from_prefixed_env()  # e.g. FLASK_INGEST_MW_BETTERSTACK_TOKENS='{"prod": "..."}'
    app.config.update(config or {})
    os.makedirs(os.path.dirname(app.config["EVENTS_DATABASE"]), exist_ok=True)
    with app.app_context():
        db = connect()
        db.execute(SCHEMA)
        db.close()

    IngestMW(app)

    @app.get("/events")
    def latest_events() -> dict[str, Any]:
        """The newest 20 rows, each whole: every column, ``data`` as the object."""
        db = connect()
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM log_events ORDER BY id DESC LIMIT 20").fetchall()
        finally:
            db.close()
        return {"events": [{**dict(row), "data": orjson.loads(row["data"])} for row in rows]}

    return app
