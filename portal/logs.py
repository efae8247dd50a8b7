"""Logging: who and what a log line is about (request, user, task), JSON lines, and secrets kept out.

`LOG_FORMAT=json` writes one JSON object per line (`JsonFormatter`); `plain` keeps the human-readable line. Either
way every record passes two handler filters: `RequestContext` adds the request id, user id and Celery task it
belongs to, and `RedactSecrets` scrubs anything that looks like a secret. The code never logs a token, key, CSR or
reset link on purpose; the redaction is for the day something else does (an exception message, a third-party
library, a URL in an access log).

Named `logs`, not `logging`, so that `import logging` inside the package still means the standard library's.
The JSON formatter is a few lines on the standard library rather than python-json-logger: the fields are fixed,
the redaction has to see every value anyway, and there is no dependency to keep in step.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery import current_task
from django.utils.functional import SimpleLazyObject, empty

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

LOG_FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# -- the request a record belongs to --------------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
# An inbound id is kept only if it is short and plain (a uuid, a proxy's or Cloudflare's ray id): anything else,
# a newline or a quote or 500 characters, could forge or break log lines and is replaced by a fresh uuid4.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

_current_request: ContextVar[HttpRequest | None] = ContextVar("portal_log_request", default=None)


def request_id_from(inbound: str | None) -> str:
    if inbound and _SAFE_REQUEST_ID.fullmatch(inbound):
        return inbound
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives each request an id (the proxy's, if safe), sends it back in X-Request-ID and makes the request
    visible to `RequestContext` for as long as it is being handled. First in MIDDLEWARE, so that every log line of
    the request, other middleware's included, carries the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        # On the request too: Django logs a 4xx or 5xx answer after this has returned (RequestContext reads it there).
        request.request_id = request_id  # type: ignore[attr-defined]
        token = _current_request.set(request)
        try:
            response = self.get_response(request)
        finally:
            _current_request.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


def _user_id(request: HttpRequest) -> int | None:
    """The signed-in user's id once authentication has run: the session's user after AuthenticationMiddleware, or
    the one the API's token check put on the request. A user not loaded yet is not loaded here: that would query
    the database from inside a logging call."""
    user = vars(request).get("user")
    if isinstance(user, SimpleLazyObject):
        user = None if user._wrapped is empty else user._wrapped
    if user is not None and user.is_authenticated:
        return user.pk  # type: ignore[no-any-return]
    return None


class RequestContext(logging.Filter):
    """Adds request_id and user_id (in a request) and task_id and task_name (in a Celery task, eager ones too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Django logs a 4xx or 5xx answer after the middleware has returned, with the request attached.
        request = _current_request.get() or getattr(record, "request", None)
        if getattr(request, "request_id", None):
            record.request_id = request.request_id  # type: ignore[union-attr]
            record.user_id = _user_id(request)  # type: ignore[arg-type]
        task = current_task
        if task and task.request.id:
            record.task_id = task.request.id
            record.task_name = task.name
        return True


class GunicornAccessFields(logging.Filter):
    """Gunicorn's access records carry their values in `args` (its "atoms"): lift the useful ones into fields. The
    query string is left out: it is the one part of a URL a client fills at will."""

    _ATOMS = {"m": "method", "U": "path", "s": "status", "M": "duration_ms", "h": "remote_addr"}

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if isinstance(atoms, dict):
            for atom, field in self._ATOMS.items():
                value = atoms.get(atom)
                if field == "status" and str(value).isdigit():
                    value = int(str(value))
                setattr(record, field, value)
            request_id = atoms.get("{x-request-id}o")
            if request_id and request_id != "-":
                record.request_id = request_id
        return True


# -- secrets out ---------------------------------------------------------------------------------------------

_REDACTED = "[redacted]"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Private keys of any kind and CSRs (the portal's policy refuses to log them; a CSR names its requester).
    (
        re.compile(
            r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY|(?:NEW )?CERTIFICATE REQUEST)-----.*?(?:-----END \1-----|\Z)",
            re.DOTALL,
        ),
        r"-----\1 " + _REDACTED + "-----",
    ),
    # An Authorization header's value: the Cloudflare API token, a portal API token.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + _REDACTED),
    # The portal's API tokens (certificates.models.ApiToken: "mtp_" and 43 URL-safe characters). The stored hint is
    # the prefix and 4 characters and stays readable.
    (re.compile(r"\bmtp_[A-Za-z0-9_-]{16,}"), "mtp_" + _REDACTED),
    # allauth's password-reset and email-confirmation links (emails, access logs): the key is the secret.
    (re.compile(r"(/password/reset/key/)[^\s/\"'<>]+"), r"\1" + _REDACTED),
    (re.compile(r"(/confirm-email/)[^\s/\"'<>]+"), r"\1" + _REDACTED),
    # name=value or "name": "value" for names that are secrets by definition.
    (
        re.compile(
            r"(?i)\b(password|passwd|secret|api[_-]?key|api[_-]?token|access[_-]?token|x-auth-key)"
            r"(\"?\s*[:=]\s*\"?)[^\s\"'&,;}]+"
        ),
        r"\1\2" + _REDACTED,
    ),
)
# Extra fields whose value is a secret whatever it looks like.
_SECRET_FIELDS = re.compile(r"(?i)password|secret|token|authorization|api_key|private_key|csr")


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


# The attributes every LogRecord has; anything else on a record came from `extra=` (or a filter above).
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name, value in vars(record).items() if name not in _RECORD_ATTRIBUTES}


class RedactSecrets(logging.Filter):
    """Scrubs the message, the exception and stack text and every extra field of the record, in place (so that
    every handler sees the scrubbed record). Runs after the filters that add fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call (arguments that do not fit): logging reports it when the line is written
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in _extra_fields(record).items():
            setattr(record, name, _REDACTED if _SECRET_FIELDS.search(name) else _redact_value(value))
        return True


# -- formats -------------------------------------------------------------------------------------------------


_CONTEXT_FIELDS = ("request_id", "user_id", "task_id", "task_name")


class PlainFormatter(logging.Formatter):
    """The human-readable line, ending with the request or task it belongs to when there is one."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{name}={value}" for name in _CONTEXT_FIELDS if (value := getattr(record, name, None)))
        if not context:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{context}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, exception, then the context and
    extra fields the record carries. A value JSON cannot hold (a request, a datetime) is written as its str(),
    scrubbed too (RedactSecrets leaves objects alone: other handlers may need them whole)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for name, value in _extra_fields(record).items():
            if value is not None:
                entry[name] = value
        return json.dumps(entry, default=_scrubbed_str, ensure_ascii=False)


def _scrubbed_str(value: object) -> str:
    return redact(str(value))


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """Django's LOGGING for LOG_FORMAT and LOG_LEVEL."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": _FILTERS,
        "formatters": _FORMATTERS,
        "handlers": {
            # The level here too: records of the loggers below reach it by propagation, which skips the root's level.
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context", "redact"],
                "level": level,
            }
        },
        "root": {"handlers": ["console"], "level": level},
        # Django's default logging gives these loggers handlers of their own (unfiltered, in their own format):
        # everything goes through the root's handler instead, once. (There are no ADMINS to mail.)
        "loggers": {
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }


def gunicorn_logging_config(log_format: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs in the same format, through the same filters (an
    access line's path can hold a password-reset key). The access line itself stays gunicorn's message."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {**_FILTERS, "access": {"()": GunicornAccessFields}},
        "formatters": {**_FORMATTERS, "access": {"format": "%(message)s"}},
        "handlers": {
            # Where gunicorn writes them by default: errors (and the portal's own lines) on stderr, access on stdout.
            "error": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["context", "redact"]},
            "access": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json" if log_format == "json" else "access",
                "filters": ["access", "redact"],
            },
        },
        "root": {"handlers": ["error"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


_FILTERS: dict[str, Any] = {"context": {"()": RequestContext}, "redact": {"()": RedactSecrets}}
_FORMATTERS: dict[str, Any] = {"plain": {"()": PlainFormatter}, "json": {"()": JsonFormatter}}
