from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import ACCOUNT, OTHER_ZONE, ZONE, Api, error_code

MTLS = f"/accounts/{ACCOUNT}/mtls_certificates"
ASSOCIATIONS = f"/zones/{ZONE}/certificate_authorities/hostname_associations"


def make_certificate(common_name: str, ca: bool) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def upload(api: Api, name: str = "portal-ca") -> dict[str, object]:
    response = api.post(MTLS, {"ca": True, "certificates": make_certificate(name, ca=True), "name": name})
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()["result"]
    return result


def test_upload_list_get(api: Api) -> None:
    created = upload(api)
    assert created["ca"] is True
    assert created["name"] == "portal-ca"
    assert created["issuer"] == "CN=portal-ca"
    assert created["signature"] == "ECDSAWithSHA256"
    assert len(str(created["id"])) == 36
    assert api.get(f"{MTLS}/{created['id']}").json()["result"] == created
    listed = api.get(MTLS).json()
    assert listed["result"] == [created]
    missing = api.get(f"{MTLS}/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404


def test_upload_rejects_a_leaf_and_garbage(api: Api) -> None:
    leaf = api.post(MTLS, {"ca": True, "certificates": make_certificate("leaf", ca=False)})
    assert leaf.status_code == 400
    assert error_code(leaf) == 1481
    assert "CA:TRUE" in leaf.json()["errors"][0]["message"]
    garbage = api.post(MTLS, {"ca": True, "certificates": "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----"})
    assert error_code(garbage) == 1481
    missing = api.post(MTLS, {"certificates": "x"}, invalid_request="ca missing on purpose")
    assert error_code(missing) == 1480


def test_sixth_ca_hits_1489(api: Api) -> None:
    for index in range(5):
        upload(api, f"ca-{index}")
    refused = api.post(MTLS, {"ca": True, "certificates": make_certificate("ca-6", ca=True)})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"code": 1489, "message": "Hit maximum CA cert allocation."}]


def test_hostname_associations_replace_and_block_delete(api: Api) -> None:
    ca_id = str(upload(api)["id"])
    assert api.get(ASSOCIATIONS).json()["result"] == {"hostnames": []}

    api.put(ASSOCIATIONS, {"hostnames": ["api.example.com", "www.example.com"]})
    replaced = api.put(ASSOCIATIONS, {"hostnames": ["api.example.com"]})
    assert replaced.json()["result"] == {"hostnames": ["api.example.com"]}
    assert api.get(ASSOCIATIONS).json()["result"] == {"hostnames": ["api.example.com"]}

    api.put(ASSOCIATIONS, {"hostnames": ["mtls.example.com"], "mtls_certificate_id": ca_id})
    by_ca = api.get(f"{ASSOCIATIONS}?mtls_certificate_id={ca_id}").json()["result"]
    assert by_ca == {"hostnames": ["mtls.example.com"]}
    assert api.get(ASSOCIATIONS).json()["result"] == {"hostnames": ["api.example.com"]}  # the managed set is apart
    assert api.get(f"{MTLS}/{ca_id}/associations").json()["result"] == [{"service": "api_shield", "status": "active"}]

    blocked = api.delete(f"{MTLS}/{ca_id}", {})
    assert blocked.status_code == 400
    assert error_code(blocked) == 1483

    api.put(ASSOCIATIONS, {"hostnames": [], "mtls_certificate_id": ca_id})
    assert api.get(f"{MTLS}/{ca_id}/associations").json()["result"] == []
    deleted = api.delete(f"{MTLS}/{ca_id}", {})
    assert deleted.status_code == 200
    assert api.get(MTLS).json()["result"] == []


def test_associations_with_an_unknown_certificate_are_404(api: Api) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert api.get(f"{ASSOCIATIONS}?mtls_certificate_id={unknown}").status_code == 404
    response = api.put(ASSOCIATIONS, {"hostnames": ["a.example.com"], "mtls_certificate_id": unknown})
    assert response.status_code == 404
    assert error_code(response) == 1482


def test_associations_are_per_zone(api: Api) -> None:
    api.put(ASSOCIATIONS, {"hostnames": ["api.example.com"]})
    other = f"/zones/{OTHER_ZONE}/certificate_authorities/hostname_associations"
    assert api.get(other).json()["result"] == {"hostnames": []}


def test_bad_hostnames_are_rejected(api: Api) -> None:
    response = api.put(ASSOCIATIONS, {"hostnames": ["has space.example.com"]})
    assert response.status_code == 400
    assert error_code(response) == 1490
