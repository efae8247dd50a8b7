"""allauth wiring: the client's address and the failed-login throttle.

allauth throttles failed sign-ins in the cache. Two things make its defaults unsafe behind a reverse proxy:
it would see every client as the proxy (one client's failures would lock out everyone), and an account-wide
key lets anyone lock a known account out. Here the address is the one the audit log records (one
TRUSTED_PROXY_COUNT for both), and failures count per account *at one client address*
(`LOGIN_FAILED_RATE_LIMIT`), per client address, and per account across all addresses with a ceiling no single
client can reach on its own (`LOGIN_FAILED_ACCOUNT_RATE_LIMIT`), which stops guessing spread over many
addresses. With PORTAL_ADMISSION=email_domain, sign-up takes only addresses at the admitted domains.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import ratelimit
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest

from certificates import admission
from certificates.views_helpers import client_address

ACCOUNT_CEILING_ACTION = "login_failed_account"


class AccountAdapter(DefaultAccountAdapter):
    def clean_email(self, email: str) -> str:
        email = super().clean_email(email)
        if settings.PORTAL_ADMISSION == admission.EMAIL_DOMAIN and not admission.email_domain_admitted(email):
            domains = ", ".join(settings.PORTAL_ADMISSION_EMAIL_DOMAINS)
            raise ValidationError(f"This portal is for addresses at {domains}.")
        return email

    def get_client_ip(self, request: HttpRequest) -> str:
        address = client_address(request)
        if not address:
            raise PermissionDenied("Unable to determine the client's address")
        return address

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        # allauth keys the per-"key" failed-login limit on this; adding the client's address means that a
        # stranger's failures do not lock the account's owner out.
        account = super()._get_login_attempts_cache_key(request, **credentials)
        return f"{account}@{self.get_client_ip(request)}"

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        if not ratelimit.consume(request, action=ACCOUNT_CEILING_ACTION, key=_login(credentials), dry_run=True):
            raise self.validation_error("too_many_login_attempts")
        super().pre_authenticate(request, **credentials)

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        # Only failures count towards the account-wide ceiling, so the owner's own sign-ins never do.
        ratelimit.consume(request, action=ACCOUNT_CEILING_ACTION, key=_login(credentials))
        super().authentication_failed(request, **credentials)


def _login(credentials: dict[str, Any]) -> str:
    return str(credentials.get("email", credentials.get("username", ""))).lower()
