"""What the services refuse, as errors with an HTTP status and a message safe to show; Cloudflare's errors
translated into them.
"""

from __future__ import annotations

from collections.abc import Callable

from certificates.cloudflare_client import get_cloudflare_client
from cloudflare import errors as cf_errors
from cloudflare.client import CloudflareClient
from cloudflare.models import ClientCertificate


class ServiceError(Exception):
    """A request the portal refuses or cannot complete; `message` is safe to show to the user."""

    status_code = 400

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Seconds after which trying again may succeed; the API sends it as Retry-After.
        self.retry_after = retry_after


class PolicyError(ServiceError):
    status_code = 400


class QuotaError(ServiceError):
    status_code = 409


class InvalidTransitionError(ServiceError):
    status_code = 409


class CloudflareUnavailableError(ServiceError):
    status_code = 503


class AdmissionError(ServiceError):
    """The admission policy does not (yet) let this account issue certificates."""

    status_code = 403


class TokenScopeError(ServiceError):
    """A known caller whose token does not allow this request."""

    status_code = 403


class RateLimitedError(ServiceError):
    """The user's fair share of Cloudflare calls is used up for now (README, "Fair use of Cloudflare")."""

    status_code = 429


def first_message(error: cf_errors.APIError) -> str:
    return error.errors[0].message if error.errors else f"HTTP {error.status}"


def call_cloudflare(
    call: Callable[[CloudflareClient], ClientCertificate], *, client: CloudflareClient | None = None
) -> ClientCertificate:
    client = client or get_cloudflare_client(wait_for_budget=False)
    try:
        return call(client)
    except cf_errors.NotFoundError as exc:
        raise ServiceError("Cloudflare does not know this certificate any more.") from exc
    except cf_errors.APIError as exc:
        if exc.retryable:
            raise CloudflareUnavailableError(
                "Cloudflare is not answering right now; nothing changed. Try again soon."
            ) from exc
        raise InvalidTransitionError(f"Cloudflare refused: {first_message(exc)}") from exc
    except cf_errors.CloudflareError as exc:
        raise CloudflareUnavailableError(
            "Cloudflare is not answering right now; nothing changed. Try again soon."
        ) from exc


class AuthorityUnavailableError(ServiceError):
    """The portal CA cannot sign: its key cannot be unlocked (a setting is missing or wrong). The message names the
    setting for staff; users see that issuance is unavailable."""

    status_code = 503
