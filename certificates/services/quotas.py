"""What every issuance checks with the user's row locked, whichever CA signs: fair use, the user's maximum, and
that the key is new."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from certificates.admission import held_by
from certificates.csr import ValidatedCSR
from certificates.models import Certificate
from certificates.policy import CertificatePolicy
from certificates.services.errors import PolicyError, QuotaError, RateLimitedError
from certificates.services.rates import count_of, in_words, period_in_words, seconds_until_allowed
from portal.env import Rate


def lock_user_for_issuance(*, user: User, policy: CertificatePolicy) -> None:
    """Within the caller's transaction: one issuance per user at a time (so two tabs cannot both pass the quota
    check), then the user's fair-use rate and maximum."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    check_issue_rate(user=user)
    held = held_by(user)
    if held >= policy.max_active_per_user:
        raise QuotaError(
            f"You already have {held} active certificates, the most allowed. "
            "Revoke one you no longer use on your dashboard, then try again."
        )


def refuse_known_key(*, zone_id: str, validated: ValidatedCSR) -> None:
    if (
        Certificate.objects.filter(zone_id=zone_id, public_key_sha256=validated.public_key_sha256)
        .exclude(status=Certificate.Status.FAILED)
        .exists()
    ):
        raise PolicyError("A certificate for this key exists already. Make a new key for each certificate.")


def check_issue_rate(*, user: User) -> None:
    """Fair use: each Certificate row is one create call, so the user's rows made within the period are counted.

    Runs with the user's row locked (_reserve_slot): two requests at once cannot both take the last one.
    """
    rate: Rate = settings.CERTIFICATE_ISSUE_RATE_LIMIT
    # Certificates staff adopted (made outside the portal, so with no CSR) cost the user no create call.
    wait = seconds_until_allowed(rate, Certificate.objects.filter(owner=user).exclude(csr=""))
    if wait:
        raise RateLimitedError(
            f"You have requested {count_of(rate.count, 'certificate')} in the last {period_in_words(rate.period)}, "
            f"the most allowed. Nothing was issued; try again in {in_words(wait)}.",
            retry_after=wait,
        )
