"""A portal CA ready to issue, for tests: made by the service, marked trusted as an upload would, made the zone's
issuer. (Uploading itself is tested against the emulator in tests/certificates/test_authorities.py.)"""

from __future__ import annotations

from certificates import services
from certificates.models import CertificateAuthority, Zone
from certificates.services.authorities import authority_create

ZONE = "0" * 32


def trusted_portal_ca(*, name: str = "Portal CA", algorithm: str = "ec-p256", zone_id: str = ZONE, issuer: bool = True):
    authority = authority_create(name=name, algorithm=algorithm, validity_days=3650, origin=services.Origin(actor=None))
    CertificateAuthority.objects.filter(pk=authority.pk).update(status=CertificateAuthority.Status.TRUSTED)
    authority.refresh_from_db()
    if issuer:
        Zone.objects.update_or_create(zone_id=zone_id, defaults={"issuer": authority})
    return authority
