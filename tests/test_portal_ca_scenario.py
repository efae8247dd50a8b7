"""Issue #11's "Done when", end to end on the emulator: an admin creates a portal CA in the admin and switches the
zone to it; users then hold more than the managed CA's 100 certificates in the zone; one is revoked, and both the
emulator's HTTPS edge and an origin checking the CRL refuse it while the others still pass."""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from django.urls import reverse

from certificates.firewall.sync import firewall_sync
from certificates.models import Certificate, CertificateAuthority, Zone
from cloudflare_emulator import Emulator
from cloudflare_emulator.edge_server import Edge
from tests.conftest import make_user
from tests.emulator.certificates import Issued
from tests.support.accounts import signed_in
from tests.support.api import issue_via_api
from tests.support.edge_client import Client, serving_edge
from tests.support.origin import Origin, ask, server_identity
from tests.support.pki import make_key, policy_csr

ZONE = "0" * 32
ACCOUNT = "a" * 32
ADMIN_CAS = "/admin/certificates/certificateauthority/"
USERS, EACH = 35, 3  # 105 certificates: past the managed CA's 100 per zone

pytestmark = pytest.mark.django_db


@pytest.fixture
def edge(emulator: Emulator, tmp_path: Path) -> Iterator[Edge]:
    with serving_edge(emulator, ZONE, tmp_path) as edge:
        yield edge


def test_past_100_certificates_with_a_portal_ca_and_a_revocation_the_edge_and_origins_enforce(
    emulator, edge, charlie, api, client, settings, tmp_path
):
    settings.CLOUDFLARE_ACCOUNT_ID = ACCOUNT
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = EACH

    # An admin creates the CA, uploads it and makes it the zone's issuer, in the admin.
    staff = signed_in(charlie)
    staff.post(f"{ADMIN_CAS}add/", {"name": "API clients", "algorithm": "ec-p256", "validity_days": "1825"})
    authority = CertificateAuthority.objects.get()
    staff.post(f"{ADMIN_CAS}{authority.pk}/upload/")
    staff.post(f"{ADMIN_CAS}{authority.pk}/issuer/")
    assert Zone.objects.get(zone_id=ZONE).issuer == authority

    # Users issue through the API: more than the managed CA's quota, with no Cloudflare create call.
    issued: list[tuple[Certificate, Issued]] = []
    for number in range(USERS):
        user = make_user(f"developer{number}")
        for _ in range(EACH):
            key = make_key()
            response = issue_via_api(api, user, csr=policy_csr(user, key=key))
            assert response.status_code == 201, response.content
            certificate = Certificate.objects.get(pk=response.json()["id"])
            issued.append(
                (certificate, Issued(x509.load_pem_x509_certificate(certificate.certificate_pem.encode()), key))
            )
    assert Certificate.objects.filter(zone_id=ZONE, status=Certificate.Status.ACTIVE).count() == USERS * EACH > 100
    assert not [call for call in emulator.request_log if "client_certificates" in call.path]
    firewall_sync(zone_id=ZONE)

    # One is revoked by its owner; the rules follow at the next sync.
    (revoked, revoked_key), *others = issued
    owner_api = api.as_user(revoked.owner)
    assert owner_api.post(f"/certificates/{revoked.pk}/revoke", {"reason": "laptop stolen"}).status_code == 202
    firewall_sync(zone_id=ZONE)

    # The edge: the revoked certificate is refused, the others pass, no certificate is refused.
    at_the_edge = Client(edge.server.port, edge.ca.path, tmp_path)
    assert at_the_edge.call(certificate=revoked_key).status == 403
    assert at_the_edge.call().status == 403
    for _, key in random.Random(11).sample(others, 5):
        assert at_the_edge.call(certificate=key).status == 200

    # An origin that checks the CRL: the same.
    crl = client.get(reverse("certificates:crl_pem", args=[authority.pk])).content.decode()
    identity = server_identity(tmp_path)
    origin = Origin(identity, authority.certificate_pem, crl)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ask(origin, tmp_path, revoked.certificate_pem, revoked_key.key)
    origin.thread.join(5)
    assert "certificate revoked" in origin.refusal
    certificate, kept = others[-1]
    accepted = ask(Origin(identity, authority.certificate_pem, crl), tmp_path, certificate.certificate_pem, kept.key)
    assert accepted.startswith(b"hello ")
