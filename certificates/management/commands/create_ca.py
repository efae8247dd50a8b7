"""python manage.py create_ca --name N [--algorithm ec-p256] [--validity-days 1825] [--upload] [--make-issuer]

Makes a portal CA (README, "Issuers"); its private key is stored encrypted with PORTAL_CA_ENCRYPTION_KEY and never
printed. Without that setting it refuses in one line that names it and how to make a key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from certificates.authority import pki
from certificates.management.commands import _portal_ca
from certificates.services import authorities


class Command(BaseCommand):
    help = "Create a portal CA (its key stored encrypted, never shown); optionally upload it and make it the issuer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="the CA's common name")
        parser.add_argument(
            "--algorithm", choices=list(pki.ALGORITHMS), default=pki.DEFAULT_ALGORITHM, help="the CA's key"
        )
        parser.add_argument(
            "--validity-days",
            type=int,
            default=authorities.DEFAULT_VALIDITY_DAYS,
            help=f"from {pki.MIN_CA_VALIDITY_DAYS} to {pki.MAX_CA_VALIDITY_DAYS}",
        )
        parser.add_argument("--upload", action="store_true", help="upload it to Cloudflare and associate the hosts")
        parser.add_argument("--make-issuer", action="store_true", help="make it the zone's issuer (implies --upload)")

    def handle(
        self,
        *args: Any,
        name: str,
        algorithm: str,
        validity_days: int,
        upload: bool,
        make_issuer: bool,
        **options: Any,
    ) -> None:
        ca = _portal_ca.refused_as_command_error(
            lambda: authorities.authority_create(
                name=name, algorithm=algorithm, validity_days=validity_days, origin=_portal_ca.CONSOLE
            )
        )
        self.stdout.write(f"Created portal CA {_portal_ca.describe(ca)}. Its private key is stored encrypted.")
        _portal_ca.follow_up(self, ca, upload_it=upload, make_it_issuer=make_issuer)
