"""An origin that checks client certificates against the portal CA and its CRL, as the README shows: a real TLS
server (Python's `ssl`, VERIFY_CRL_CHECK_LEAF) and a real TLS client."""

from __future__ import annotations

import ssl

import pytest
from django.urls import reverse

from certificates import services
from tests.support.origin import Origin, ask, server_identity
from tests.support.pki import make_key, policy_csr
from tests.support.portal_ca import trusted_portal_ca

pytestmark = pytest.mark.django_db


def test_an_origin_checking_the_crl_accepts_a_portal_certificate_and_refuses_it_once_revoked(
    emulator, alice, client, tmp_path
):
    authority = trusted_portal_ca()
    key = make_key()
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice, key=key), validity_days=30, name="laptop", origin=services.Origin(alice)
    )
    identity = server_identity(tmp_path)

    def current_crl() -> str:
        return client.get(reverse("certificates:crl_pem", args=[authority.pk])).content.decode()

    accepted = ask(
        Origin(identity, authority.certificate_pem, current_crl()), tmp_path, certificate.certificate_pem, key
    )
    assert accepted == f"hello portal-user-{alice.pk}".encode()

    services.certificate_revoke(certificate=certificate, origin=services.Origin(alice))
    refreshed = Origin(identity, authority.certificate_pem, current_crl())  # the origin's periodic CRL refresh
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ask(refreshed, tmp_path, certificate.certificate_pem, key)
    refreshed.thread.join(5)
    assert "certificate revoked" in refreshed.refusal


def test_an_origin_refuses_a_certificate_from_another_ca(emulator, alice, client, tmp_path):
    authority = trusted_portal_ca()
    other = trusted_portal_ca(name="Someone else's CA", issuer=False)
    from certificates.models import Zone

    Zone.objects.filter(zone_id="0" * 32).update(issuer=other)
    key = make_key()
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice, key=key), validity_days=30, name="laptop", origin=services.Origin(alice)
    )
    crl = client.get(reverse("certificates:crl_pem", args=[authority.pk])).content.decode()
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ask(
            Origin(server_identity(tmp_path), authority.certificate_pem, crl),
            tmp_path,
            certificate.certificate_pem,
            key,
        )
