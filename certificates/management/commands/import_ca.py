"""python manage.py import_ca --name N --chain FILE --key FILE [--password-file FILE] [--upload] [--make-issuer]

Imports an existing intermediate (the chain file: the CA first, then its issuers) and its private key, for a
company with its own PKI. The key is stored encrypted with PORTAL_CA_ENCRYPTION_KEY; nothing of it is printed, in
errors either. Delete the key file once it is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.management.commands import _portal_ca
from certificates.services import authorities


class Command(BaseCommand):
    help = "Import an intermediate CA and its key; optionally upload it and make it the issuer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="a name for the CA in the portal")
        parser.add_argument("--chain", required=True, type=Path, help="PEM file: the CA, then its issuers")
        parser.add_argument("--key", required=True, type=Path, help="PEM file: the CA's private key")
        parser.add_argument("--password-file", type=Path, help="a file holding the key's password, if encrypted")
        parser.add_argument("--upload", action="store_true", help="upload it to Cloudflare and associate the hosts")
        parser.add_argument("--make-issuer", action="store_true", help="make it the zone's issuer (implies --upload)")

    def handle(
        self,
        *args: Any,
        name: str,
        chain: Path,
        key: Path,
        password_file: Path | None,
        upload: bool,
        make_issuer: bool,
        **options: Any,
    ) -> None:
        chain_pem, key_pem = _read(chain, "--chain"), _read(key, "--key")
        password = _read(password_file, "--password-file").rstrip("\r\n") if password_file else ""
        ca = _portal_ca.refused_as_command_error(
            lambda: authorities.authority_import(
                name=name, chain_pem=chain_pem, key_pem=key_pem, password=password, origin=_portal_ca.CONSOLE
            )
        )
        self.stdout.write(
            f"Imported portal CA {_portal_ca.describe(ca)}. Its private key is stored encrypted; delete {key}."
        )
        _portal_ca.follow_up(self, ca, upload_it=upload, make_it_issuer=make_issuer)


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # The reason (missing, not allowed, not text), never the content.
        raise CommandError(f"{option}: cannot read {path} ({type(exc).__name__}).") from None
