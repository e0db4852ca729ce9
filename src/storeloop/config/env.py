"""One typed reader for every setting that comes from the environment.

Each ``STORELOOP_*`` variable is read here and nowhere else, so `.env.example` and the README can
list them all from one place. Invalid values fail at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

PREFIX = "STORELOOP_"


def _raw(name: str) -> str | None:
    value = os.environ.get(PREFIX + name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str) -> str:
    return _raw(name) or default


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{PREFIX}{name} must be true or false, got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = _raw(name)
    if raw is None:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


def persisted_secret(name: str, data_dir: Path, generate: str = "token") -> str:
    """Return ``STORELOOP_<name>`` or a value generated once and kept in ``data_dir``.

    Lets ``make run`` work on a fresh machine without weakening production: the generated file is
    private (0600) and reused, so restarts keep sessions and encrypted columns readable.
    """
    raw = _raw(name)
    if raw is not None:
        return raw
    path = data_dir / f".{name.lower()}"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    if generate == "fernet":
        from cryptography.fernet import Fernet

        value = Fernet.generate_key().decode()
    else:
        value = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
