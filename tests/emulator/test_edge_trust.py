"""cert_verified against the CAs a hostname trusts (the managed CA, uploaded CAs through hostname associations),
and the cert_serial and cert_issuer_ski fields (FACTS.md §2, §4, §6)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509

from cloudflare_emulator import EdgeRequest, Emulator

from .certificates import Issued, make_ca, make_leaf
from .conftest import ACCOUNT, ZONE, Api, FakeClock, issue, make_csr

HOST = "api.example.com"
MTLS = f"/accounts/{ACCOUNT}/mtls_certificates"
ASSOCIATIONS = f"/zones/{ZONE}/certificate_authorities/hostname_associations"
EVALUATE = f"/__emulator__/zones/{ZONE}/evaluate"
ENTRYPOINT = f"/zones/{ZONE}/rulesets/phases/http_request_firewall_custom/entrypoint"


def at(clock: FakeClock) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(clock.now, tz=datetime.UTC)


def upload(api: Api, ca: Issued, *, is_ca: bool = True) -> str:
    response = api.post(MTLS, {"ca": is_ca, "certificates": ca.pem, "name": "company-ca"})
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["id"])


def associate(api: Api, hostnames: list[str], mtls_certificate_id: str | None = None) -> None:
    body: dict[str, Any] = {"hostnames": hostnames}
    if mtls_certificate_id is not None:
        body["mtls_certificate_id"] = mtls_certificate_id
    assert api.put(ASSOCIATIONS, body).status_code == 200


def seen(emulator: Emulator, certificate: str | None, host: str = HOST) -> dict[str, Any]:
    fields = emulator.inspect(ZONE, EdgeRequest(host=host, ip="192.0.2.1", certificate=certificate)).fields
    prefix = "cf.tls_client_auth.cert_"
    return {name.removeprefix(prefix): value for name, value in fields.items() if name.startswith(prefix)}


def managed_ski(emulator: Emulator) -> str:
    ca = x509.load_pem_x509_certificate(emulator.ca_certificate_pem.encode())
    return ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex().upper()


# --- uploaded CAs --------------------------------------------------------------------------------------


def test_an_uploaded_ca_associated_with_the_hostname_verifies_its_leaves(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    ca = make_ca("Company Client CA", now=at(clock))
    associate(api, [HOST], upload(api, ca))
    # A serial whose DER has a leading zero byte (high bit set): the field has no leading zeros.
    leaf = make_leaf(ca, now=at(clock), serial=0x80 << 144 | 0x0A)

    fields = seen(emulator, leaf.pem)

    assert fields["presented"] is True
    assert fields["verified"] is True
    assert fields["revoked"] is False  # never for an uploaded CA (FACTS.md §2)
    assert fields["serial"] == "80" + "0" * 35 + "A"  # 19 bytes; the DER holds 20
    assert fields["issuer_ski"] == ca.ski
    assert len(fields["issuer_ski"]) == 40


def test_an_uploaded_intermediate_verifies_the_leaves_it_signs(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    root = make_ca("Company Root", now=at(clock), days=3650)
    intermediate = make_ca("Company Issuing CA", now=at(clock), issuer=root)
    associate(api, [HOST], upload(api, intermediate))

    fields = seen(emulator, make_leaf(intermediate, now=at(clock)).pem)

    assert fields["verified"] is True
    assert fields["issuer_ski"] == intermediate.ski  # the direct issuer, not the root


def test_an_uploaded_ca_is_trusted_only_where_it_is_associated(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    ca = make_ca("Company Client CA", now=at(clock))
    ca_id = upload(api, ca)
    leaf = make_leaf(ca, now=at(clock)).pem
    assert seen(emulator, leaf)["verified"] is False  # uploaded, associated nowhere

    associate(api, ["admin.example.com"], ca_id)
    assert seen(emulator, leaf)["verified"] is False
    assert seen(emulator, leaf, host="admin.example.com")["verified"] is True

    associate(api, [], ca_id)
    assert seen(emulator, leaf, host="admin.example.com")["verified"] is False


def test_an_upload_without_ca_true_is_no_trust_anchor(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    ca = make_ca("Uploaded as a leaf", now=at(clock))
    associate(api, [HOST], upload(api, ca, is_ca=False))

    assert seen(emulator, make_leaf(ca, now=at(clock)).pem)["verified"] is False


def test_the_association_matches_the_host_header_without_port_case_or_trailing_dot(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    ca = make_ca("Company Client CA", now=at(clock))
    associate(api, [HOST], upload(api, ca))
    leaf = make_leaf(ca, now=at(clock)).pem

    assert seen(emulator, leaf, host="API.Example.com.:8443")["verified"] is True
    assert seen(emulator, leaf, host="api.example.com.evil.test")["verified"] is False


@pytest.mark.parametrize(
    ("ca_starts_days", "ca_days", "leaf_starts_days", "leaf_days"),
    [
        (-400, 365, -1, 30),  # the CA has expired, the leaf has not
        (-1, 365, -40, 30),  # the leaf has expired
        (-1, 365, 2, 30),  # the leaf is not valid yet
        (3, 365, -1, 30),  # the CA is not valid yet
    ],
)
def test_the_leaf_and_its_ca_must_both_be_within_their_validity(
    emulator: Emulator,
    api: Api,
    clock: FakeClock,
    ca_starts_days: int,
    ca_days: int,
    leaf_starts_days: int,
    leaf_days: int,
) -> None:
    now = at(clock)
    ca = make_ca("Company Client CA", now=now, starts=now + datetime.timedelta(days=ca_starts_days), days=ca_days)
    associate(api, [HOST], upload(api, ca))
    leaf = make_leaf(ca, now=now, starts=now + datetime.timedelta(days=leaf_starts_days), days=leaf_days)

    fields = seen(emulator, leaf.pem)

    assert fields["verified"] is False
    assert fields["issuer_ski"] == ""


def test_a_certificate_no_trusted_ca_signed_is_presented_with_its_serial_but_no_issuer(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    stranger = make_ca("Not uploaded", now=at(clock))
    leaf = make_leaf(stranger, now=at(clock))

    fields = seen(emulator, leaf.pem)

    assert (fields["presented"], fields["verified"], fields["revoked"]) == (True, False, False)
    assert fields["serial"] == format(leaf.certificate.serial_number, "X")
    assert fields["fingerprint_sha256"] != ""
    # Only a trusted issuer is known for certain; the leaf's own Authority Key Identifier would be the client's word.
    assert fields["issuer_ski"] == ""


def test_without_a_certificate_every_certificate_field_is_empty(emulator: Emulator) -> None:
    assert seen(emulator, None) == {
        "presented": False,
        "verified": False,
        "revoked": False,
        "fingerprint_sha256": "",
        "serial": "",
        "issuer_ski": "",
    }


# --- the managed CA --------------------------------------------------------------------------------------


def test_the_managed_ca_is_trusted_everywhere_until_its_hostnames_are_set(emulator: Emulator, api: Api) -> None:
    managed = issue(api, make_csr())["certificate"]
    assert seen(emulator, managed)["verified"] is True
    assert seen(emulator, managed, host="anything.example.net")["verified"] is True

    associate(api, ["admin.example.com"])  # without mtls_certificate_id: the managed CA's hostnames
    assert seen(emulator, managed)["verified"] is False
    assert seen(emulator, managed, host="admin.example.com")["verified"] is True

    associate(api, [])  # set to none: the managed CA is trusted on no hostname
    assert seen(emulator, managed, host="admin.example.com")["verified"] is False
    assert api.get(ASSOCIATIONS).json()["result"] == {"hostnames": []}

    associate(api, [HOST])
    assert seen(emulator, managed)["verified"] is True


def test_an_uploaded_ca_beside_the_managed_one_leaves_the_managed_ca_trusted(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    # FACTS.md §4: several CAs may be associated with one hostname.
    ca = make_ca("Company Client CA", now=at(clock))
    associate(api, [HOST], upload(api, ca))
    associate(api, [HOST])

    assert seen(emulator, issue(api, make_csr())["certificate"])["verified"] is True
    assert seen(emulator, make_leaf(ca, now=at(clock)).pem)["verified"] is True


def test_a_managed_certificate_shows_its_serial_and_the_managed_cas_key_identifier(
    emulator: Emulator, api: Api
) -> None:
    record = issue(api, make_csr())

    fields = seen(emulator, record["certificate"])

    assert fields["serial"] == record["serial_number"].upper().lstrip("0")
    assert fields["issuer_ski"] == managed_ski(emulator)


def test_the_evaluate_route_matches_rules_on_serial_and_issuer_ski(api: Api, clock: FakeClock) -> None:
    ca = make_ca("Company Client CA", now=at(clock))
    associate(api, [HOST], upload(api, ca))
    leaf = make_leaf(ca, now=at(clock))
    serial = format(leaf.certificate.serial_number, "X")
    pinned = f'cf.tls_client_auth.cert_serial eq "{serial}" and cf.tls_client_auth.cert_issuer_ski eq "{ca.ski}"'
    api.put(ENTRYPOINT, {"rules": [{"ref": "pinned", "action": "block", "expression": pinned}]})

    body = {"host": HOST, "ip": "192.0.2.1", "certificate": leaf.pem}
    other = {**body, "certificate": make_leaf(ca, now=at(clock)).pem}

    assert api.post(EVALUATE, body).json()["result"]["rule"]["ref"] == "pinned"
    assert api.post(EVALUATE, other).json()["result"] == {"outcome": "allowed", "rule": None}
