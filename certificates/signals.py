"""One signal, because the user model and its admin are Django's: deactivating a user must reach the firewall.

A deactivated user's certificates go into the deny rules (DESIGN.md), so the sync runs after the commit.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_save
from django.dispatch import receiver

from certificates.models import Certificate


@receiver(pre_save, sender=get_user_model())
def queue_firewall_sync_on_activation_change(sender: type, instance: Any, **kwargs: Any) -> None:
    if instance.pk is None:
        return
    was_active = sender.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    if was_active is None or was_active == instance.is_active:
        return
    from certificates.tasks import request_firewall_sync

    zones = Certificate.objects.filter(owner_id=instance.pk).values_list("zone_id", flat=True).distinct()
    for zone_id in zones:
        request_firewall_sync(zone_id)
