"""The firewall sync with a portal CA, against the emulator: what it reads from the database and what the rules it
pushes decide for real certificates the CA signed (their serial and issuer key identifier read from the X.509).

The portal CA's issuance and revocation are written elsewhere; these tests make the rows directly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from django.utils import timezone

from certificates import services
from certificates.authority import pki, serials
from certificates.cloudflare_client import get_cloudflare_client
from certificates.firewall.status import sync_trouble
from certificates.firewall.sync import firewall_inputs, firewall_sync
from certificates.models import AllowlistEntry, Certificate, CertificateAuthority, FirewallState, OwnerSerialTag
from certificates.services import authorities
from certificates.services.authorities import authority_create, authority_signing_key, zone_with_marker
from cloudflare_emulator.evaluator import Request
from tests.conftest import make_user
from tests.firewall.test_compiler import blocked
from tests.support.pki import make_key, policy_csr

ZONE = "0" * 32
API = "api.example.com"
PREFIX = "mtls_portal_"


@pytest.fixture(autouse=True)
def firewall_settings(settings):
    settings.PORTAL_API_HOSTNAMES = [API]
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 20
    settings.PORTAL_CA_ENCRYPTION_KEY = Fernet.generate_key().decode()


@pytest.fixture
def ca(charlie) -> CertificateAuthority:
    return trusted_ca("Portal CA", charlie)


def trusted_ca(name: str, staff) -> CertificateAuthority:
    authority = authority_create(name=name, algorithm="ec-p256", validity_days=365, origin=services.Origin(actor=staff))
    CertificateAuthority.objects.filter(pk=authority.pk).update(status=CertificateAuthority.Status.TRUSTED)
    authority.refresh_from_db()
    return authority


@dataclass
class Signed:
    """A certificate a portal CA signed, as the portal records it and as the edge sees it."""

    row: Certificate
    certificate: x509.Certificate

    def at(self, address: str, host: str = API) -> Request:
        """The request the edge sees: serial and issuer key identifier as the rule fields show them (FACTS.md §6)."""
        authority_key_id = self.certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        return Request(
            host=host,
            ip=ipaddress.ip_address(address),
            fingerprint=self.certificate.fingerprint(hashes.SHA256()).hex(),
            serial=format(self.certificate.serial_number, "X"),
            issuer_ski=(authority_key_id.key_identifier or b"").hex().upper(),
        )


def tag_of(user) -> str:
    tag, _ = OwnerSerialTag.objects.get_or_create(user=user, defaults={"tag": serials.new_tag()})
    return tag.tag


def sign(
    authority: CertificateAuthority,
    owner,
    *,
    status: str = Certificate.Status.ACTIVE,
    days: int = 30,
    marker: str | None = None,
    tag: str | None = None,
) -> Signed:
    """Sign a client certificate with the portal CA and record it as issuance would (serial in uppercase hex)."""
    ca_certificate = x509.load_pem_x509_certificate(authority.certificate_pem.encode())
    serial = serials.new_serial(marker or zone_with_marker(ZONE).serial_marker, tag or tag_of(owner))
    now = timezone.now()
    certificate = pki.sign_client_certificate(
        authority=ca_certificate,
        key=authority_signing_key(authority),
        public_key=make_key().public_key(),
        profile=pki.ClientProfile(
            subject=x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"portal-user-{owner.pk}")]),
            serial=serial,
            validity_days=days,
            crl_url="https://portal.example.com/crl",
        ),
        now=now,
    )
    row = Certificate.objects.create(
        owner=owner,
        name="laptop",
        zone_id=ZONE,
        authority=authority,
        status=status,
        csr="",
        public_key_sha256="0" * 64,
        key_type="ec",
        common_name=f"portal-user-{owner.pk}",
        validity_days=days,
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        serial_number=serials.serial_hex(serial),
        issued_on=now,
        expires_on=certificate.not_valid_after_utc,
        revoked_at=now if status == Certificate.Status.REVOKED else None,
    )
    return Signed(row, certificate)


def pushed():
    entrypoint = get_cloudflare_client().get_entrypoint(ZONE)
    return [rule for rule in entrypoint.rules if rule.ref.startswith(PREFIX)]


def refs() -> list[str]:
    return [rule.ref.removeprefix(PREFIX) for rule in pushed()]


def test_the_sync_pushes_the_portal_ca_rules_and_they_decide_for_real_certificates(emulator, ca, alice, bob):
    mine = [sign(ca, alice), sign(ca, alice)]
    theirs = sign(ca, bob)
    revoked = sign(ca, alice, status=Certificate.Status.REVOKED)
    AllowlistEntry.objects.create(owner=alice, network="192.0.2.0/24")
    AllowlistEntry.objects.create(owner=alice, network="2001:db8::/32")

    firewall_sync(zone_id=ZONE)

    assert refs() == ["base", "issuer", "deny_0", "allow_0", "bind_1"]
    rules = pushed()
    for signed in mine:
        assert not blocked(rules, signed.at("192.0.2.7"))
        assert not blocked(rules, signed.at("2001:db8::7"))
        assert blocked(rules, signed.at("198.51.100.7"))
        assert not blocked(rules, signed.at("198.51.100.7", host="www.example.com"))
    assert not blocked(rules, theirs.at("198.51.100.7")), "bob has no allowlist: from anywhere"
    assert blocked(rules, revoked.at("192.0.2.7")), "Cloudflare checks no revocation for an uploaded CA: we do"


def test_a_certificate_the_ca_signed_outside_the_portal_or_for_another_zone_is_blocked(emulator, ca, alice):
    """An imported intermediate may sign outside the portal, and validation is account-level: without this
    zone's marker in the serial, a certificate of a trusted portal CA does not pass."""
    zone = zone_with_marker(ZONE)
    other_marker = f"{int(zone.serial_marker, 16) ^ 1:08X}"
    outside = sign(ca, alice, marker=other_marker)
    inside = sign(ca, alice)

    firewall_sync(zone_id=ZONE)

    rules = pushed()
    assert blocked(rules, outside.at("192.0.2.7"))
    assert not blocked(rules, inside.at("192.0.2.7"))


def test_only_trusted_cas_count_and_a_certificate_of_another_issuer_needs_its_fingerprint(emulator, ca, alice, charlie):
    untrusted = authority_create(
        name="Not uploaded", algorithm="ec-p256", validity_days=365, origin=services.Origin(actor=charlie)
    )
    stranger = sign(untrusted, alice)  # as if Cloudflare verified it: it is not on any list
    revoked_elsewhere = sign(untrusted, alice, status=Certificate.Status.REVOKED)
    managed = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="managed", origin=services.Origin(actor=alice)
    )

    inputs = firewall_inputs(zone_id=ZONE)

    assert inputs.portal_issuers == (ca.subject_key_identifier,)
    assert revoked_elsewhere.row.serial_number not in inputs.denied_serials
    assert inputs.allowed_fingerprints == (managed.fingerprint_sha256,), "portal-CA certificates are not listed"
    firewall_sync(zone_id=ZONE)
    rules = pushed()
    assert blocked(rules, stranger.at("192.0.2.7"))
    managed_request = Request(API, ipaddress.ip_address("192.0.2.7"), fingerprint=managed.fingerprint_sha256)
    assert not blocked(rules, managed_request)


def test_what_must_not_pass_is_denied_and_what_expired_drops_out(emulator, ca, alice, bob):
    usable = sign(ca, alice)
    pending = sign(ca, alice, status=Certificate.Status.PENDING_REVOCATION)
    revoked = sign(ca, alice, status=Certificate.Status.REVOKED)
    deactivated = sign(ca, bob)
    expired = sign(ca, alice, status=Certificate.Status.REVOKED)
    Certificate.objects.filter(pk=expired.row.pk).update(expires_on=timezone.now() - timedelta(days=1))
    bob.is_active = False
    bob.save()

    inputs = firewall_inputs(zone_id=ZONE)

    assert set(inputs.denied_serials) == {s.row.serial_number for s in (pending, revoked, deactivated)}
    assert usable.row.serial_number not in inputs.denied_serials
    firewall_sync(zone_id=ZONE)
    rules = pushed()
    for signed in (pending, revoked, deactivated):
        assert blocked(rules, signed.at("192.0.2.7"))
    assert not blocked(rules, usable.at("192.0.2.7"))


def test_a_users_prefix_binds_all_their_portal_certificates_and_the_managed_ones_by_fingerprint(emulator, ca, alice):
    managed = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="managed", origin=services.Origin(actor=alice)
    )
    portal = sign(ca, alice)
    AllowlistEntry.objects.create(owner=alice, network="192.0.2.0/24")

    (binding,) = firewall_inputs(zone_id=ZONE).bindings

    assert binding.serial_prefix == serials.owner_prefix(zone_with_marker(ZONE).serial_marker, tag_of(alice))
    assert binding.fingerprints == (managed.fingerprint_sha256,)
    firewall_sync(zone_id=ZONE)
    rules = pushed()
    managed_request = Request(API, ipaddress.ip_address("198.51.100.1"), fingerprint=managed.fingerprint_sha256)
    assert blocked(rules, managed_request)
    assert not blocked(rules, Request(API, ipaddress.ip_address("192.0.2.1"), fingerprint=managed.fingerprint_sha256))
    assert blocked(rules, portal.at("198.51.100.1"))
    assert not blocked(rules, portal.at("192.0.2.1"))


def test_a_certificate_outside_its_owners_prefix_is_still_bound_by_fingerprint(emulator, ca, alice):
    """No certificate should carry another tag than its owner's; if one does, the owner's networks still apply."""
    AllowlistEntry.objects.create(owner=alice, network="192.0.2.0/24")
    tag_of(alice)
    odd = sign(ca, alice, tag="00000000" if tag_of(alice) != "00000000" else "00000001")

    (binding,) = firewall_inputs(zone_id=ZONE).bindings

    # Her tag's prefix is bound anyway (tags are bound before their first certificate), and the odd one by fingerprint.
    assert binding.serial_prefix == zone_with_marker(ZONE).serial_marker + tag_of(alice)
    assert binding.fingerprints == (odd.row.fingerprint_sha256,)
    firewall_sync(zone_id=ZONE)
    assert blocked(pushed(), odd.at("198.51.100.1"))
    assert not blocked(pushed(), odd.at("192.0.2.1"))


def test_a_revocation_rewrites_one_rule(emulator, ca, alice, bob):
    signed = [sign(ca, alice), sign(ca, alice), sign(ca, bob)]
    AllowlistEntry.objects.create(owner=alice, network="192.0.2.0/24")
    firewall_sync(zone_id=ZONE)
    emulator.request_log.clear()

    Certificate.objects.filter(pk=signed[0].row.pk).update(status=Certificate.Status.REVOKED, revoked_at=timezone.now())
    plan = firewall_sync(zone_id=ZONE)

    assert [rule.ref for rule in plan.add] == [PREFIX + "deny_0"]
    assert not plan.update
    assert not plan.delete
    assert blocked(pushed(), signed[0].at("192.0.2.1"))
    assert not blocked(pushed(), signed[1].at("192.0.2.1"))


def test_reading_the_inputs_takes_the_same_queries_for_any_number_of_certificates(
    emulator, ca, alice, django_assert_num_queries
):
    users = [alice, *(make_user(f"user{i}") for i in range(8))]
    for index, user in enumerate(users):
        sign(ca, user)
        sign(ca, user, status=Certificate.Status.REVOKED)
        AllowlistEntry.objects.create(owner=user, network=f"198.51.100.{index}")
    services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="managed", origin=services.Origin(actor=alice)
    )

    with django_assert_num_queries(5):  # marker, usable certificates, denied serials, allowlists, trusted CAs
        inputs = firewall_inputs(zone_id=ZONE)

    assert len(inputs.bindings) == len(users)
    assert len(inputs.denied_serials) == len(users)


def test_a_zone_too_short_for_the_deny_rules_says_so(emulator, ca, alice, settings, charlie):
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 2
    sign(ca, alice, status=Certificate.Status.REVOKED)
    sign(ca, alice)

    plan = firewall_sync(zone_id=ZONE)

    assert refs() == ["base", "issuer"]
    assert plan.left_out.denied_serials == 1
    state = FirewallState.objects.get(zone_id=ZONE)
    assert state.left_out["denied_serials"] == 1
    trouble = sync_trouble(zone_id=ZONE)
    assert trouble is not None
    assert "1 denied portal-CA certificate(s), which still pass" in trouble.summary()


def test_a_users_first_portal_certificate_is_bound_to_their_networks_before_any_sync_after_it(
    emulator, ca, alice, charlie
):
    """The sync that follows an issuance takes seconds; the certificate must not pass from elsewhere meanwhile."""
    authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=services.Origin(actor=charlie))
    services.allowlist_set(
        user=alice, networks=["198.51.100.0/24"], origin=services.Origin(actor=alice), confirm_unreachable=True
    )
    firewall_sync(zone_id=ZONE)  # the allowlist's sync: before alice has any certificate

    key = make_key()
    row = services.certificate_issue(
        user=alice, csr=policy_csr(alice, key=key), validity_days=30, name="first", origin=services.Origin(alice)
    )
    first = Signed(row, x509.load_pem_x509_certificate(row.certificate_pem.encode()))
    rules = pushed()  # no sync since the issuance
    assert not blocked(rules, first.at("198.51.100.7"))
    assert blocked(rules, first.at("203.0.113.9"))


def test_a_zone_switched_to_a_portal_ca_binds_every_user_who_already_had_an_allowlist(emulator, ca, alice, charlie):
    AllowlistEntry.objects.create(owner=alice, network="198.51.100.0/24")  # set before portal CAs existed: no tag
    authorities.zone_set_issuer(zone_id=ZONE, authority=ca, origin=services.Origin(actor=charlie))
    firewall_sync(zone_id=ZONE)

    row = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=30, name="first", origin=services.Origin(alice)
    )
    first = Signed(row, x509.load_pem_x509_certificate(row.certificate_pem.encode()))
    assert blocked(pushed(), first.at("203.0.113.9"))
    assert not blocked(pushed(), first.at("198.51.100.7"))
