"""Receivers for what happens to accounts outside this app's code (Django's user admin, allauth's sign-up).

A deactivated user's certificates go into the deny rules (DESIGN.md), so the sync runs after the commit, and those
a portal CA signed go on hold in its CRL.
With PORTAL_ADMISSION=approval a new account joins the staff's queue at sign-up, with nothing to click.
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_signed_up
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models.signals import pre_save
from django.dispatch import receiver

from certificates import admission, services
from certificates.enqueue import request_firewall_sync
from certificates.models import AccessRequest, Certificate
from certificates.services.crls import crl_request_refresh
from certificates.views_helpers import origin_of


@receiver(pre_save, sender=get_user_model())
def queue_firewall_sync_on_activation_change(sender: type[User], instance: User, **kwargs: Any) -> None:
    if instance.pk is None:
        return
    was_active = sender.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    if was_active is None or was_active == instance.is_active:
        return
    zones = Certificate.objects.filter(owner_id=instance.pk).values_list("zone_id", flat=True).distinct()
    for zone_id in zones:
        request_firewall_sync(zone_id)
    # A deactivated owner's portal-CA certificates go on hold in their CAs' CRLs, and come off it on activation.
    authorities = (
        Certificate.objects.filter(owner_id=instance.pk, status__in=Certificate.USABLE, authority__isnull=False)
        .values_list("authority_id", flat=True)
        .distinct()
    )
    crl_request_refresh(authority_ids=[authority_id for authority_id in authorities if authority_id is not None])


@receiver(user_signed_up)
def ask_for_admission_at_sign_up(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    if settings.PORTAL_ADMISSION == admission.APPROVAL and not user.is_staff:
        services.access_request_create(user=user, kind=AccessRequest.Kind.ADMISSION, note="", origin=origin_of(request))
