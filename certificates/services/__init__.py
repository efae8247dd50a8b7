"""Workflows that touch several records or Cloudflare, one module per concern; callers use this package.

Functions are named `<entity>_<action>` and take keyword arguments. Each Cloudflare call happens outside
a database transaction; the outcome is recorded with a compare-and-set update so that concurrent
workers and admins cannot overwrite each other (HOUSE_STYLE.md §5, §14). Work for the background is queued
through certificates.enqueue: the services never import the tasks (the tasks import the services).
"""

from certificates.services.access_requests import access_request_create, access_request_decide
from certificates.services.allowlists import AllowlistRefusedError, allowlist_get, allowlist_set, allowlist_standing
from certificates.services.audit import Origin, audit
from certificates.services.errors import (
    AdmissionError,
    AuthorityUnavailableError,
    CloudflareUnavailableError,
    InvalidTransitionError,
    PolicyError,
    QuotaError,
    RateLimitedError,
    ServiceError,
    TokenScopeError,
)
from certificates.services.issuance import (
    certificate_issue,
    certificate_reconcile_unconfirmed,
    certificate_record_download,
    unconfirmed_grace,
)
from certificates.services.rates import in_words
from certificates.services.revocation import certificate_confirm_revocation, certificate_reactivate, certificate_revoke
from certificates.services.tokens import api_token_authenticate, api_token_create, api_token_revoke
from certificates.services.unknown_certificates import unknown_certificate_adopt, unknown_certificate_revoke

__all__ = [
    "AdmissionError",
    "AllowlistRefusedError",
    "AuthorityUnavailableError",
    "CloudflareUnavailableError",
    "InvalidTransitionError",
    "Origin",
    "PolicyError",
    "QuotaError",
    "RateLimitedError",
    "ServiceError",
    "TokenScopeError",
    "access_request_create",
    "access_request_decide",
    "allowlist_get",
    "allowlist_set",
    "allowlist_standing",
    "api_token_authenticate",
    "api_token_create",
    "api_token_revoke",
    "audit",
    "certificate_confirm_revocation",
    "certificate_issue",
    "certificate_reactivate",
    "certificate_reconcile_unconfirmed",
    "certificate_record_download",
    "certificate_revoke",
    "in_words",
    "unconfirmed_grace",
    "unknown_certificate_adopt",
    "unknown_certificate_revoke",
]
