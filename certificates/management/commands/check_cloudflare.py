"""python manage.py check_cloudflare [--fix]: token, zone and permissions; mTLS on the API hostnames.

Each check makes one read call and reports what the token may not do, naming the permission it needs
(FACTS.md §10). With --fix, the API hostnames are added to the managed CA's hostname associations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloudflare.client import CloudflareClient
from cloudflare.errors import AuthenticationError, CloudflareError, NotFoundError, PermissionDeniedError
from portal.integrations import get_cloudflare_client


class Command(BaseCommand):
    help = "Check the Cloudflare token, zone and permissions, and mTLS on PORTAL_API_HOSTNAMES."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fix", action="store_true", help="associate the API hostnames with the managed CA")

    def handle(self, *args: Any, fix: bool, **options: Any) -> None:
        client = get_cloudflare_client()
        zone_id = settings.CLOUDFLARE_ZONE_ID
        where = "the built-in emulator" if settings.CLOUDFLARE_EMULATED else settings.CLOUDFLARE_API_BASE_URL
        self.stdout.write(f"Zone {zone_id} at {where}")
        failures = 0
        failures += self._check(
            "client certificates (Zone: SSL and Certificates)",
            lambda: client.list_client_certificates_page(zone_id, per_page=5),
        )
        failures += self._check("custom rules (Zone: Zone WAF)", lambda: client.get_entrypoint(zone_id))
        failures += self._check_hostnames(client, zone_id, fix=fix)
        if failures:
            raise CommandError(f"{failures} check(s) failed.")
        self.stdout.write(self.style.SUCCESS("All checks passed."))

    def _check(self, what: str, call: Callable[[], object]) -> int:
        try:
            call()
        except (AuthenticationError, PermissionDeniedError) as exc:
            self.stdout.write(self.style.ERROR(f"✗ {what}: the token may not read this ({exc})"))
            return 1
        except NotFoundError as exc:
            self.stdout.write(self.style.ERROR(f"✗ {what}: the zone was not found ({exc})"))
            return 1
        except CloudflareError as exc:
            self.stdout.write(self.style.ERROR(f"✗ {what}: {exc}"))
            return 1
        self.stdout.write(f"✓ {what}")
        return 0

    def _check_hostnames(self, client: CloudflareClient, zone_id: str, *, fix: bool) -> int:
        wanted = [name.lower() for name in settings.PORTAL_API_HOSTNAMES]
        if not wanted:
            self.stdout.write(self.style.ERROR("✗ PORTAL_API_HOSTNAMES is empty: nothing is protected"))
            return 1
        try:
            current = client.get_hostname_associations(zone_id).hostnames
        except CloudflareError as exc:
            self.stdout.write(self.style.ERROR(f"✗ hostname associations: {exc}"))
            return 1
        missing = [name for name in wanted if name not in current]
        if not missing:
            self.stdout.write(f"✓ mTLS is enabled on {', '.join(wanted)}")
            return 0
        if not fix:
            self.stdout.write(
                self.style.ERROR(f"✗ mTLS is not enabled on {', '.join(missing)}; run with --fix to enable it")
            )
            return 1
        try:
            # The PUT replaces the whole set (FACTS.md §4): keep what is there, add ours.
            client.put_hostname_associations(zone_id, [*current, *missing])
        except CloudflareError as exc:
            self.stdout.write(self.style.ERROR(f"✗ could not enable mTLS on {', '.join(missing)}: {exc}"))
            return 1
        self.stdout.write(self.style.SUCCESS(f"✓ mTLS enabled on {', '.join(missing)}"))
        return 0
