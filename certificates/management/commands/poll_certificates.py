"""python manage.py poll_certificates: one synchronous pass over certificates in flight at Cloudflare."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from certificates.cloudflare_client import get_zone_id
from certificates.enqueue import request_firewall_sync
from certificates.services.lifecycle import certificates_poll
from cloudflare.errors import CloudflareError


class Command(BaseCommand):
    help = "List pending_revocation / pending_reactivation certificates at Cloudflare and update the portal."

    def handle(self, *args: Any, **options: Any) -> None:
        zone_id = get_zone_id()
        try:
            result = certificates_poll(zone_id=zone_id)
        except CloudflareError as exc:
            raise CommandError(f"Cloudflare: {exc}") from exc
        for change in result.changes:
            self.stdout.write(f"certificate {change.certificate_id}: {change.old} -> {change.new}")
        if result.changes:
            request_firewall_sync(zone_id)
        self.stdout.write(f"{result.pending} in flight, {len(result.changes)} changed.")
