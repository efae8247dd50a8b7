"""Signing in as a person does: the portal's sign-in form, then the authenticator code for TOTP accounts."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, hotp_value, yield_hotp_counters_from_time
from allauth.mfa.utils import decrypt
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

PASSWORD = "correct horse battery staple"  # tests.conftest.make_user's


def totp_code(user) -> str:
    """The code the user's authenticator app shows now.

    allauth accepts each code once; a test that signs in twice within one 30-second period would be refused,
    so the code's "used" mark is dropped, as if the next period had come.
    """
    authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    secret = decrypt(authenticator.data["secret"])
    code = format_hotp_value(hotp_value(secret, next(iter(yield_hotp_counters_from_time()))))
    cache.delete(TOTP(authenticator)._get_used_cache_key(code))
    return code


def sign_in(client: Client, user, *, password: str = PASSWORD, **extra) -> Client:
    """Password, then (when the account has TOTP) the code: the session records both, as for a real user."""
    response = client.post(reverse("account_login"), {"login": user.email, "password": password}, **extra)
    assert response.status_code == 302, response.content[:500]
    if response["Location"] == reverse("mfa_authenticate"):
        response = client.post(reverse("mfa_authenticate"), {"code": totp_code(user)}, **extra)
        assert response.status_code == 302, response.content[:500]
    return client


def signed_in(user) -> Client:
    return sign_in(Client(), user)
