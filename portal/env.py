"""Typed readers for settings that come from the environment.

A value that is present but unusable fails at start-up with ImproperlyConfigured naming the variable,
instead of surfacing later as an odd runtime error.
"""

from __future__ import annotations

import base64
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """Read NAME, or the file named by NAME_FILE (Docker and Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points at {path!r}, which cannot be read: {exc}") from None
    return env_str(name, default)


def generated_secret(path: Path) -> str:
    """A secret made once and kept in `path` (development only: DEBUG on and no SECRET_KEY given)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def generated_fernet_key(path: Path) -> str:
    """A Fernet key made once and kept in `path` (development only: DEBUG on and no PORTAL_CA_ENCRYPTION_KEY)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # Fernet.generate_key()'s format
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


@dataclass(frozen=True)
class Rate:
    """At most `count` events in any `period` seconds."""

    count: int
    period: int

    def most_in(self, seconds: int) -> int:
        """The most events this rate lets through in any span of `seconds`."""
        return self.count * math.ceil(seconds / self.period)


_RATE = re.compile(r"([1-9]\d*)/([1-9]\d*)?([smhd])")
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def env_rate(name: str, default: str) -> Rate:
    """A rate such as `10/h` or `30/15m`: N per period, the period an optional multiplier and s, m, h or d."""
    raw = os.environ.get(name)
    value = (raw if raw is not None and raw.strip() else default).strip().lower()
    match = _RATE.fullmatch(value)
    if not match:
        raise ImproperlyConfigured(f"{name} must be a rate such as 10/h or 30/15m (N per s, m, h or d), got {value!r}")
    multiplier = int(match[2]) if match[2] else 1
    return Rate(count=int(match[1]), period=multiplier * _PERIOD_SECONDS[match[3]])


_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def env_hostnames(name: str, default: list[str]) -> list[str]:
    """Bare hostnames, lowercased, a fully qualified name's trailing dot dropped. A scheme, port, path or wildcard
    is refused: the firewall rules compare the Host header with these names, and `https://api.example.com` or
    `api.example.com:443` would match no request, leaving the API without mTLS."""
    hostnames = [value.lower().rstrip(".") for value in env_list(name, default)]
    for hostname in hostnames:
        if len(hostname) > 253 or not _HOSTNAME.fullmatch(hostname):
            raise ImproperlyConfigured(
                f"{name}: {hostname!r} is not a hostname; write it as api.example.com, without scheme, port or path"
            )
    return hostnames


def stand_in_chosen(flag: str, *, real: str, real_value: str, debug: bool, why: str) -> bool:
    """Whether a development stand-in replaces the real service `real` (set to `real_value`, empty if not).

    The stand-in is the default only with DEBUG on; otherwise it must be asked for by name (`flag`=true), because
    it would otherwise run in production silently. Asking for it while the real one is configured is refused.
    """
    chosen = env_bool(flag, debug and not real_value)
    if chosen and real_value:
        raise ImproperlyConfigured(f"{flag}=true and {real} contradict each other: set only one")
    if not chosen and not real_value:
        raise ImproperlyConfigured(
            f"{real} is required ({why} is the default only with DEBUG on; {flag}=true asks for it)"
        )
    return chosen
