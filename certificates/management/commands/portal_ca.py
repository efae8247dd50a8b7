"""python manage.py portal_ca list | upload ID | issuer (ID | managed) | remove ID [--force]

The life of a portal CA after create_ca or import_ca (README, "Issuers"): upload it to Cloudflare with the API
hostnames associated, make it (or Cloudflare's managed CA) the zone's issuer, remove it from Cloudflare.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from certificates.management.commands import _portal_ca
from certificates.models import CertificateAuthority, Zone
from certificates.services import authorities

MANAGED = "managed"


class Command(BaseCommand):
    help = "List portal CAs; upload one, make it (or Cloudflare's managed CA) the issuer, or remove it."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="every portal CA, its status, certificates in use and zone")
        upload = actions.add_parser("upload", help="upload to Cloudflare and associate PORTAL_API_HOSTNAMES")
        upload.add_argument("id", type=int)
        issuer = actions.add_parser("issuer", help="make the CA the zone's issuer, or `managed` for Cloudflare's")
        issuer.add_argument("id", help="a portal CA's id, or `managed`")
        remove = actions.add_parser("remove", help="remove the hostname associations, then the upload")
        remove.add_argument("id", type=int)
        remove.add_argument(
            "--force", action="store_true", help="even while certificates it signed are in use (they stop working)"
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            self._list()
        elif action == "upload":
            _portal_ca.upload(self, _authority(options["id"]))
        elif action == "issuer":
            chosen = options["id"]
            _portal_ca.make_issuer(self, None if chosen == MANAGED else _authority(chosen))
        else:
            ca = _portal_ca.refused_as_command_error(
                lambda: authorities.authority_remove(
                    authority=_authority(options["id"]), origin=_portal_ca.CONSOLE, force=options["force"]
                )
            )
            self.stdout.write(f"Removed from Cloudflare: {_portal_ca.describe(ca)}.")

    def _list(self) -> None:
        now = timezone.now()
        issuers = dict(Zone.objects.filter(issuer__isnull=False).values_list("issuer_id", "zone_id"))
        cas = CertificateAuthority.objects.order_by("pk")
        for ca in cas:
            in_use = authorities.authority_certificates_in_use(ca, now=now).count()
            zone = f", issuer of zone {issuers[ca.pk]}" if ca.pk in issuers else ""
            self.stdout.write(f"{_portal_ca.describe(ca)}, {in_use} certificate(s) in use{zone}")
        if not cas:
            self.stdout.write("No portal CA: python manage.py create_ca --name N, or import_ca.")


def _authority(value: int | str) -> CertificateAuthority:
    try:
        return CertificateAuthority.objects.get(pk=int(value))
    except (ValueError, CertificateAuthority.DoesNotExist):
        raise CommandError(f"No portal CA has the id {value!r}; python manage.py portal_ca list shows them.") from None
