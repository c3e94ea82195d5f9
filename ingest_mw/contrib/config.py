"""The options every framework integration reads, defined once.

Django reads them from ``settings.INGEST_MW["NAME"]``, Flask from
``app.config["INGEST_MW_NAME"]`` (or the extension's keyword arguments). Both
go through :func:`load`, :func:`build_apis` and :func:`resolve_storage`, so
a name, a default and a check exist once, and every error names the setting
the way the host spells it and says what to put there. Nothing here imports
a web framework.
"""

from __future__ import annotations

import difflib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from ..admission import Admission, arguments_for
from ..api import IngestAPI
from ..auth import check_credentials
from ..baselime import BaselimeAPI
from ..betterstack import BetterStackAPI
from ..observe import Observer, one_observer
from ..otlp import PATH_BESIDE_BASELIME, OTLPLogsAPI
from ..ratelimit import RateLimit
from ..sinks.base import Sink, SinkUnavailable
from ..sinks.url import masked, sink_from_url

__all__ = [
    "API_CLASSES",
    "ConfigError",
    "DEFAULTS",
    "Namer",
    "UNSET",
    "build_apis",
    "load",
    "resolve_observer",
    "resolve_storage",
]


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what to put there."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: An option left at this is not passed on, so the constructor's own default
#: applies (the API's, or RateLimit's) and no default of the core is written twice.
UNSET: Any = _Unset()

#: The ingest APIs by their name in ``APIS``, in the order they are tried:
#: Better Stack claims only the mount root, OTLP only its path (before Baselime, which claims
#: the paths under /v1, so that an OTLP path there is OTLP's), Baselime the paths under /v1.
API_CLASSES: dict[str, type[IngestAPI]] = {
    "betterstack": BetterStackAPI,
    "otlp": OTLPLogsAPI,
    "baselime": BaselimeAPI,
}

#: Every shared option and its default. ``<API>_<NAME>`` is passed to that
#: API's constructor as the keyword ``<name>``.
DEFAULTS: dict[str, Any] = {
    # OTLP is opt-in: it needs the otlp extra (the OpenTelemetry protobuf classes).
    "APIS": ("betterstack", "baselime"),
    "BETTERSTACK_TOKENS": None,
    "BETTERSTACK_MAX_BODY_BYTES": UNSET,
    "BETTERSTACK_MAX_PAST": UNSET,
    "BETTERSTACK_RATE_LIMIT": UNSET,
    "BETTERSTACK_MAX_EVENTS": UNSET,
    "BETTERSTACK_MAX_DEPTH": UNSET,
    "BASELIME_API_KEYS": None,
    "BASELIME_MAX_BODY_BYTES": UNSET,
    "BASELIME_MAX_EVENT_BYTES": UNSET,
    "BASELIME_MAX_PAST": UNSET,
    "BASELIME_RATE_LIMIT": UNSET,
    "BASELIME_MAX_EVENTS": UNSET,
    "BASELIME_MAX_DEPTH": UNSET,
    # None: the Better Stack source tokens, as Better Stack's own OTLP endpoint takes them.
    "OTLP_TOKENS": None,
    # Beside Baselime's /v1/<dataset>, as under ingest-mw serve.
    "OTLP_PATH": PATH_BESIDE_BASELIME,
    "OTLP_MAX_BODY_BYTES": UNSET,
    "OTLP_MAX_RECORD_BYTES": UNSET,
    "OTLP_MAX_SHARED_BYTES": UNSET,
    "OTLP_MAX_PAST": UNSET,
    "OTLP_RATE_LIMIT": UNSET,
    "OTLP_MAX_EVENTS": UNSET,
    "OTLP_MAX_DEPTH": UNSET,
    "RATE_LIMIT_STORAGE": UNSET,
    "RATE_LIMIT_STRATEGY": UNSET,
    "TRUSTED_PROXIES": UNSET,
    "RATE_LIMIT_FAIL_OPEN": UNSET,
    "RATE_LIMIT_STORAGE_TIMEOUT": UNSET,
    # The process-wide limits (ingest_mw.admission.Admission), shared by the APIs.
    "MAX_REQUESTS": UNSET,
    "MAX_REQUESTS_PER_CLIENT": UNSET,
    "MAX_BODY_BYTES_IN_FLIGHT": UNSET,
    "MAX_CONCURRENT_STORES": UNSET,
    "MAX_STORAGE_WAITING": UNSET,
    "STORAGE_WAIT": UNSET,
    "MAX_PARALLEL_DECODES": UNSET,
    "BODY_IDLE_TIMEOUT": UNSET,
    "RETRY_AFTER": UNSET,
    "STORAGE": None,
    # An ingest_mw.observe.Observer (metrics, access log), a list of them, or
    # the dotted path of one; None: nothing observed, at no cost per request.
    "OBSERVER": None,
}

#: The options of the one Admission every API shares, as its keywords.
_ADMISSION_OPTIONS = {
    name: name.lower()
    for name in (
        "MAX_REQUESTS",
        "MAX_REQUESTS_PER_CLIENT",
        "MAX_BODY_BYTES_IN_FLIGHT",
        "MAX_CONCURRENT_STORES",
        "MAX_STORAGE_WAITING",
        "STORAGE_WAIT",
        "MAX_PARALLEL_DECODES",
        "BODY_IDLE_TIMEOUT",
        "RETRY_AFTER",
    )
}

#: The options every API's rate limit shares, as RateLimit's keywords.
_RATE_LIMIT_OPTIONS = {
    "RATE_LIMIT_STORAGE": "storage_uri",
    "RATE_LIMIT_STRATEGY": "strategy",
    "TRUSTED_PROXIES": "trusted_proxies",
    "RATE_LIMIT_FAIL_OPEN": "fail_open",
    "RATE_LIMIT_STORAGE_TIMEOUT": "storage_timeout",
}

#: The option holding each API's credentials, and what the host calls them.
_CREDENTIALS = {
    "betterstack": ("BETTERSTACK_TOKENS", "source tokens"),
    "baselime": ("BASELIME_API_KEYS", "API keys"),
    "otlp": ("OTLP_TOKENS", "tokens"),
}
#: The option an API's credentials default to when its own is not set.
_CREDENTIALS_FALLBACK = {"otlp": "BETTERSTACK_TOKENS"}

#: Spells an option the host's way for messages: ``"STORAGE"`` -> ``"INGEST_MW['STORAGE']"``.
Namer = Callable[[str], str]


def _api_names(value: Any, where: str) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple, set, frozenset))
        or not value
        or not set(value) <= API_CLASSES.keys()
    ):
        raise ConfigError(f"{where} = {value!r}: give a list of one or more of {', '.join(map(repr, API_CLASSES))}")
    return tuple(name for name in API_CLASSES if name in value)


def _credentials(value: Any, where: str) -> Any:
    if value is None:
        return None
    try:
        check_credentials(value)
    except ValueError as exc:
        raise ConfigError(f"{where} {exc}") from None
    return value


def _size(value: Any, where: str) -> Any:
    if value is UNSET or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"{where} = {value!r}: give a positive whole number of bytes")


def _max_past(value: Any, where: str) -> Any:
    if value is UNSET or value is None:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, timedelta) and value >= timedelta(0):
        return value
    raise ConfigError(f"{where} = {value!r}: give a timedelta or a number of seconds, or None for no bound")


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "APIS": _api_names,
    "BETTERSTACK_TOKENS": _credentials,
    "BETTERSTACK_MAX_BODY_BYTES": _size,
    "BETTERSTACK_MAX_PAST": _max_past,
    "BASELIME_API_KEYS": _credentials,
    "BASELIME_MAX_BODY_BYTES": _size,
    "BASELIME_MAX_EVENT_BYTES": _size,
    "BASELIME_MAX_PAST": _max_past,
    "OTLP_TOKENS": _credentials,
    "OTLP_MAX_BODY_BYTES": _size,
    "OTLP_MAX_RECORD_BYTES": _size,
    "OTLP_MAX_SHARED_BYTES": _size,
    "OTLP_MAX_PAST": _max_past,
}  # a rate limit is checked by its API, STORAGE by resolve_storage


def load(given: Mapping[str, Any], setting: Namer, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options in ``given`` over the defaults, checked and normalised.

    ``extra`` holds a framework's own options and their defaults (checked by
    that framework). An unknown name is an error, with the closest known one
    suggested, so a typo cannot silently fall back to a default.
    """
    defaults = {**DEFAULTS, **(extra or {})}
    for name in given:
        if name not in defaults:
            close = difflib.get_close_matches(name, defaults, n=1)
            hint = f"did you mean {setting(close[0])}?" if close else f"the settings are {', '.join(defaults)}"
            raise ConfigError(f"{setting(name)} is not an ingest_mw setting; {hint}")
    values = {**defaults, **given}
    for name, check in _CHECKS.items():
        values[name] = check(values[name], setting(name))
    return values


def _rate_limits(values: Mapping[str, Any], setting: Namer) -> Callable[[Any, str], Any]:
    """Turns an API's rate limit (the value of ``option``) into a :class:`RateLimit`
    with the shared options.

    A limits string becomes one RateLimit however many APIs name it, so
    that a client has one budget across them whatever the storage (two
    ``memory://`` storages would count apart); a RateLimit or ``None`` is
    used as it is.
    """
    shared = {name: values[name] for name in _RATE_LIMIT_OPTIONS if values[name] is not UNSET}
    keywords = {_RATE_LIMIT_OPTIONS[name]: value for name, value in shared.items()}
    made: dict[str, RateLimit] = {}

    def rate_limit(value: Any, option: str) -> Any:
        if not isinstance(value, str):
            return value
        if value not in made:
            try:
                made[value] = RateLimit(limit=value, **keywords)
            except (TypeError, ValueError) as exc:
                given = ", ".join(setting(name) for name in (option, *shared))
                raise ConfigError(f"{given}: {exc}") from exc
        return made[value]

    return rate_limit


def _admission(values: Mapping[str, Any], setting: Namer, sink: object) -> Admission | None:
    """One :class:`Admission` from the options given, for every API; ``None``
    (the process's shared one) when none is. A sink that asks for its number
    of store slots (its ``concurrent_batches``) gets it unless the setting says."""
    given = {name: values[name] for name in _ADMISSION_OPTIONS if values[name] is not UNSET}
    arguments = arguments_for(sink, {_ADMISSION_OPTIONS[name]: value for name, value in given.items()})
    if not arguments:
        return None
    try:
        return Admission(**arguments)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{', '.join(map(setting, given))}: {exc}") from exc


def build_apis(values: Mapping[str, Any], setting: Namer, sink: object = None) -> list[IngestAPI]:
    """The APIs named in ``values["APIS"]`` (as :func:`load` returns them), in
    routing order, for ``sink`` (the storage they are mounted with)."""
    rate_limit = _rate_limits(values, setting)
    admission = _admission(values, setting, sink)
    apis = []
    for name in values["APIS"]:
        credentials, what = _CREDENTIALS[name]
        fallback = _CREDENTIALS_FALLBACK.get(name)
        given = values[credentials]
        if given is None and fallback is not None:
            given = values[fallback]
        if given is None:
            instead = f" (or {setting(fallback)})" if fallback else ""
            raise ConfigError(
                f"{setting(credentials)}{instead} is not set: give the {what} clients will send, as"
                f" {{'source name': 'secret'}} or a list, or leave {name!r} out of {setting('APIS')}"
            )
        api_class = API_CLASSES[name]
        prefix = name.upper() + "_"
        kwargs = {
            key[len(prefix) :].lower(): value
            for key, value in values.items()
            if key.startswith(prefix) and value is not UNSET
        }
        kwargs[credentials[len(prefix) :].lower()] = given
        if "rate_limit" not in kwargs:  # the API's own default limit gets the shared options too
            kwargs["rate_limit"] = inspect.signature(api_class).parameters["rate_limit"].default
        kwargs["rate_limit"] = rate_limit(kwargs["rate_limit"], prefix + "RATE_LIMIT")
        kwargs["admission"] = admission
        try:
            apis.append(api_class(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{setting(prefix + '*')}: {exc}") from exc
    return apis


def resolve_storage(value: Any, where: str) -> Sink:
    """The storage hook from a callable, the dotted path of one (``"pkg.module.hook"``
    or ``"pkg.module:hook"``), or a built-in sink's URL (``"sqlite:///events.db"``,
    ``"postgresql://…"``, ``"redis://…?stream=…"``: see :func:`~ingest_mw.sinks.sink_from_url`)."""
    hook = value
    if isinstance(value, str):
        shown = repr(masked(value) if "://" in value else value)  # a sink URL's password stays out of messages
        try:
            hook = sink_from_url(value) if "://" in value else pkgutil.resolve_name(value)
        except SinkUnavailable as exc:
            raise ConfigError(f"{where} = {shown}: {exc}") from None
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"{where} = {shown} cannot be loaded ({exc}): give the dotted path of a function"
                " taking a Batch ('myapp.ingest.store'), or a sink URL ('sqlite:///events.db',"
                " 'postgresql://user:password@host/db', 'redis://host:6379/0?stream=ingest_mw:events')"
            ) from exc
    if isinstance(hook, type) or not callable(hook):
        raise ConfigError(
            f"{where} = {value!r} is not a storage hook: give a function or an object called"
            " with each Batch (a sink class must be instantiated first), or its dotted path"
        )
    return hook  # type: ignore[no-any-return]


def _one_observer(value: Any, where: str) -> Observer:
    hook = value
    if isinstance(value, str):
        try:
            hook = pkgutil.resolve_name(value)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"{where} = {value!r} cannot be loaded ({exc}): give the dotted path of an observer"
                " ('ingest_mw.metrics:PrometheusObserver', 'myapp.observe:observer')"
            ) from exc
    if isinstance(hook, type):
        hook = hook()  # a class named by its path: one instance, made with its defaults
    if not all(callable(getattr(hook, name, None)) for name in ("started", "received", "finished")):
        raise ConfigError(
            f"{where} = {value!r} is not an observer: give an ingest_mw.observe.Observer (with started,"
            " received and finished), a list of them, or a dotted path ('ingest_mw.logs:AccessLogObserver')"
        )
    return hook  # type: ignore[no-any-return]


def resolve_observer(value: Any, where: str) -> Observer | None:
    """The adapters' ``observer`` from an :class:`~ingest_mw.observe.Observer`, a dotted
    path (of an instance, or of a class made with its defaults), or a list of either;
    ``None`` for none."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        observers = [_one_observer(each, where) for each in value]
        return one_observer(observers)
    return _one_observer(value, where)
