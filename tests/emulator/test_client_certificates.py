from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloudflare_emulator import Emulator

from .conftest import START, ZONE, Api, FakeClock, error_code, issue, make_api, make_csr

CERTS = f"/zones/{ZONE}/client_certificates"


def verify_signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> None:
    public_key = ca.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert certificate.signature_hash_algorithm is not None
    public_key.verify(
        certificate.signature,
        certificate.tbs_certificate_bytes,
        padding.PKCS1v15(),
        certificate.signature_hash_algorithm,
    )


@pytest.mark.parametrize("key_kind", ["ec", "rsa"])
def test_issuance_signs_the_csr_for_real(api: Api, emulator: Emulator, key_kind: str) -> None:
    csr = make_csr("alice", key_kind, O="Acme", OU="API", C="DE", ST="Berlin", L="Berlin")
    result = issue(api, csr, validity_days=90)

    certificate = x509.load_pem_x509_certificate(result["certificate"].encode())
    ca = x509.load_pem_x509_certificate(emulator.ca_certificate_pem.encode())
    verify_signed_by(certificate, ca)
    assert certificate.issuer == ca.subject
    request = x509.load_pem_x509_csr(csr.encode())
    assert certificate.subject == request.subject
    assert certificate.public_key() == request.public_key()

    der = certificate.public_bytes(serialization.Encoding.DER)
    assert result["fingerprint_sha256"] == hashlib.sha256(der).hexdigest()
    assert result["serial_number"] == format(certificate.serial_number, "x")
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    assert result["ski"] == ski
    assert result["signature"] == "SHA256WithRSA"
    assert (result["common_name"], result["organization"], result["organizational_unit"]) == ("alice", "Acme", "API")
    assert (result["country"], result["state"], result["location"]) == ("DE", "Berlin", "Berlin")
    assert result["csr"] == csr
    assert result["status"] == "active"
    assert result["validity_days"] == 90
    assert result["certificate_authority"]["name"].startswith("Cloudflare Managed CA for account ")
    assert len(result["id"]) == 36
    assert result["issued_on"] == datetime.datetime.fromtimestamp(START, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == datetime.timedelta(days=90)
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_absent_subject_fields_are_empty_strings(api: Api) -> None:
    result = issue(api, make_csr("only-cn"))
    assert result["organization"] == result["country"] == result["location"] == ""


def test_get_one_and_unknown_id(api: Api) -> None:
    created = issue(api, make_csr())
    assert api.get(f"{CERTS}/{created['id']}").json()["result"] == created
    missing = api.get(f"{CERTS}/5f0d3b7a-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert error_code(missing) == 1404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"validity_days": 30}, 1400),
        ({"csr": "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n"}, 1400),
        ({"csr": "not a csr", "validity_days": 30}, 1401),
        ({"csr": "CSR", "validity_days": 0}, 1402),
        ({"csr": "CSR", "validity_days": 3651}, 1402),
        ({"csr": "CSR", "validity_days": "30"}, 1402),
        ({"csr": 5, "validity_days": 30}, 1400),
    ],
)
def test_create_rejects_bad_input(api: Api, body: dict[str, object], code: int) -> None:
    if body.get("csr") == "CSR":
        body = {**body, "csr": make_csr()}
    response = api.post(CERTS, body, invalid_request="missing or mistyped field on purpose")
    assert response.status_code == 400
    assert error_code(response) == code


def test_create_rejects_a_csr_with_a_broken_signature(api: Api) -> None:
    csr = x509.load_pem_x509_csr(make_csr().encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    response = api.post(CERTS, {"csr": tampered, "validity_days": 30})
    assert response.status_code == 400
    assert error_code(response) == 1401
    assert "signature" in response.json()["errors"][0]["message"]


def test_quota_1445_and_revoking_frees_a_slot(clock: FakeClock, shared_csr: str) -> None:
    api = make_api(Emulator(token="test-token-123", clock=clock, zone_capacity=3))
    certificates = [issue(api, shared_csr) for _ in range(3)]
    refused = api.post(CERTS, {"csr": shared_csr, "validity_days": 30})
    assert refused.status_code == 400
    assert error_code(refused) == 1445
    assert "quota" in refused.json()["errors"][0]["message"]

    # FACTS §3: the slot is released at once, while the certificate is still pending_revocation.
    assert api.delete(f"{CERTS}/{certificates[0]['id']}").json()["result"]["status"] == "pending_revocation"
    issue(api, shared_csr)
    # Reactivating would take a slot back, which the full zone no longer has.
    again = api.patch(f"{CERTS}/{certificates[0]['id']}", {"reactivate": True})
    assert error_code(again) == 1445


def test_revocation_and_reactivation_follow_the_clock(api: Api, clock: FakeClock) -> None:
    cert_id = issue(api, make_csr())["id"]
    url = f"{CERTS}/{cert_id}"

    assert api.delete(url).json()["result"]["status"] == "pending_revocation"
    clock.advance(29)
    assert api.get(url).json()["result"]["status"] == "pending_revocation"

    reactivated = api.patch(url, {"reactivate": True})
    assert reactivated.json()["result"]["status"] == "pending_reactivation"
    clock.advance(29.9)
    assert api.get(url).json()["result"]["status"] == "pending_reactivation"
    clock.advance(0.1)
    assert api.get(url).json()["result"]["status"] == "active"

    api.delete(url)
    clock.advance(30)
    assert api.get(url).json()["result"]["status"] == "revoked"
    # DELETE again is idempotent: the certificate comes back unchanged.
    again = api.delete(url)
    assert again.status_code == 200
    assert again.json()["result"]["status"] == "revoked"


@pytest.mark.parametrize("advance", [0, 30])
def test_reactivate_refused_unless_pending_revocation(api: Api, clock: FakeClock, advance: float) -> None:
    cert_id = issue(api, make_csr())["id"]
    if advance:
        api.delete(f"{CERTS}/{cert_id}")
        clock.advance(advance)  # now revoked
    response = api.patch(f"{CERTS}/{cert_id}", {"reactivate": True})
    assert response.status_code == 400
    assert error_code(response) == 1405


@pytest.mark.parametrize("body", [{"reactivate": False}, {}])
def test_reactivate_requires_the_flag(api: Api, body: dict[str, object]) -> None:
    cert_id = issue(api, make_csr())["id"]
    api.delete(f"{CERTS}/{cert_id}")
    response = api.patch(
        f"{CERTS}/{cert_id}", body, invalid_request="reactivate missing on purpose" if not body else None
    )
    assert response.status_code == 400
    assert error_code(response) == 1400


def test_list_filters_and_pages(api: Api, clock: FakeClock, shared_csr: str) -> None:
    ids = []
    for _ in range(12):
        ids.append(issue(api, shared_csr)["id"])
        clock.advance(1)
    for cert_id in ids[:3]:
        api.delete(f"{CERTS}/{cert_id}")

    pages = [api.get(f"{CERTS}?status=all&per_page=5&page={page}").json() for page in (1, 2, 3)]
    assert [page["result_info"] for page in pages] == [
        {"page": p, "per_page": 5, "count": c, "total_count": 12, "total_pages": 3} for p, c in ((1, 5), (2, 5), (3, 2))
    ]
    assert [cert["id"] for page in pages for cert in page["result"]] == ids  # stable: by issue time
    beyond = api.get(f"{CERTS}?per_page=5&page=4").json()
    assert beyond["result"] == []

    pending = api.get(f"{CERTS}?status=pending_revocation&per_page=50").json()
    assert [c["id"] for c in pending["result"]] == ids[:3]
    active = api.get(f"{CERTS}?status=active").json()
    assert active["result_info"]["total_count"] == 9
    assert active["result_info"]["per_page"] == 20

    clock.advance(30)
    assert api.get(f"{CERTS}?status=revoked").json()["result_info"]["total_count"] == 3
    window = api.get(f"{CERTS}?offset=2&limit=3").json()
    assert [c["id"] for c in window["result"]] == ids[2:5]


@pytest.mark.parametrize("query", ["per_page=4", "per_page=51", "per_page=x", "page=0", "status=deleted"])
def test_list_rejects_bad_queries(api: Api, query: str) -> None:
    response = api.get(f"{CERTS}?{query}", invalid_request="out-of-range query on purpose")
    assert response.status_code == 400
    assert error_code(response) == 1400


def test_certificate_fields_never_expose_bookkeeping(api: Api) -> None:
    result = issue(api, make_csr())
    assert "status_changed_at" not in result
    assert "issued_at" not in result
    listed = api.get(CERTS).json()["result"][0]
    assert set(listed) == set(result)
