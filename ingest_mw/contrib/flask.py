"""Flask integration: the :class:`IngestMW` extension.

.. code-block:: python

    app.config["INGEST_MW_BETTERSTACK_TOKENS"] = {"web": "SOURCE_TOKEN"}
    app.config["INGEST_MW_STORAGE"] = "myapp.ingest:store"
    IngestMW(app)  # or: ingest = IngestMW(); ingest.init_app(app)

Requests under ``INGEST_MW_PREFIX`` (``/ingest``) are answered by a
:class:`~ingest_mw.wsgi.WSGIMiddleware` wrapped around ``app.wsgi_app``: the
body streams into the core, and Flask's routing, sessions and request hooks
never see those requests. Every other request reaches the app untouched.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from ..batch import Batch
from ..http import normalize_prefix
from ..sinks.base import Sink, as_sync, close_sync
from ..wsgi import WSGIMiddleware
from . import config

__all__ = ["CONFIG_PREFIX", "FLASK_DEFAULTS", "IngestMW"]

#: ``app.config`` keys are the option names behind this prefix.
CONFIG_PREFIX = "INGEST_MW_"

#: Flask's own options, next to the shared ones (:data:`ingest_mw.contrib.config.DEFAULTS`).
FLASK_DEFAULTS: dict[str, Any] = {"PREFIX": "/ingest"}

EXTENSION = "ingest_mw"


class _InAppContext:
    """The storage hook, called inside an app context.

    The middleware answers before Flask dispatches, so without this a hook
    could not use ``current_app``, ``g`` or an extension such as
    Flask-SQLAlchemy.
    """

    def __init__(self, app: Flask, sink: Sink) -> None:
        self.app = app
        self.sink = sink
        self._store = as_sync(sink)

    def __call__(self, batch: Batch) -> None:
        with self.app.app_context():
            self._store(batch)

    def close(self) -> None:
        close_sync(self.sink)


class IngestMW:
    """Serve the ingest APIs in a Flask app, configured from ``app.config``.

    ``options`` are option names in lower case (``storage=``,
    ``betterstack_tokens=``, ``prefix=``); they take precedence over
    ``app.config["INGEST_MW_<NAME>"]``, which takes precedence over the
    defaults. After :meth:`init_app`, ``app.extensions["ingest_mw"]`` is the
    :class:`~ingest_mw.wsgi.WSGIMiddleware`: its ``prefix``, its APIs in
    ``ingest.routes.apis``, and ``ingest.close()`` to close the storage hook.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = {name.upper(): value for name, value in options.items()}
        if app is not None:
            self.init_app(app)

    def _setting(self, name: str) -> str:
        if name in self.options:
            return f"IngestMW({name.lower()}=...)"
        return f"app.config[{CONFIG_PREFIX + name!r}]"

    def init_app(self, app: Flask) -> None:
        """Check the configuration (``ConfigError`` says what to fix) and mount the APIs."""
        if EXTENSION in app.extensions:
            raise RuntimeError("IngestMW is already set up on this app")
        given = {key[len(CONFIG_PREFIX) :]: value for key, value in app.config.items() if key.startswith(CONFIG_PREFIX)}
        given.update(self.options)
        values = config.load(given, self._setting, FLASK_DEFAULTS)
        prefix = values["PREFIX"]
        if not isinstance(prefix, str) or not normalize_prefix(prefix):
            raise config.ConfigError(
                f"{self._setting('PREFIX')} = {prefix!r}: give a path such as '/ingest'"
                " (the root would take every request from the app)"
            )
        if values["STORAGE"] is None:
            raise config.ConfigError(
                f"{self._setting('STORAGE')} is not set: give a function taking a Batch, its dotted"
                " path ('myapp.ingest:store'), or a sink URL ('sqlite:///events.db')"
            )
        sink = config.resolve_storage(values["STORAGE"], self._setting("STORAGE"))
        apis = config.build_apis(values, self._setting, sink)
        observer = config.resolve_observer(values["OBSERVER"], self._setting("OBSERVER"))
        middleware = WSGIMiddleware(app.wsgi_app, apis, sink=_InAppContext(app, sink), prefix=prefix, observer=observer)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION] = middleware
