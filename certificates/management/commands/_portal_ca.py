"""What create_ca, import_ca and portal_ca share: the steps after a CA exists, and how they report.

A leading underscore keeps Django from taking this module for a command. Nothing here prints a key: the CA's
private key never leaves the services except encrypted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from certificates.authority import pki
from certificates.cloudflare_client import get_zone_id
from certificates.models import CertificateAuthority
from certificates.services import Origin, ServiceError, authorities

T = TypeVar("T")

# The operator at the console (the audit log records no user for commands).
CONSOLE = Origin(actor=None)


def refused_as_command_error(call: Callable[[], T]) -> T:
    """A service's refusal as one line and a non-zero exit."""
    try:
        return call()
    except ServiceError as exc:
        raise CommandError(exc.message) from None


def describe(ca: CertificateAuthority) -> str:
    algorithm = pki.ALGORITHMS.get(ca.key_algorithm, ca.key_algorithm)
    return (
        f"{ca.pk} “{ca.name}”: {ca.get_status_display().lower()}, {algorithm}, SKI {ca.subject_key_identifier}, "
        f"valid until {ca.not_after:%Y-%m-%d}"
    )


def upload(command: BaseCommand, ca: CertificateAuthority) -> CertificateAuthority:
    ca = refused_as_command_error(lambda: authorities.authority_upload(authority=ca, origin=CONSOLE))
    hostnames = ", ".join(settings.PORTAL_API_HOSTNAMES)
    command.stdout.write(f"Uploaded to Cloudflare ({ca.cloudflare_id}) and associated with {hostnames}.")
    return ca


def make_issuer(command: BaseCommand, ca: CertificateAuthority | None) -> None:
    change = refused_as_command_error(
        lambda: authorities.zone_set_issuer(zone_id=get_zone_id(), authority=ca, origin=CONSOLE)
    )
    command.stdout.write(change.summary())
    for note in change.notes:
        command.stdout.write(command.style.WARNING(note))


def follow_up(command: BaseCommand, ca: CertificateAuthority, *, upload_it: bool, make_it_issuer: bool) -> None:
    """--upload and --make-issuer of create_ca and import_ca; the issuer must be uploaded, so one implies the other."""
    if upload_it or make_it_issuer:
        ca = upload(command, ca)
    if make_it_issuer:
        make_issuer(command, ca)
