"""Where ``serve``'s tokens and API keys come from, and the generated ones kept.

In order: ``--token-file`` / ``--api-key-file`` (one ``[NAME=]SECRET`` a line,
the production way), then ``--token`` / ``--api-key`` or their environment
variables. When none is given, a secret is generated once and kept, mode 0600,
in a state file (in ``--state-dir``, else beside the sink's file), so that a
shipper configured with it keeps working after a restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .startup import StartupError, reason

__all__ = [
    "Credentials",
    "parse_credentials",
    "read_secrets_file",
    "resolve_credentials",
    "resolve_ui_tokens",
    "state_file",
]

logger = logging.getLogger("ingest_mw.serve")

#: A credential's name: letters, digits, "_", "." and "-".
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

#: Group or other may read it.
_READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH


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


def _warn_if_readable(path: Path, flag: str) -> None:
    mode = path.stat().st_mode
    if mode & _READABLE_BY_OTHERS:
        logger.warning("%s %s can be read by other users (mode %o): chmod 600 %s", flag, path, stat.S_IMODE(mode), path)


def read_secrets_file(path: str, flag: str) -> dict[str, str]:
    """The ``[NAME=]SECRET`` lines of ``path`` (blank lines and ``#`` comments skipped)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise StartupError(f"{flag} {path}: cannot read it: {reason(error)}") from None
    lines = [line.strip() for line in text.splitlines()]
    try:
        found = parse_credentials([line for line in lines if line and not line.startswith("#")])
    except ValueError as error:
        raise StartupError(f"{flag} {path}: {error}") from None
    if not found:
        raise StartupError(f"{flag} {path}: no secret in it (write one [NAME=]SECRET a line)")
    _warn_if_readable(file, flag)
    return found


@dataclass(frozen=True)
class Credentials:
    """The secrets of one API by name, and where they came from (for the start-up line)."""

    secrets: dict[str, str]
    origin: str
    #: Generated or read back from the state file: printed with a curl line to try them.
    kept: bool = False


#: The kinds of credential: (settings name of the values, of the file, key in the state file).
_KINDS = {
    "token": ("token", "token_file", "betterstack_tokens"),
    "api_key": ("api_key", "api_key_file", "baselime_api_keys"),
}


def state_file(state_dir: str | None, sink_path: str | None) -> Path | None:
    """Where generated credentials are kept: ``DIR/credentials.json`` with
    ``--state-dir``, else ``<sink file>.credentials.json``; ``None`` when
    there is neither (``--sink memory://``)."""
    if state_dir:
        return Path(state_dir) / "credentials.json"
    if sink_path:
        return Path(sink_path + ".credentials.json")
    return None


def _read_state(path: Path) -> dict[str, dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise StartupError(f"{path}: cannot read the kept credentials: {reason(error)}") from None
    try:
        state = json.loads(text)
        if not isinstance(state, dict) or not all(
            isinstance(v, dict) and all(isinstance(s, str) for s in v.values()) for v in state.values()
        ):
            raise ValueError("not an object of {name: secret} objects")
    except ValueError as error:
        raise StartupError(f"{path}: not a credentials file ({error}); move it away to generate new ones") from None
    _warn_if_readable(path, "state file")
    return state


def _write_state(path: Path, state: dict[str, dict[str, str]]) -> None:
    """Write ``state`` mode 0600, atomically (a crash leaves the old file or the new one)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(state, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise StartupError(
            f"{path}: cannot keep the generated credentials: {reason(error)}"
            " (use --state-dir DIR, or give --token-file and --api-key-file)"
        ) from None


def resolve_credentials(settings: object, sink_path: str | None) -> dict[str, Credentials]:
    """``{"token": ..., "api_key": ...}`` from the files, flags and environment
    in ``settings``, generating (and keeping) what none of them gives."""
    resolved: dict[str, Credentials] = {}
    missing: list[str] = []
    for kind, (values_name, file_name, _) in _KINDS.items():
        found: dict[str, str] = {}
        origins: list[str] = []
        file = getattr(settings, file_name)
        if file:
            found.update(read_secrets_file(file, "--" + file_name.replace("_", "-")))
            origins.append(f"{'--' + file_name.replace('_', '-')} {file}")
        values = getattr(settings, values_name)
        if values:
            origin = settings.sources[values_name]  # type: ignore[attr-defined]
            try:
                found.update(parse_credentials(values))
            except ValueError as error:
                raise StartupError(f"{origin}: {error}") from None
            origins.append(origin)
        if found:
            resolved[kind] = Credentials(found, " and ".join(origins))
        else:
            missing.append(kind)
    if not missing:
        return resolved
    path = state_file(getattr(settings, "state_dir", None), sink_path)
    state = _read_state(path) if path is not None else {}
    changed = False
    for kind in missing:
        key = _KINDS[kind][2]
        if state.get(key):
            resolved[kind] = Credentials(state[key], f"kept in {path}", kept=True)
            continue
        state[key] = {"default": secrets.token_urlsafe(24)}
        changed = True
        where = (
            f"generated, kept in {path}" if path else "generated for this run only (--sink memory://: use --state-dir)"
        )
        resolved[kind] = Credentials(state[key], where, kept=True)
    if changed and path is not None:
        _write_state(path, state)
    return resolved


def resolve_ui_tokens(settings: object) -> dict[str, str]:
    """The Live Tail page's tokens from ``--ui-token-file``, else ``--ui-token``
    (or ``INGEST_MW_UI_TOKENS``); none at all means no page, so that a server
    facing the internet shows nothing by default. Never generated."""
    file = getattr(settings, "ui_token_file", None)
    if file:
        return read_secrets_file(file, "--ui-token-file")
    values = getattr(settings, "ui_token", None) or []
    try:
        return parse_credentials(values)
    except ValueError as error:
        raise StartupError(f"{settings.sources['ui_token']}: {error}") from None  # type: ignore[attr-defined]
