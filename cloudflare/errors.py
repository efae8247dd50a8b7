"""Errors raised by the Cloudflare client.

Each class says whether repeating the call could help (`retryable`). Errors from Cloudflare carry the HTTP
status and the envelope's `errors` (code and message), so callers branch on codes such as 1445 (zone
quota reached) instead of parsing messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

QUOTA_EXCEEDED_CODE = 1445  # FACTS.md §3: client certificate per-zone quota reached
CA_QUOTA_EXCEEDED_CODE = 1489  # FACTS.md §3: "Hit maximum CA cert allocation." (uploaded CAs per account)
# ASSUMPTION (undocumented by Cloudflare): the code of "too many custom rules for the plan", as the emulator
# answers it (cloudflare_emulator/codes.py says why this number).
RULE_LIMIT_CODE = 20217
# Cloudflare answers a missing or bad token with 400/403 and one of these codes rather than a 401.
AUTHENTICATION_CODES = frozenset({6003, 6111, 9103, 9106, 9109, 10000})


@dataclass(frozen=True)
class ErrorDetail:
    code: int
    message: str
    pointer: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ErrorDetail:
        source = data.get("source") or {}
        code = data.get("code")
        return cls(
            code=int(code) if isinstance(code, int | str) and str(code).isdigit() else 0,
            message=str(data.get("message", "")),
            pointer=source.get("pointer") if isinstance(source, Mapping) else None,
        )

    def __str__(self) -> str:
        where = f" at {self.pointer}" if self.pointer else ""
        return f"{self.code}: {self.message}{where}"


class CloudflareError(Exception):
    """Base class for everything the client raises."""

    retryable = False


class InvalidArgumentError(CloudflareError, ValueError):
    """The caller passed something Cloudflare would refuse; no call was made."""


class BudgetExhaustedError(CloudflareError):
    """The portal's shared call budget has no room; no call was made."""

    retryable = True

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"The portal's Cloudflare call budget is used up; try again in {retry_after:.0f} s. "
            "(This protects the account from Cloudflare's 5-minute lockout.)"
        )


class TransportError(CloudflareError):
    """The request did not get an HTTP answer."""

    retryable = True


class ConnectError(TransportError):
    """The connection could not be made, so the request was not sent."""


class AmbiguousRequestError(TransportError):
    """The request may have reached Cloudflare but no answer came (read timeout, dropped connection).

    For a call that is not safe to repeat (certificate create) the caller must reconcile before retrying.
    """


class DeadlineExceededError(TransportError):
    """The caller's deadline (a web request's) left no time for another attempt, backoff or wait.

    Raised as this class when no attempt may have reached Cloudflare: nothing changed.
    """


class DeadlineAfterSendError(DeadlineExceededError, AmbiguousRequestError):
    """The deadline ran out after an attempt that may have reached Cloudflare: the change may have happened."""


class APIError(CloudflareError):
    """Cloudflare answered with an error status or `success: false`."""

    def __init__(
        self,
        status: int,
        errors: Iterable[ErrorDetail] = (),
        *,
        method: str = "",
        path: str = "",
        body_excerpt: str = "",
    ) -> None:
        self.status = status
        self.errors = tuple(errors)
        self.method = method
        self.path = path
        self.body_excerpt = body_excerpt
        super().__init__(self._describe())

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(error.code for error in self.errors)

    def _describe(self) -> str:
        where = f"{self.method} {self.path} " if self.method else ""
        if self.errors:
            detail = "; ".join(str(error) for error in self.errors)
        else:
            detail = self.body_excerpt or "no error details in the response"
        return f"Cloudflare {where}answered HTTP {self.status}: {detail}"


class BadRequestError(APIError):
    pass


class QuotaExceededError(BadRequestError):
    """Error 1445: the zone holds its maximum of client certificates."""


class CAQuotaExceededError(BadRequestError):
    """Error 1489: the account holds its maximum of uploaded CAs (5 unless Cloudflare raised it, FACTS.md §3)."""


class RuleLimitError(BadRequestError):
    """The write would take the zone over its plan's number of custom rules (FACTS.md §7, §14).

    Recognised by RULE_LIMIT_CODE, which is an assumption: against real Cloudflare the same refusal may
    arrive as a plain BadRequestError.
    """


class AuthenticationError(APIError):
    pass


class PermissionDeniedError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class RateLimitedError(APIError):
    retryable = True

    def __init__(
        self, status: int, errors: Iterable[ErrorDetail] = (), *, retry_after: float | None = None, **kwargs: Any
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status, errors, **kwargs)


class ServerError(APIError):
    retryable = True


class InvalidResponseError(APIError):
    """The answer was not a v4 envelope (an HTML error page, an empty body, broken JSON)."""

    retryable = True


class FingerprintMismatchError(InvalidResponseError):
    """The certificate Cloudflare returned does not hash to the `fingerprint_sha256` it reports.

    The edge matches rules on the fingerprint of the certificate a client presents, so a fingerprint that is not
    the certificate's would admit or block the wrong one. Asking again returns the same answer: not retryable.
    """

    retryable = False

    def __init__(self, certificate_id: str, *, reported: str, computed: str) -> None:
        self.certificate_id = certificate_id
        self.reported = reported
        self.computed = computed
        message = (
            f"the certificate {certificate_id} Cloudflare returned has the SHA-256 fingerprint "
            f"{computed or 'unreadable'}, not the {reported} it reports; nothing was recorded"
        )
        super().__init__(200, (ErrorDetail(code=0, message=message),))


def error_class_for(status: int, codes: Iterable[int]) -> type[APIError]:
    code_set = set(codes)
    if QUOTA_EXCEEDED_CODE in code_set:
        return QuotaExceededError
    if CA_QUOTA_EXCEEDED_CODE in code_set:
        return CAQuotaExceededError
    if status == 400 and RULE_LIMIT_CODE in code_set:
        return RuleLimitError
    if status in (400, 401, 403) and code_set & AUTHENTICATION_CODES:
        return AuthenticationError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    return {
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
        409: ConflictError,
    }.get(status, BadRequestError)
