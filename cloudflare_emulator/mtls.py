"""Account mTLS certificates (bring your own CA) and zone hostname associations (FACTS.md §3, §4)."""

from __future__ import annotations

import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from werkzeug.wrappers import Response

from . import codes, pki
from .context import Context
from .envelope import ApiError, success
from .state import State

MAX_CA_CERTIFICATES = 5  # FACTS.md §3: up to 5 CAs per account
MANAGED_CA_KEY = "managed"  # hostname-association key for Cloudflare's managed CA


# --- account mTLS certificates -------------------------------------------------------------------------


def parse_upload(context: Context) -> tuple[dict[str, Any], list[x509.Certificate]]:
    body = context.json_object()
    if not isinstance(body.get("ca"), bool):
        raise ApiError(400, codes.MTLS_BAD_REQUEST, "ca is required and must be a boolean")
    if not isinstance(body.get("certificates"), str) or not body["certificates"].strip():
        raise ApiError(400, codes.MTLS_BAD_REQUEST, "certificates is required and must be a PEM string")
    for optional in ("name", "private_key"):
        if optional in body and not isinstance(body[optional], str):
            raise ApiError(400, codes.MTLS_BAD_REQUEST, f"{optional} must be a string")
    try:
        certificates = x509.load_pem_x509_certificates(body["certificates"].encode("utf-8"))
    except ValueError as exc:
        raise ApiError(400, codes.MTLS_INVALID_CERTIFICATE, "The certificates could not be parsed as PEM") from exc
    # FACTS.md §3: the CA must have CA:TRUE; upload the issuing CA, not a leaf.
    if body["ca"] and not all(pki.is_ca_certificate(cert) for cert in certificates):
        raise ApiError(
            400,
            codes.MTLS_INVALID_CERTIFICATE,
            "The uploaded certificate is not a CA certificate (basicConstraints CA:TRUE is required)",
        )
    if body.get("private_key"):
        try:
            serialization.load_pem_private_key(body["private_key"].encode("utf-8"), password=None)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, codes.MTLS_BAD_REQUEST, "private_key could not be parsed as PEM") from exc
    return body, certificates


def upload(context: Context) -> Response:
    body, certificates = parse_upload(context)
    stored = context.account()["mtls_certificates"]
    if body["ca"] and sum(1 for record in stored.values() if record["ca"]) >= MAX_CA_CERTIFICATES:
        raise ApiError(400, codes.MTLS_CA_QUOTA, "Hit maximum CA cert allocation.")
    first = certificates[0]
    now = pki.rfc3339(context.now)
    record = {
        "id": str(uuid.uuid4()),
        "name": body.get("name", ""),
        "ca": body["ca"],
        "certificates": body["certificates"],
        "issuer": first.issuer.rfc4514_string(),
        "serial_number": format(first.serial_number, "x"),
        "signature": pki.signature_name(first, style="upload"),
        "expires_on": pki.rfc3339(first.not_valid_after_utc.timestamp()),
        "uploaded_on": now,
        "updated_at": now,
    }
    # The private key is accepted (it only serves the Zero Trust block page) but never stored or returned.
    stored[record["id"]] = record
    context.changed()
    return success(record)


def list_all(context: Context) -> Response:
    records = sorted(context.account()["mtls_certificates"].values(), key=lambda r: (r["uploaded_on"], r["id"]))
    # Not paginated (FACTS.md §1): one page holding everything.
    info = {"page": 1, "per_page": len(records), "count": len(records), "total_count": len(records), "total_pages": 1}
    return success(records, info)


def find(context: Context) -> dict[str, Any]:
    record: dict[str, Any] | None = context.account()["mtls_certificates"].get(context.args["mtls_certificate_id"])
    if record is None:
        raise ApiError(404, codes.MTLS_NOT_FOUND, "mTLS certificate not found")
    return record


def get_one(context: Context) -> Response:
    return success(find(context))


def zones_associated_with(context: Context, certificate_id: str) -> list[str]:
    return sorted(
        zone_id
        for zone_id, zone in context.state["zones"].items()
        if zone.get("hostname_associations", {}).get(certificate_id)
    )


def delete(context: Context) -> Response:
    record = find(context)
    # FACTS.md §4: the DELETE fails while the certificate is still associated with hostnames.
    if zones_associated_with(context, record["id"]):
        raise ApiError(
            400,
            codes.MTLS_IN_USE,
            "This certificate is in use by hostname associations; remove them with "
            'PUT hostname_associations {"hostnames": [], "mtls_certificate_id": ...} first',
        )
    del context.account()["mtls_certificates"][record["id"]]
    context.changed()
    return success(record)


def associations(context: Context) -> Response:
    record = find(context)
    # One entry per zone that enforces this CA on some hostnames (API Shield is the only service emulated).
    result = [{"service": "api_shield", "status": "active"} for _ in zones_associated_with(context, record["id"])]
    info = {"page": 1, "per_page": len(result), "count": len(result), "total_count": len(result), "total_pages": 1}
    return success(result, info)


# --- hostname associations -----------------------------------------------------------------------------


def uploaded_certificate(state: State, certificate_id: str) -> dict[str, Any] | None:
    """The account record of an uploaded certificate. Zones do not know their account here, so every account the
    emulator has seen is searched (the ids are UUIDs)."""
    for account in state["accounts"].values():
        record: dict[str, Any] | None = account["mtls_certificates"].get(certificate_id)
        if record is not None:
            return record
    return None


def certificate_exists(context: Context, certificate_id: str) -> bool:
    return uploaded_certificate(context.state, certificate_id) is not None


def association_key(context: Context, certificate_id: Any) -> str:
    if certificate_id is None or certificate_id == "":
        return MANAGED_CA_KEY
    if not isinstance(certificate_id, str):
        raise ApiError(400, codes.HOSTNAME_ASSOCIATION_BAD_REQUEST, "mtls_certificate_id must be a string")
    if not certificate_exists(context, certificate_id):
        raise ApiError(404, codes.MTLS_NOT_FOUND, "mTLS certificate not found")
    return certificate_id


def get_hostnames(context: Context) -> Response:
    key = association_key(context, context.request.args.get("mtls_certificate_id"))
    return success({"hostnames": list(context.zone()["hostname_associations"].get(key, []))})


def valid_hostname(hostname: Any) -> bool:
    return isinstance(hostname, str) and 0 < len(hostname) <= 253 and not any(c.isspace() for c in hostname)


def put_hostnames(context: Context) -> Response:
    body = context.json_object()
    hostnames = body.get("hostnames", [])
    if not isinstance(hostnames, list) or not all(valid_hostname(h) for h in hostnames):
        raise ApiError(400, codes.HOSTNAME_ASSOCIATION_BAD_REQUEST, "hostnames must be an array of hostname strings")
    key = association_key(context, body.get("mtls_certificate_id"))
    unique = list(dict.fromkeys(h.lower() for h in hostnames))
    associations_by_ca = context.zone()["hostname_associations"]
    # FACTS.md §4: a PUT replaces the whole set for that CA; an empty array removes them all. The managed CA's
    # empty set is kept: it says "on no hostname", where a zone that never set one trusts the managed CA on every
    # hostname (trust.py).
    if unique or key == MANAGED_CA_KEY:
        associations_by_ca[key] = unique
    else:
        associations_by_ca.pop(key, None)
    context.changed()
    return success({"hostnames": unique})
