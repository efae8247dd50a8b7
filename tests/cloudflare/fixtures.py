"""Response fixtures shaped like Cloudflare's answers (each one is checked against the official schema)."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_ID = "b2134436-2555-4acf-be5b-26c48136575e"
RULESET_ID = "2f2feab2026849078ba485f918791bdc"
RULE_ID = "3a03d665bac047339bb530ecb439a90d"
MTLS_ID = "99f5137f-5b1e-4e1d-b1a4-1a1b2c3d4e5f"


def make_certificate_pem(common_name: str = "portal-user-42") -> str:
    """A real (self-signed) certificate: the client checks the fingerprint Cloudflare reports against its DER."""
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
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint_of(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


CERTIFICATE_PEM = make_certificate_pem()
FINGERPRINT = fingerprint_of(CERTIFICATE_PEM)


def envelope(result: Any, **extra: Any) -> dict[str, Any]:
    return {"success": True, "errors": [], "messages": [], "result": result, **extra}


def failure(*errors: tuple[int, str]) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [{"code": code, "message": message} for code, message in errors],
        "messages": [],
        "result": None,
    }


def client_certificate(cert_id: str = CERT_ID, status: str = "active", **overrides: Any) -> dict[str, Any]:
    return {
        "id": cert_id,
        "certificate": CERTIFICATE_PEM,
        "certificate_authority": {
            "id": "568b6b74-7b0c-4755-8840-4e3b8c24adeb",
            "name": "Cloudflare Managed CA for account 01a7362d577a6c3019a474fd6f485823",
        },
        "common_name": "portal-user-42",
        "country": "US",
        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIICY....\n-----END CERTIFICATE REQUEST-----\n",
        "expires_on": "2033-02-20T23:18:00Z",
        "fingerprint_sha256": FINGERPRINT,
        "issued_on": "2023-02-23T23:18:00Z",
        "location": "Somewhere",
        "organization": "Example Inc.",
        "organizational_unit": "API Developers",
        "serial_number": "3bb94ff144ac567b9f75ad664b6c55f8d5e48182",
        "signature": "SHA256WithRSA",
        "ski": "8e375af1389a069a0f921f8cc8e1eb12d784b949",
        "state": "CA",
        "status": status,
        "validity_days": 3650,
        **overrides,
    }


def page_info(page: int, per_page: int, count: int, total_count: int) -> dict[str, int]:
    total_pages = -(-total_count // per_page)
    return {"page": page, "per_page": per_page, "count": count, "total_count": total_count, "total_pages": total_pages}


def rule(ref: str, expression: str, rule_id: str = RULE_ID, action: str = "block") -> dict[str, Any]:
    return {
        "id": rule_id,
        "ref": ref,
        "version": "1",
        "last_updated": "2026-01-01T00:00:00.000000Z",
        "action": action,
        "expression": expression,
        "description": "",
        "enabled": True,
    }


def ruleset(rules: list[dict[str, Any]], version: str = "2") -> dict[str, Any]:
    return {
        "id": RULESET_ID,
        "name": "default",
        "description": "",
        "kind": "zone",
        "phase": "http_request_firewall_custom",
        "version": version,
        "last_updated": "2026-01-01T00:00:00.000000Z",
        "rules": rules,
    }
