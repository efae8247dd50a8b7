"""`/zones/{zone_id}/client_certificates`: issuance by the managed CA and the asynchronous lifecycle.

FACTS.md §2: DELETE moves a certificate to pending_revocation, which Cloudflare later processes to
revoked; PATCH `{"reactivate": true}` undoes a pending revocation. The emulator evaluates those
transitions lazily from its clock on every read, from the timestamp recorded at each transition.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from werkzeug.wrappers import Response

from . import codes, pki
from .context import Context
from .envelope import ApiError, success

STATUSES = ("active", "pending_reactivation", "pending_revocation", "revoked")
# Ten years, the schema's example value (FACTS.md §2 gives no bound); longer requests are refused
# rather than silently shortened, so a client never gets a certificate it did not ask for.
MAX_VALIDITY_DAYS = 3650
DEFAULT_PER_PAGE = 20
PER_PAGE_RANGE = (5, 50)  # FACTS.md §1
# Record fields that are emulator bookkeeping, not part of Cloudflare's answer.
PRIVATE_FIELDS = ("status_changed_at", "issued_at")


def settle(record: dict[str, Any], now: float, context: Context) -> None:
    """Apply the asynchronous transitions whose delay has elapsed (deterministic given the clock)."""
    delays = {
        "pending_revocation": ("revoked", context.settings.revocation_delay),
        "pending_reactivation": ("active", context.settings.reactivation_delay),
    }
    transition = delays.get(record["status"])
    if transition is None:
        return
    target, delay = transition
    due = float(record["status_changed_at"]) + delay
    if now >= due:
        record["status"] = target
        record["status_changed_at"] = due


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in PRIVATE_FIELDS}


def settled_certificates(context: Context) -> dict[str, dict[str, Any]]:
    certificates: dict[str, dict[str, Any]] = context.zone()["client_certificates"]
    for record in certificates.values():
        settle(record, context.now, context)
    return certificates


def find_certificate(context: Context) -> dict[str, Any]:
    record = settled_certificates(context).get(context.args["certificate_id"])
    if record is None:
        raise ApiError(404, codes.CLIENT_CERTIFICATE_NOT_FOUND, "Client certificate not found")
    return record


def occupies_slot(record: dict[str, Any]) -> bool:
    # FACTS.md §3: revoking frees the slot at once, so pending_revocation and revoked do not count.
    return record["status"] in ("active", "pending_reactivation")


def ensure_capacity(context: Context) -> None:
    used = sum(1 for record in settled_certificates(context).values() if occupies_slot(record))
    if used >= context.settings.zone_capacity:
        raise ApiError(
            400,
            codes.CLIENT_CERTIFICATE_QUOTA,
            f"Client certificate quota for this zone has been reached ({context.settings.zone_capacity} "
            "certificates). Revoke unused certificates or use your own CA.",
        )


# --- create -------------------------------------------------------------------------------------------


def parse_create_body(context: Context) -> tuple[str, int]:
    body = context.json_object()
    csr = body.get("csr")
    validity_days = body.get("validity_days")
    if not isinstance(csr, str) or not csr.strip():
        raise ApiError(400, codes.CLIENT_CERTIFICATE_BAD_REQUEST, "csr is required and must be a PEM string")
    if "validity_days" not in body:
        raise ApiError(400, codes.CLIENT_CERTIFICATE_BAD_REQUEST, "validity_days is required")
    if isinstance(validity_days, bool) or not isinstance(validity_days, int):
        raise ApiError(400, codes.CLIENT_CERTIFICATE_INVALID_VALIDITY, "validity_days must be an integer")
    if not 1 <= validity_days <= MAX_VALIDITY_DAYS:
        raise ApiError(
            400,
            codes.CLIENT_CERTIFICATE_INVALID_VALIDITY,
            f"validity_days must be between 1 and {MAX_VALIDITY_DAYS}",
        )
    return csr, validity_days


def create(context: Context) -> Response:
    csr_pem, validity_days = parse_create_body(context)
    try:
        csr = pki.parse_csr(csr_pem)
    except pki.CsrError as exc:
        raise ApiError(400, codes.CLIENT_CERTIFICATE_INVALID_CSR, str(exc)) from exc
    return success(public_view(issue(context, csr, csr_pem, validity_days)))


def issue(context: Context, csr: x509.CertificateSigningRequest, csr_pem: str, validity_days: int) -> dict[str, Any]:
    """Sign `csr` with the managed CA and store the certificate in the zone (the API and the dashboard)."""
    ensure_capacity(context)
    ca = context.managed_ca()
    try:
        certificate = pki.sign_csr(ca, csr, context.now, validity_days)
    except pki.CsrError as exc:
        raise ApiError(400, codes.CLIENT_CERTIFICATE_INVALID_CSR, str(exc)) from exc
    subject = certificate.subject
    record: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "certificate": pki.pem(certificate),
        "certificate_authority": {"id": ca.id, "name": ca.name},
        "common_name": pki.subject_attribute(subject, NameOID.COMMON_NAME),
        "organization": pki.subject_attribute(subject, NameOID.ORGANIZATION_NAME),
        "organizational_unit": pki.subject_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        "country": pki.subject_attribute(subject, NameOID.COUNTRY_NAME),
        "state": pki.subject_attribute(subject, NameOID.STATE_OR_PROVINCE_NAME),
        "location": pki.subject_attribute(subject, NameOID.LOCALITY_NAME),
        "csr": csr_pem,
        "issued_on": pki.rfc3339(context.now),
        "expires_on": pki.rfc3339(certificate.not_valid_after_utc.timestamp()),
        "fingerprint_sha256": pki.fingerprint_sha256(certificate),
        "serial_number": format(certificate.serial_number, "x"),
        "signature": pki.signature_name(certificate),
        "ski": pki.subject_key_identifier(certificate),
        "status": "active",
        "validity_days": validity_days,
        "issued_at": context.now,
        "status_changed_at": context.now,
    }
    context.zone()["client_certificates"][record["id"]] = record
    context.changed()
    return record


# --- list ----------------------------------------------------------------------------------------------


def integer_query(context: Context, name: str, default: int | None, minimum: int, maximum: int | None) -> int | None:
    raw = context.request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not number.is_integer() or number < minimum or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ApiError(400, codes.CLIENT_CERTIFICATE_BAD_REQUEST, f"{name} must be an integer {bounds}, got {raw!r}")
    return int(number)


def list_all(context: Context) -> Response:
    status = context.request.args.get("status", "all")
    if status not in ("all", *STATUSES):
        raise ApiError(400, codes.CLIENT_CERTIFICATE_BAD_REQUEST, f"status must be one of all, {', '.join(STATUSES)}")
    page = integer_query(context, "page", 1, 1, None) or 1
    per_page = integer_query(context, "per_page", DEFAULT_PER_PAGE, *PER_PAGE_RANGE) or DEFAULT_PER_PAGE
    offset = integer_query(context, "offset", 0, 0, None) or 0
    limit = integer_query(context, "limit", None, 0, None)

    # Cloudflare does not document an order (FACTS.md §1); issue time then id keeps pages stable.
    records = sorted(
        (r for r in settled_certificates(context).values() if status == "all" or r["status"] == status),
        key=lambda r: (float(r["issued_at"]), r["id"]),
    )
    # offset/limit narrow the ordered, filtered list first; page/per_page then paginate what remains.
    records = records[offset:]
    if limit is not None:
        records = records[:limit]
    start = (page - 1) * per_page
    page_records = records[start : start + per_page]
    result_info = {
        "page": page,
        "per_page": per_page,
        "count": len(page_records),
        "total_count": len(records),
        "total_pages": math.ceil(len(records) / per_page),
    }
    return success([public_view(r) for r in page_records], result_info)


def get_one(context: Context) -> Response:
    return success(public_view(find_certificate(context)))


# --- revoke / reactivate -------------------------------------------------------------------------------


def revoke(context: Context) -> Response:
    record = find_certificate(context)
    # Revoking something already revoked or being revoked answers with it unchanged: DELETE is idempotent,
    # which is what a client retrying after a lost answer needs.
    if record["status"] in ("active", "pending_reactivation"):
        record["status"] = "pending_revocation"
        record["status_changed_at"] = context.now
        context.changed()
    return success(public_view(record))


def reactivate(context: Context) -> Response:
    body = context.json_object()
    if body.get("reactivate") is not True:
        raise ApiError(400, codes.CLIENT_CERTIFICATE_BAD_REQUEST, 'The body must be {"reactivate": true}')
    record = find_certificate(context)
    if record["status"] != "pending_revocation":
        raise ApiError(
            400,
            codes.CLIENT_CERTIFICATE_INVALID_TRANSITION,
            f"Only a certificate in pending_revocation can be reactivated; this one is {record['status']}",
        )
    ensure_capacity(context)  # it takes its slot back
    record["status"] = "pending_reactivation"
    record["status_changed_at"] = context.now
    context.changed()
    return success(public_view(record))
