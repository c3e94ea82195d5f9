"""``settings.INGEST_MW``: the shared options over their defaults, plus Django's own.

In the manner of DRF's and django-cors-headers' conf modules: one dict in
settings, defaults for what it leaves out, and a typo or a wrong value stops
start-up with an ``ImproperlyConfigured`` that names the key and says what to
put there. What it describes (the APIs and the storage hook) is built once,
and again when a test changes ``INGEST_MW`` with ``override_settings``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models

from ...api import Routes
from ...batch import Batch
from ...observe import Observer, as_observer
from ...sinks.base import Sink, as_sync
from .. import config
from .sink import ModelSink

__all__ = ["DJANGO_DEFAULTS", "Endpoint", "endpoint"]

#: Django's own options, next to the shared ones (:data:`ingest_mw.contrib.config.DEFAULTS`).
DJANGO_DEFAULTS: dict[str, Any] = {
    # "app_label.ModelName" (or the class) that ModelSink stores into.
    "MODEL": None,
}

#: The model used when neither STORAGE nor MODEL is set and the app is installed.
DEFAULT_MODEL = "ingest_mw.IngestedEvent"


def _setting(name: str) -> str:
    return f"INGEST_MW[{name!r}]"


@dataclass(frozen=True)
class Endpoint:
    """The configured APIs and storage hook, as the view needs them."""

    routes: Routes
    sink: Sink
    store: Callable[[Batch], Any]  # the sink, callable from the sync view
    observer: Observer | None = None


def _model(value: Any) -> type[models.Model]:
    if isinstance(value, type) and issubclass(value, models.Model):
        return value
    try:
        return apps.get_model(value)
    except (LookupError, ValueError, TypeError) as exc:
        raise config.ConfigError(
            f"{_setting('MODEL')} = {value!r}: {exc}; give 'app_label.ModelName' of an installed"
            " model with the fields of ingest_mw.contrib.django.abstract.AbstractIngestedEvent"
        ) from exc


def _storage(values: Mapping[str, Any]) -> Sink:
    storage, model = values["STORAGE"], values["MODEL"]
    if storage is not None:
        if model is not None:
            raise config.ConfigError(f"set {_setting('STORAGE')} or {_setting('MODEL')}, not both")
        return config.resolve_storage(storage, _setting("STORAGE"))
    if model is None:
        if not apps.is_installed("ingest_mw.contrib.django"):
            raise config.ConfigError(
                f"{_setting('STORAGE')} is not set: give a storage hook (a function taking a Batch,"
                f" or its dotted path), or set {_setting('MODEL')} to 'app_label.ModelName', or add"
                " 'ingest_mw.contrib.django' to INSTALLED_APPS to store in its IngestedEvent model"
            )
        model = DEFAULT_MODEL
    model_class = _model(model)
    try:
        return ModelSink(model_class)
    except ValueError as exc:
        raise config.ConfigError(f"{_setting('MODEL')}: {exc}") from exc


@functools.cache
def endpoint() -> Endpoint:
    """What ``settings.INGEST_MW`` describes; ``ImproperlyConfigured`` says what to fix."""
    given = getattr(settings, "INGEST_MW", {})
    if not isinstance(given, Mapping):
        raise ImproperlyConfigured("settings.INGEST_MW must be a dict, e.g. {'BETTERSTACK_TOKENS': {...}}")
    try:
        values = config.load(given, _setting, DJANGO_DEFAULTS)
        sink = _storage(values)
        apis = config.build_apis(values, _setting, sink)
        observer = config.resolve_observer(values["OBSERVER"], _setting("OBSERVER"))
    except config.ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    return Endpoint(Routes(apis), sink, as_sync(sink), as_observer(observer, apis))


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in ("INGEST_MW", "INSTALLED_APPS"):
        endpoint.cache_clear()


setting_changed.connect(_reload)
