"""Access requests: admission to the portal, and room in a full zone; staff decide."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from certificates.admission import admission_refusal, pending_request, zone_room
from certificates.cloudflare_client import get_zone_id
from certificates.models import AccessRequest, AuditEvent
from certificates.services.audit import Origin, audit
from certificates.services.cleaning import clean_note
from certificates.services.errors import InvalidTransitionError, PolicyError

logger = logging.getLogger(__name__)

ADMIN_QUEUE = "admin:certificates_accessrequest_changelist"


def access_request_create(*, user: User, kind: str, note: str, origin: Origin) -> AccessRequest:
    """Ask staff for admission or for room; asking again while a request waits returns that request."""
    if kind not in AccessRequest.Kind.values:
        raise PolicyError(f"Unknown kind of request {kind!r}.")
    note = clean_note(note)
    if kind == AccessRequest.Kind.ADMISSION:
        refusal = admission_refusal(user)
        if refusal is None or not refusal.can_request:
            raise InvalidTransitionError(refusal.message if refusal else "Your account may issue certificates already.")
    elif (room := zone_room(get_zone_id())) is None or room > 0:
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
