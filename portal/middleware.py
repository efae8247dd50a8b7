"""Staff must use two-factor authentication, and must have used it in this very session.

A staff account without TOTP can reach only the setup pages. A staff session that did not pass a second
factor (allauth records each step of a sign-in in the session) is sent to give a code before any other page
answers, so a password alone never opens the admin, whichever form or backend accepted it.
"""

from __future__ import annotations

from collections.abc import Callable

from allauth.account.authentication import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

# Sign-in, sign-out, the two-factor pages and static files must stay reachable to complete the setup; the probes
# and Prometheus's scrape carry no session, but a staff member's browser opening them needs no code either.
ALLOWED_PREFIXES = ("/accounts/", "/static/", "/healthz", "/readyz", "/metrics")


def passed_second_factor(request: HttpRequest, user: AbstractBaseUser) -> bool:
    """Whether this session's sign-in (or a later re-authentication) included a TOTP or recovery code."""
    return any(record.get("method") == "mfa" for record in get_authentication_records(request, user))


class StaffTwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff or request.path.startswith(ALLOWED_PREFIXES):
            return self.get_response(request)
        if not is_mfa_enabled(user):
            messages.warning(
                request, "Staff accounts need two-factor authentication. Set up an authenticator app first."
            )
            return redirect(reverse("mfa_activate_totp"))
        if not passed_second_factor(request, user):
            messages.info(request, "Staff pages need your authenticator code for this session.")
            query = urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})
            return redirect(f"{reverse('mfa_reauthenticate')}?{query}")
        return self.get_response(request)
