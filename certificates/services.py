"""Workflows that touch several records or Cloudflare: issuance, reconciliation, revocation, tokens.

Functions are named `<entity>_<action>` and take keyword arguments. Each Cloudflare call happens outside
a database transaction; the outcome is recorded with a compare-and-set update so that concurrent
workers and admins cannot overwrite each other (HOUSE_STYLE.md §5, §14).
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from certificates.admission import admission_refusal, held_by, pending_request, zone_lock, zone_room
from certificates.allowlist import AllowlistError, CheckedAllowlist, check_networks
from certificates.cloudflare_client import get_cloudflare_client, get_zone_id
from certificates.csr import (
    CertificateFacts,
    CSRError,
    ValidatedCSR,
    certificate_facts,
    public_key_sha256_of_certificate,
    validate_csr,
)
from certificates.enqueue import request_firewall_sync, request_reconcile, request_revocation_check
from certificates.firewall.compiler import allowlist_fits
from certificates.models import (
    AccessRequest,
    AllowlistEntry,
    ApiToken,
    AuditEvent,
    Certificate,
    UnknownCertificate,
)
from certificates.policy import CertificatePolicy, get_policy
from cloudflare import errors as cf_errors
from cloudflare.client import CloudflareClient
from cloudflare.models import ClientCertificate
from portal.env import Rate

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
MAX_NOTE_LENGTH = 500
ADMIN_QUEUE = "admin:certificates_accessrequest_changelist"
DOWNLOAD_FORMATS = frozenset({"key", "certificate", "pkcs12", "zip", "certificate_pem"})


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


ZONE_FULL = (
    "The zone has no room for more certificates: every slot is in use. Ask staff for room on your dashboard; "
    "you get an email when they have made some."
)


@dataclass(frozen=True)
class Origin:
    """Who asked, and from where: recorded on every audit event."""

    actor: AbstractBaseUser | None
    remote_addr: str | None = None


# -- issuance ------------------------------------------------------------------------------------------------


def certificate_issue(
    *, user: AbstractBaseUser, csr: str, validity_days: int, name: str, origin: Origin
) -> Certificate:
    """Validate, check quotas, record the intent, ask Cloudflare, record the result."""
    refusal = admission_refusal(user)
    if refusal is not None:
        raise AdmissionError(refusal.message)
    policy = get_policy()
    name = clean_name(name, what="certificate")
    validated = _validate_request(user=user, csr=csr, validity_days=validity_days, policy=policy)
    certificate = _reserve_slot(user=user, validated=validated, validity_days=validity_days, name=name, policy=policy)
    try:
        return _create_reserved(certificate, validated=validated, validity_days=validity_days, origin=origin)
    except ServiceError:
        raise  # the row is settled already (failed, or unconfirmed and being reconciled)
    except RedisError as exc:
        # The call budget (Redis) could not be asked, so no call was made: nothing was issued. The error goes on
        # to the pages' and the API's 503.
        _record_failure(certificate, exc, origin)
        raise
    except Exception as exc:
        # Anything else may have come after Cloudflare made the certificate: reconciliation decides, as after a
        # timeout. Either way the row does not stay `issuing`, holding one of the user's slots.
        if _mark_unconfirmed(certificate, error=exc, origin=origin):
            request_reconcile(certificate.pk)
        raise


def _create_reserved(
    certificate: Certificate, *, validated: ValidatedCSR, validity_days: int, origin: Origin
) -> Certificate:
    """Ask Cloudflare for the certificate of a reserved (`issuing`) row and record the answer."""
    # Low priority: issuance leaves the budget's reserve to revocation and the firewall sync.
    client = get_cloudflare_client(wait_for_budget=False, low_priority=True)
    try:
        issued = client.create_client_certificate(certificate.zone_id, csr=validated.pem, validity_days=validity_days)
    except cf_errors.AmbiguousRequestError as exc:
        return _resolve_ambiguous_create(certificate, error=exc, origin=origin, client=client)
    except cf_errors.QuotaExceededError as exc:
        _record_failure(certificate, exc, origin)
        raise QuotaError(ZONE_FULL) from exc
    except (cf_errors.RateLimitedError, cf_errors.BudgetExhaustedError, cf_errors.TransportError) as exc:
        # Refused before Cloudflare did anything (429, budget, no connection): nothing was made.
        _record_failure(certificate, exc, origin)
        raise _busy_error(exc) from exc
    except cf_errors.APIError as exc:
        _record_failure(certificate, exc, origin)
        raise ServiceError(f"Cloudflare refused the certificate request: {_first_message(exc)}") from exc
    certificate = _record_issued(certificate, issued, origin, action=AuditEvent.Action.ISSUED)
    _firewall_changed(certificate.zone_id)
    return certificate


def _busy_error(error: cf_errors.CloudflareError) -> CloudflareUnavailableError:
    wait = getattr(error, "retry_after", None)  # set by the budget and by Cloudflare's 429
    if wait is None:
        return CloudflareUnavailableError("Cloudflare is busy right now; nothing was issued. Try again in a minute.")
    seconds = max(1, math.ceil(wait))
    return CloudflareUnavailableError(
        f"Cloudflare is busy right now; nothing was issued. Try again in {in_words(seconds)}.", retry_after=seconds
    )


def clean_name(name: str, *, what: str) -> str:
    """A display name: no control characters (they break email headers and PostgreSQL refuses NUL)."""
    name = (name or "").strip()
    if not name:
        raise PolicyError(f"Give the {what} a name, for example the machine or service that will use it.")
    if len(name) > MAX_NAME_LENGTH:
        raise PolicyError(f"The name is longer than {MAX_NAME_LENGTH} characters.")
    if has_control_characters(name):
        raise PolicyError("The name contains control characters; use letters, digits, spaces and punctuation.")
    return name


def has_control_characters(text: str, *, allowed: str = "") -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cs", "Cf") and char not in allowed for char in text)


def _validate_request(
    *, user: AbstractBaseUser, csr: str, validity_days: int, policy: CertificatePolicy
) -> ValidatedCSR:
    if isinstance(validity_days, bool) or not isinstance(validity_days, int):
        raise PolicyError("validity_days must be a whole number of days.")
    if not policy.is_allowed_validity(validity_days):
        choices = ", ".join(str(d) for d in policy.validity_choices)
        raise PolicyError(f"A certificate can be valid for {choices} days, not {validity_days}.")
    try:
        return validate_csr(csr, policy=policy, subject=policy.subject_for(user))
    except CSRError as exc:
        raise PolicyError(str(exc)) from exc


def _reserve_slot(
    *, user: AbstractBaseUser, validated: ValidatedCSR, validity_days: int, name: str, policy: CertificatePolicy
) -> Certificate:
    zone_id = get_zone_id()
    with transaction.atomic():
        # One issuance per user at a time, so two tabs cannot both pass the quota check.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        _check_issue_rate(user=user)
        held = held_by(user)
        if held >= policy.max_active_per_user:
            raise QuotaError(
                f"You already have {held} active certificates, the most allowed. "
                "Revoke one you no longer use on your dashboard, then try again."
            )
        # Then one issuance per zone at a time (always after the user's lock, so the two never deadlock): the
        # zone's last free slot goes to one request, whoever else asks at the same moment.
        zone_lock(zone_id)
        if zone_room(zone_id) <= 0:
            raise QuotaError(ZONE_FULL)
        if (
            Certificate.objects.filter(zone_id=zone_id, public_key_sha256=validated.public_key_sha256)
            .exclude(status=Certificate.Status.FAILED)
            .exists()
        ):
            raise PolicyError("A certificate for this key exists already. Make a new key for each certificate.")
        return Certificate.objects.create(
            owner=user,
            name=name.strip(),
            zone_id=zone_id,
            status=Certificate.Status.ISSUING,
            csr=validated.pem,
            public_key_sha256=validated.public_key_sha256,
            key_type=validated.key_type.id,
            common_name=validated.common_name,
            validity_days=validity_days,
        )


def _check_issue_rate(*, user: AbstractBaseUser) -> None:
    """Fair use: each Certificate row is one create call, so the user's rows made within the period are counted.

    Runs with the user's row locked (_reserve_slot): two requests at once cannot both take the last one.
    """
    rate: Rate = settings.CERTIFICATE_ISSUE_RATE_LIMIT
    # Certificates staff adopted (made outside the portal, so with no CSR) cost the user no create call.
    wait = _seconds_until_allowed(rate, Certificate.objects.filter(owner=user).exclude(csr=""))
    if wait:
        raise RateLimitedError(
            f"You have requested {_count_of(rate.count, 'certificate')} in the last {period_in_words(rate.period)}, "
            f"the most allowed. Nothing was issued; try again in {in_words(wait)}.",
            retry_after=wait,
        )


def _resolve_ambiguous_create(
    certificate: Certificate, *, error: cf_errors.CloudflareError, origin: Origin, client: CloudflareClient
) -> Certificate:
    """The create may have happened: look for it before anyone tries again (DESIGN.md, Budgets)."""
    _mark_unconfirmed(certificate, error=error, origin=origin)
    try:
        # The web request's own client: what is left of its deadline bounds the look, the workers do the rest.
        settled = certificate_reconcile_unconfirmed(certificate=certificate, origin=origin, client=client)
    except cf_errors.CloudflareError:
        settled = certificate
    if settled.status not in Certificate.IN_FLIGHT | {Certificate.Status.FAILED}:
        _firewall_changed(settled.zone_id)
        return settled
    # Not listed (yet) or Cloudflare cannot be asked: the workers settle the row within a few minutes.
    request_reconcile(certificate.pk)
    raise CloudflareUnavailableError(
        "Cloudflare did not confirm the certificate. The portal keeps checking: within a few minutes it appears "
        "on your dashboard if it was issued, or is marked failed if not. Keep this tab open, your key exists "
        "only here."
    ) from error


def _mark_unconfirmed(certificate: Certificate, *, error: Exception, origin: Origin) -> bool:
    """`issuing` → `unconfirmed` (compare-and-set); False when the row had left `issuing` already."""
    updated = Certificate.objects.filter(pk=certificate.pk, status=Certificate.Status.ISSUING).update(
        status=Certificate.Status.UNCONFIRMED, last_error=str(error)[:2000], updated_at=timezone.now()
    )
    if updated:
        audit(AuditEvent.Action.ISSUE_UNCONFIRMED, origin, certificate=certificate, old="issuing", new="unconfirmed")
    return bool(updated)


def unconfirmed_grace() -> timedelta:
    """A certificate still missing from the listing this long after an ambiguous create was never made.

    Cloudflare's create answers within seconds; CERTIFICATE_UNCONFIRMED_GRACE_SECONDS says why 60 s is enough.
    """
    return timedelta(seconds=settings.CERTIFICATE_UNCONFIRMED_GRACE_SECONDS)


def certificate_reconcile_unconfirmed(
    *,
    certificate: Certificate,
    origin: Origin,
    listing: Iterable[ClientCertificate] | None = None,
    client: CloudflareClient | None = None,
) -> Certificate:
    """Find the certificate made from this CSR in the zone's listing (fetched if not given) and adopt it.

    Returns the row as it is now: adopted (active), still unconfirmed (not listed yet, within the grace
    period), or failed (not listed after it: the create never happened and the user may try again).
    """
    if listing is None:
        listing = (client or get_cloudflare_client()).iter_client_certificates(certificate.zone_id)
    match = next((issued for issued in listing if same_request(issued, certificate)), None)
    if match is not None:
        return _record_issued(
            certificate, match, origin, action=AuditEvent.Action.ADOPTED, expected=Certificate.Status.UNCONFIRMED
        )
    now = timezone.now()
    updated = Certificate.objects.filter(
        pk=certificate.pk, status=Certificate.Status.UNCONFIRMED, updated_at__lte=now - unconfirmed_grace()
    ).update(
        status=Certificate.Status.FAILED,
        last_error="Cloudflare has no certificate for this request; nothing was issued.",
        updated_at=now,
    )
    if updated:
        audit(AuditEvent.Action.ISSUE_FAILED, origin, certificate=certificate, old="unconfirmed", new="failed")
    certificate.refresh_from_db()
    return certificate


def same_request(issued: ClientCertificate, certificate: Certificate) -> bool:
    if issued.csr and issued.csr.strip() == certificate.csr.strip():
        return True
    try:
        return (
            bool(issued.certificate)
            and public_key_sha256_of_certificate(issued.certificate) == certificate.public_key_sha256
        )
    except ValueError:
        return False


def _record_issued(
    certificate: Certificate,
    issued: ClientCertificate,
    origin: Origin,
    *,
    action: str,
    expected: str = Certificate.Status.ISSUING,
) -> Certificate:
    now = timezone.now()
    updated = Certificate.objects.filter(pk=certificate.pk, status=expected).update(
        status=issued.status.value,
        cloudflare_id=issued.id,
        certificate_pem=issued.certificate,
        fingerprint_sha256=issued.fingerprint_sha256,
        serial_number=issued.serial_number,
        issued_on=issued.issued_on,
        expires_on=issued.expires_on,
        last_error="",
        updated_at=now,
    )
    certificate.refresh_from_db()
    if updated:
        audit(
            action,
            origin,
            certificate=certificate,
            old=expected,
            new=certificate.status,
            detail={"cloudflare_id": issued.id, "fingerprint_sha256": issued.fingerprint_sha256},
        )
    return certificate


def _record_failure(certificate: Certificate, error: Exception, origin: Origin) -> None:
    updated = Certificate.objects.filter(pk=certificate.pk, status=Certificate.Status.ISSUING).update(
        status=Certificate.Status.FAILED, last_error=str(error)[:2000], updated_at=timezone.now()
    )
    if not updated:
        return  # settled meanwhile (recorded as issued, say): nothing failed
    audit(
        AuditEvent.Action.ISSUE_FAILED,
        origin,
        certificate=certificate,
        old="issuing",
        new="failed",
        detail={"error": str(error)[:500]},
    )


def _first_message(error: cf_errors.APIError) -> str:
    return error.errors[0].message if error.errors else f"HTTP {error.status}"


# -- revocation and reactivation -------------------------------------------------------------------------------


def certificate_revoke(*, certificate: Certificate, origin: Origin, reason: str = "") -> Certificate:
    """Ask Cloudflare to revoke; the certificate is `pending_revocation` until Cloudflare finishes."""
    if not certificate.is_revocable:
        raise InvalidTransitionError(
            f"A certificate that is {certificate.get_status_display().lower()} cannot be revoked."
        )
    _check_revoke_rate(certificate=certificate, origin=origin)
    old = certificate.status
    client = get_cloudflare_client(wait_for_budget=False)
    try:
        result = _call_cloudflare(
            lambda client: client.revoke_client_certificate(certificate.zone_id, certificate.cloudflare_id),
            client=client,
        )
    except CloudflareUnavailableError as exc:
        if not _may_have_committed(exc.__cause__):
            raise
        # Timed out or failed after it was sent: the DELETE may have committed. Ask now (with what is left of
        # the web deadline), so the user learns the outcome and the revocation keeps their reason.
        return _revocation_outcome(certificate, client=client, origin=origin, reason=reason, error=exc)
    return _record_revocation(certificate, expected=old, status=result.status.value, origin=origin, reason=reason)


def _record_revocation(
    certificate: Certificate, *, expected: str, status: str, origin: Origin, reason: str
) -> Certificate:
    return _record_transition(
        certificate,
        expected=expected,
        new=status,
        origin=origin,
        action=AuditEvent.Action.REVOCATION_REQUESTED,
        detail={"reason": reason[:500]} if reason else {},
    )


def _may_have_committed(error: BaseException | None) -> bool:
    if isinstance(error, cf_errors.AmbiguousRequestError):
        return True
    # A 5xx or a broken answer, after the client's retries: the last attempt may have been carried out.
    return (
        isinstance(error, cf_errors.APIError) and error.retryable and not isinstance(error, cf_errors.RateLimitedError)
    )


def _revocation_outcome(
    certificate: Certificate, *, client: CloudflareClient, origin: Origin, reason: str, error: Exception
) -> Certificate:
    try:
        revoked = certificate_confirm_revocation(certificate=certificate, origin=origin, reason=reason, client=client)
    except cf_errors.CloudflareError:
        # No time left or still no answer: a worker asks Cloudflare at once and records it with the reason.
        request_revocation_check(certificate.pk, reason=reason, origin=origin)
        raise CloudflareUnavailableError(
            "Cloudflare is slow right now, and the revocation may have gone through. The portal is checking: "
            "within a minute this certificate shows as pending revocation if it did; if not, try again."
        ) from error
    if revoked:
        certificate.refresh_from_db()
        return certificate
    raise CloudflareUnavailableError("Cloudflare is slow right now; nothing changed. Try again soon.") from error


def certificate_confirm_revocation(
    *, certificate: Certificate, origin: Origin, reason: str = "", client: CloudflareClient | None = None
) -> bool:
    """After a revocation whose answer was lost: read the certificate at Cloudflare and, if the revocation did
    happen, record it with the requester's reason. True when Cloudflare has it revoked (or revoking)."""
    remote = (client or get_cloudflare_client()).get_client_certificate(certificate.zone_id, certificate.cloudflare_id)
    if remote.status.value not in (Certificate.Status.PENDING_REVOCATION, Certificate.Status.REVOKED):
        return False
    current = Certificate.objects.get(pk=certificate.pk)
    if current.is_revocable:
        _record_revocation(current, expected=current.status, status=remote.status.value, origin=origin, reason=reason)
    return True


def _check_revoke_rate(*, certificate: Certificate, origin: Origin) -> None:
    """Fair use for owners revoking their own certificates (pages, API); staff revoking others' are not limited.

    The default limit covers every certificate a user can hold in a period (portal/settings.py), so it never
    stops an owner revoking a compromised one; it bounds the calls should that ever stop being true.
    """
    owner_id = certificate.owner_id
    if origin.actor is None or origin.actor.pk != owner_id:
        return
    rate: Rate = settings.CERTIFICATE_REVOKE_RATE_LIMIT
    revocations = AuditEvent.objects.filter(
        actor_id=owner_id, certificate__owner_id=owner_id, action=AuditEvent.Action.REVOCATION_REQUESTED
    )
    wait = _seconds_until_allowed(rate, revocations)
    if wait:
        raise RateLimitedError(
            f"You have revoked {_count_of(rate.count, 'certificate')} in the last {period_in_words(rate.period)}, "
            f"the most allowed. Nothing changed; try again in {in_words(wait)}, "
            "or ask an administrator to revoke it now.",
            retry_after=wait,
        )


def certificate_reactivate(*, certificate: Certificate, origin: Origin) -> Certificate:
    """Undo a revocation while Cloudflare still has it pending (FACTS.md §2)."""
    if not certificate.is_reactivatable:
        raise InvalidTransitionError("Only a certificate pending revocation can be reactivated.")
    result = _call_cloudflare(
        lambda client: client.reactivate_client_certificate(certificate.zone_id, certificate.cloudflare_id)
    )
    return _record_transition(
        certificate,
        expected=Certificate.Status.PENDING_REVOCATION,
        new=result.status.value,
        origin=origin,
        action=AuditEvent.Action.REACTIVATION_REQUESTED,
    )


def _call_cloudflare(
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
        raise InvalidTransitionError(f"Cloudflare refused: {_first_message(exc)}") from exc
    except cf_errors.CloudflareError as exc:
        raise CloudflareUnavailableError(
            "Cloudflare is not answering right now; nothing changed. Try again soon."
        ) from exc


def _record_transition(
    certificate: Certificate, *, expected: str, new: str, origin: Origin, action: str, detail: dict | None = None
) -> Certificate:
    updated = Certificate.objects.filter(pk=certificate.pk, status=expected).update(
        status=new, updated_at=timezone.now()
    )
    certificate.refresh_from_db()
    if updated:
        audit(action, origin, certificate=certificate, old=expected, new=new, detail=detail or {})
        _firewall_changed(certificate.zone_id)
    return certificate


def _firewall_changed(zone_id: str) -> None:
    # Imported here: the tasks module imports this one.
    request_firewall_sync(zone_id)


def certificate_record_download(*, certificate: Certificate, file_format: str, origin: Origin) -> None:
    if file_format not in DOWNLOAD_FORMATS:
        raise PolicyError(f"Unknown download format {file_format!r}.")
    audit(AuditEvent.Action.DOWNLOADED, origin, certificate=certificate, detail={"format": file_format})


# -- per-user rate limits -------------------------------------------------------------------------------------


def _seconds_until_allowed(rate: Rate, events: QuerySet) -> int:
    """Seconds until one more event fits `rate`, given the past events (rows with created_at); 0 if it fits now."""
    now = timezone.now()
    window = timedelta(seconds=rate.period)
    recent = events.filter(created_at__gt=now - window).order_by("created_at").values_list("created_at", flat=True)
    excess = recent.count() - rate.count
    if excess < 0:
        return 0
    # One more fits once the oldest `excess + 1` events have left the window.
    frees_up_at = recent[excess] + window
    return max(1, math.ceil((frees_up_at - now).total_seconds()))


def _count_of(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def in_words(seconds: int) -> str:
    """`45 seconds`, `12 minutes`, `1 hour`, `2 days`: rounded up, so that trying again then succeeds."""
    count, unit = seconds, "second"
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 or seconds >= 2 * size:
            count, unit = math.ceil(seconds / size), name
            break
    return _count_of(count, unit)


def period_in_words(seconds: int) -> str:
    """`hour`, `15 minutes`: the period of a rate, as in "10 per hour"."""
    return in_words(seconds).removeprefix("1 ")


# -- allowlists -----------------------------------------------------------------------------------------------


def allowlist_get(*, user: AbstractBaseUser) -> list[str]:
    return list(AllowlistEntry.objects.filter(owner=user).values_list("network", flat=True))


def allowlist_set(*, user: AbstractBaseUser, networks: list[str], origin: Origin) -> CheckedAllowlist:
    """Replace the user's allowlist; an empty list allows any address. Nothing changes on bad input."""
    try:
        checked = check_networks(networks, max_networks=settings.ALLOWLIST_MAX_NETWORKS)
    except AllowlistError as exc:
        raise PolicyError(str(exc)) from exc
    if not allowlist_fits(settings.PORTAL_API_HOSTNAMES, checked.networks):
        raise PolicyError(
            "These networks are too long to write into one firewall rule (4,096 characters); "
            "use fewer, larger networks (shorter prefixes)."
        )
    with transaction.atomic():
        old = allowlist_get(user=user)
        if old == list(checked.networks):
            return checked
        AllowlistEntry.objects.filter(owner=user).exclude(network__in=checked.networks).delete()
        AllowlistEntry.objects.bulk_create(
            [AllowlistEntry(owner=user, network=n) for n in checked.networks if n not in old]
        )
        audit(
            AuditEvent.Action.ALLOWLIST_CHANGED,
            origin,
            detail={"user_id": user.pk, "old": old, "new": list(checked.networks)},
        )
        _firewall_changed(get_zone_id())
    return checked


# -- access requests (admission, room in a full zone) ------------------------------------------------------------


def access_request_create(*, user: AbstractBaseUser, kind: str, note: str, origin: Origin) -> AccessRequest:
    """Ask staff for admission or for room; asking again while a request waits returns that request."""
    if kind not in AccessRequest.Kind.values:
        raise PolicyError(f"Unknown kind of request {kind!r}.")
    note = clean_note(note)
    if kind == AccessRequest.Kind.ADMISSION:
        refusal = admission_refusal(user)
        if refusal is None or not refusal.can_request:
            raise InvalidTransitionError(refusal.message if refusal else "Your account may issue certificates already.")
    elif zone_room(get_zone_id()) > 0:
        raise InvalidTransitionError("The zone has room: make your certificate, no request is needed.")
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        waiting = pending_request(user, kind)
        if waiting is not None:
            return waiting
        request = AccessRequest.objects.create(user=user, kind=kind, note=note)
        audit(AuditEvent.Action.ACCESS_REQUESTED, origin, detail={"request_id": request.pk, "kind": kind})
        transaction.on_commit(lambda: notify_staff_of_request(request))
    return request


def access_request_decide(*, request: AccessRequest, approve: bool, origin: Origin) -> bool:
    """Staff's decision; False when the request was decided already (by someone else, say)."""
    status = AccessRequest.Status.APPROVED if approve else AccessRequest.Status.REFUSED
    with transaction.atomic():
        decided = AccessRequest.objects.filter(pk=request.pk, status=AccessRequest.Status.PENDING).update(
            status=status, decided_at=timezone.now(), decided_by=origin.actor
        )
        if not decided:
            return False
        request.refresh_from_db()
        audit(
            AuditEvent.Action.ACCESS_DECIDED,
            origin,
            detail={"request_id": request.pk, "kind": request.kind, "user_id": request.user_id, "decision": status},
        )
        transaction.on_commit(lambda: notify_user_of_decision(request))
    return True


def clean_note(note: str) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise PolicyError(f"The note is longer than {MAX_NOTE_LENGTH} characters.")
    if has_control_characters(note, allowed="\n\r\t"):
        raise PolicyError("The note contains control characters.")
    return note


def notify_staff_of_request(request: AccessRequest) -> None:
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    recipients = list(staff.values_list("email", flat=True))
    if not recipients:
        logger.warning("Access request %s waits, but no active staff account has an email address", request.pk)
        return
    context = {"request": request, "queue_url": f"{settings.PORTAL_BASE_URL}{reverse(ADMIN_QUEUE)}"}
    body = render_to_string("certificates/email/access_requested.txt", context)
    _send_quietly(f"{request.get_kind_display()} asked by {request.user.email}", body, recipients)


def notify_user_of_decision(request: AccessRequest) -> None:
    if not request.user.email:
        return
    context = {"request": request, "dashboard_url": f"{settings.PORTAL_BASE_URL}{reverse('certificates:dashboard')}"}
    body = render_to_string("certificates/email/access_decided.txt", context)
    _send_quietly(f"Your request: {request.get_status_display().lower()}", body, [request.user.email])


def _send_quietly(subject: str, body: str, recipients: list[str]) -> None:
    # The request is recorded either way and shows in the admin queue; a mail server's hiccup must not undo it.
    try:
        send_mail(subject, body, None, recipients)
    except Exception:
        logger.exception("Could not send %r to %d recipient(s)", subject, len(recipients))


# -- API tokens ----------------------------------------------------------------------------------------------


def api_token_create(
    *,
    user: AbstractBaseUser,
    name: str,
    origin: Origin,
    days: int | None = None,
    scope: str = ApiToken.Scope.READ_WRITE,
) -> tuple[ApiToken, str]:
    """Make a token; the clear text is returned once and never stored."""
    name = clean_name(name, what="token")
    lifetime = _token_lifetime(days)
    if scope not in ApiToken.Scope.values:
        raise PolicyError("A token is either read-only or read-write.")
    secret = ApiToken.generate()
    token = ApiToken.objects.create(
        owner=user,
        name=name,
        token_sha256=ApiToken.digest(secret),
        hint=secret[: len(ApiToken.PREFIX) + 4],
        expires_at=timezone.now() + lifetime,
        scope=scope,
    )
    audit(
        AuditEvent.Action.TOKEN_CREATED,
        origin,
        token=token,
        detail={"name": name, "scope": scope, "days": lifetime.days},
    )
    return token, secret


def _token_lifetime(days: int | None) -> timedelta:
    if days is None:
        days = settings.API_TOKEN_DEFAULT_DAYS
    maximum = settings.API_TOKEN_MAX_DAYS
    if not 1 <= days <= maximum:
        raise PolicyError(f"A token lasts from 1 to {maximum} days; {days} is not allowed.")
    return timedelta(days=days)


def api_token_revoke(*, token: ApiToken, origin: Origin) -> None:
    if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit(AuditEvent.Action.TOKEN_REVOKED, origin, token=token, detail={"name": token.name})


def api_token_authenticate(secret: str, *, for_write: bool = True) -> AbstractBaseUser | None:
    """The owner of a live token, or None (unknown, revoked, expired, deactivated owner).

    A read-only token used for a write raises TokenScopeError: the caller is known, but not allowed.
    """
    if not secret.startswith(ApiToken.PREFIX):
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("owner")
        .filter(token_sha256=ApiToken.digest(secret), revoked_at__isnull=True, expires_at__gt=now)
        .first()
    )
    if token is None or not token.owner.is_active:
        return None
    if for_write and token.is_read_only:
        raise TokenScopeError("This token is read-only; make a read-write token to change anything.")
    # At most one write a minute per token: last_used_at is informative, not a log.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.owner


# -- certificates made outside the portal (admin: Unknown certificates) ---------------------------------------

ALREADY_IN_THE_PORTAL = (
    "This certificate is one of the portal's already (adopted meanwhile); the next reconciliation removes it "
    "from the unknown certificates. Manage it in the Certificates list."
)
GONE_FROM_THE_LIST = "This certificate was adopted or left the zone meanwhile; reload the list."


def unknown_certificate_adopt(*, unknown: UnknownCertificate, owner: AbstractBaseUser, origin: Origin) -> Certificate:
    """Give a certificate made outside the portal (Cloudflare's dashboard) to `owner`, as if they had issued it.

    Staff decide here, so the admission policy does not apply; the owner's maximum does, because slots are a
    quota and an owner must be able to manage all they hold. Everything recorded is read from the certificate
    Cloudflare returns now (the fingerprint from its DER), not from the listing the row came from.
    """
    if not owner.is_active:
        raise PolicyError(f"The account {owner} is deactivated; adopt the certificate for an active account.")
    issued = _call_cloudflare(lambda client: client.get_client_certificate(unknown.zone_id, unknown.cloudflare_id))
    if issued.status.value not in Certificate.USABLE:
        raise InvalidTransitionError(
            f"Cloudflare has this certificate {issued.status.value.replace('_', ' ')}: "
            "a revoked certificate cannot be adopted."
        )
    facts = _adoptable_facts(unknown, issued)
    with transaction.atomic():
        # The owner's row lock orders this against their own issuance, as in _reserve_slot.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        _check_room_to_adopt(owner)
        certificate = _claim_unknown(unknown, issued, facts, owner)
        audit(
            AuditEvent.Action.ADOPTED_BY_STAFF,
            origin,
            certificate=certificate,
            new=certificate.status,
            detail={
                "cloudflare_id": issued.id,
                "fingerprint_sha256": facts.fingerprint_sha256,
                "owner_id": owner.pk,
                "first_seen_at": unknown.first_seen_at.isoformat(),
            },
        )
        _firewall_changed(certificate.zone_id)
    return certificate


def _adoptable_facts(unknown: UnknownCertificate, issued: ClientCertificate) -> CertificateFacts:
    try:
        facts = certificate_facts(issued.certificate, policy=get_policy())
    except CSRError as exc:
        raise PolicyError(f"This certificate cannot be adopted: {exc}") from exc
    reported = {issued.fingerprint_sha256, unknown.fingerprint_sha256} - {""}
    if reported != {facts.fingerprint_sha256} and reported:
        raise PolicyError(
            "The certificate Cloudflare returns does not have the fingerprint it reports (or the list showed); "
            "nothing was adopted."
        )
    if facts.not_after <= timezone.now():
        raise InvalidTransitionError("This certificate has expired; there is nothing left to adopt.")
    return facts


def _check_room_to_adopt(owner: AbstractBaseUser) -> None:
    held, maximum = held_by(owner), get_policy().max_active_per_user
    if held >= maximum:
        raise QuotaError(
            f"{owner} already holds {held} certificates, the most allowed (CERTIFICATE_MAX_ACTIVE_PER_USER). "
            "They must revoke one first; nothing was adopted."
        )


def _claim_unknown(
    unknown: UnknownCertificate, issued: ClientCertificate, facts: CertificateFacts, owner: AbstractBaseUser
) -> Certificate:
    """Replace the unknown row by the owner's Certificate, in the caller's transaction."""
    # Deleting the row is the compare-and-set: of two admins adopting it at once, one deletes it, the other 0 rows.
    deleted, _ = UnknownCertificate.objects.filter(pk=unknown.pk, cloudflare_id=issued.id).delete()
    if not deleted:
        raise InvalidTransitionError(GONE_FROM_THE_LIST)
    try:
        with transaction.atomic():
            return Certificate.objects.create(
                owner=owner,
                name=_adopted_name(facts.common_name),
                zone_id=unknown.zone_id,
                status=issued.status.value,
                cloudflare_id=issued.id,
                csr="",  # made outside the portal: there is no CSR to keep
                public_key_sha256=facts.public_key_sha256,
                key_type=facts.key_type.id,
                common_name=facts.common_name[:64],  # X.509's upper bound for a CN; the field's too
                validity_days=max(1, round((facts.not_after - facts.not_before) / timedelta(days=1))),
                certificate_pem=issued.certificate,
                fingerprint_sha256=facts.fingerprint_sha256,
                serial_number=facts.serial_number,
                issued_on=facts.not_before,
                expires_on=facts.not_after,
            )
    except IntegrityError as exc:
        # (zone_id, cloudflare_id) is unique: the certificate is the portal's already, and this row is stale
        # (a reconciliation that listed the zone before an adoption committed wrote it back). The caller's
        # transaction rolls the deletion back.
        raise InvalidTransitionError(ALREADY_IN_THE_PORTAL) from exc


def _adopted_name(common_name: str) -> str:
    printable = "".join(char for char in common_name if not has_control_characters(char)).strip()
    return f"adopted: {printable or 'certificate'}"[:MAX_NAME_LENGTH]


def unknown_certificate_revoke(*, unknown: UnknownCertificate, origin: Origin, reason: str) -> UnknownCertificate:
    """Revoke at Cloudflare a certificate the portal did not issue; its row keeps Cloudflare's new status."""
    reason = clean_note(reason)
    if not reason:
        raise PolicyError("Give a reason for the revocation; it goes into the audit log.")
    current = UnknownCertificate.objects.filter(pk=unknown.pk).first()
    if current is None:
        raise InvalidTransitionError(GONE_FROM_THE_LIST)
    if Certificate.objects.filter(zone_id=current.zone_id, cloudflare_id=current.cloudflare_id).exists():
        raise InvalidTransitionError(ALREADY_IN_THE_PORTAL)
    if current.status not in Certificate.USABLE:
        raise InvalidTransitionError(f"Cloudflare has this certificate {current.status.replace('_', ' ')} already.")
    result = _call_cloudflare(lambda client: client.revoke_client_certificate(current.zone_id, current.cloudflare_id))
    # Compare-and-set: a reconciliation that saw a newer status meanwhile keeps it.
    UnknownCertificate.objects.filter(pk=current.pk, status=current.status).update(status=result.status.value)
    audit(
        AuditEvent.Action.UNKNOWN_REVOKED,
        origin,
        old=current.status,
        new=result.status.value,
        detail={
            "cloudflare_id": current.cloudflare_id,
            "fingerprint_sha256": current.fingerprint_sha256,
            "common_name": current.common_name,
            "reason": reason,
        },
    )
    _firewall_changed(current.zone_id)
    current.refresh_from_db()
    return current


# -- audit ---------------------------------------------------------------------------------------------------


def audit(
    action: str,
    origin: Origin,
    *,
    certificate: Certificate | None = None,
    token: ApiToken | None = None,
    old: str = "",
    new: str = "",
    detail: dict | None = None,
) -> AuditEvent:
    actor = origin.actor if origin.actor is not None and origin.actor.is_authenticated else None
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        certificate=certificate,
        token=token,
        remote_addr=origin.remote_addr or None,
        old_status=old,
        new_status=new,
        detail=detail or {},
    )
