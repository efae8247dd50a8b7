"""JSON API v1 (django-ninja). OpenAPI document at /api/v1/openapi.json, docs at /api/v1/docs.

Auth: a personal API token (`Authorization: Bearer mtp_...`, read-only or read-write, until it expires), or
the browser's session (read-write, with CSRF).
Every answer under /api/v1/, errors included, is JSON; errors are `{"detail": "..."}` with a 4xx status
(500 for a fault of ours, 503 when Cloudflare is unavailable).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, re_path, reverse
from django.views.decorators.csrf import csrf_exempt
from kombu.exceptions import OperationalError as BrokerError
from ninja import NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer, SessionAuth
from pydantic import Field
from redis.exceptions import RedisError

from certificates import admission, listing, services
from certificates.cloudflare_client import get_zone_id
from certificates.firewall.status import allowlist_status
from certificates.models import Certificate
from certificates.policy import KEY_TYPES, get_policy
from certificates.views_helpers import issuer_of, origin_of, own_certificate
from portal.env import Rate
from portal.outages import OUTAGE_MESSAGE, RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)

# Methods that only read; a read-only token may use these and nothing else.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthenticatedApiRequest(HttpRequest):
    """The request an endpoint gets: ninja put the user its authentication found in `auth` (a type for mypy)."""

    auth: User


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = services.api_token_authenticate(token, for_write=request.method not in READ_METHODS)
        if user is not None:
            request.user = user
        return user


class BrowserSession(SessionAuth):
    """The browser's login session, read-write and CSRF-checked.

    Ninja checks CSRF before it looks for a login, so a request with neither a token nor a session got
    403 "CSRF check Failed"; checking CSRF only for a logged-in user makes that a 401 while a logged-in
    write without the CSRF token is still refused.
    """

    def _get_key(self, request: HttpRequest) -> str | None:
        if not request.user.is_authenticated:
            return None
        return super()._get_key(request)


class JsonOnlyNinjaAPI(NinjaAPI):
    """Ninja, with the answers it leaves to Django made JSON too.

    Ninja answers a wrong method with a plain-text 405, its root view (`/api/v1/`) raises Http404 to Django,
    and a path it does not know (or an id its converter refuses, like `certificates/abc`) falls through to
    Django's HTML 404. The catch-all comes last, so it catches only what no route matched, whatever order
    routes are added in. The interactive docs page stays HTML: it is for people, not an API answer.
    """

    @property
    def urls(self) -> tuple[list[URLResolver | URLPattern], str, str]:
        patterns, app_name, namespace = super().urls
        wrapped: list[URLResolver | URLPattern] = [self._answering_in_json(pattern) for pattern in patterns]
        # An empty regex matches every remaining path. CSRF-exempt like ninja's views, or Django's CSRF check
        # would answer a POST to an unknown path with its HTML 403.
        wrapped.append(re_path(r"", csrf_exempt(self._path_not_found)))
        return wrapped, app_name, namespace

    def _answering_in_json(self, pattern: URLResolver | URLPattern) -> URLResolver | URLPattern:
        if not isinstance(pattern, URLPattern):
            return pattern
        view = pattern.callback

        @functools.wraps(view)
        def view_answering_in_json(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                response: HttpResponse = view(request, *args, **kwargs)
            except Http404:
                return not_found(request)
            if isinstance(response, HttpResponseNotAllowed):
                allowed = response["Allow"]
                response = self.create_response(
                    request, {"detail": f"{request.method} is not allowed here; use {allowed}."}, status=405
                )
                response["Allow"] = allowed
            return response

        return URLPattern(pattern.pattern, view_answering_in_json, pattern.default_args, pattern.name)

    def _path_not_found(self, request: HttpRequest) -> HttpResponse:
        return not_found(request)


api = JsonOnlyNinjaAPI(
    title="mTLS developer portal API",
    version="1",
    urls_namespace="api-v1",
    auth=[BearerToken(), BrowserSession()],
)


class CertificateIn(Schema):
    csr: str = Field(description="PKCS#10 request in PEM, with the subject from GET /csr-policy")
    validity_days: int = Field(description="one of the policy's validity choices")
    name: str = Field(max_length=100, description="what the certificate is for, e.g. the machine using it")


class IssuerOut(Schema):
    kind: str = Field(description='"cloudflare_managed" or "portal_ca"')
    name: str
    # Where origins get the CA and its CRL (a portal CA only; Cloudflare's managed CA is not downloadable).
    ca_certificate_url: str | None
    crl_url: str | None


class CertificateOut(Schema):
    id: int
    name: str
    status: str
    certificate: str
    fingerprint_sha256: str
    serial_number: str
    common_name: str
    key_type: str
    issued_on: datetime | None
    expires_on: datetime | None
    detail_url: str
    issuer: IssuerOut

    @staticmethod
    def resolve_certificate(obj: Certificate) -> str:
        return obj.certificate_pem

    @staticmethod
    def resolve_issuer(obj: Certificate) -> dict[str, Any]:
        return issuer_of(obj)

    @staticmethod
    def resolve_detail_url(obj: Certificate) -> str:
        return reverse("certificates:detail", args=[obj.pk])


class CertificateList(Schema):
    items: list[CertificateOut]
    next: str | None = Field(description="the next page's URL (the same filter and sort), null on the last page")
    next_cursor: str | None = Field(description="the `cursor` of the next page, null on the last page")


class CertificateListQuery(Schema):
    # Plain strings, checked by certificates.listing: a bad value is a 400 naming what is accepted.
    status: str = Field(
        default=listing.ALL,
        description=f"`active` (usable), a status name, or `all` (the default): {', '.join(listing.STATUS_FILTERS)}",
    )
    sort: str = Field(default=listing.DEFAULT_SORT, description=f"one of {', '.join(listing.SORT_KEYS)}")
    limit: str | None = Field(
        default=None, description=f"rows a page: {listing.DEFAULT_LIMIT} unless given, at most {listing.MAX_LIMIT}"
    )
    cursor: str | None = Field(default=None, description="the `next_cursor` of the previous page")
    q: str = Field(
        default="",
        description=f"part of a name, or an exact fingerprint (colons allowed), serial or Cloudflare id; at most "
        f"{listing.MAX_SEARCH} characters",
    )


class RevokeIn(Schema):
    reason: str = Field(default="", max_length=500)


class DownloadEventIn(Schema):
    format: str


class Message(Schema):
    detail: str


@api.get(
    "/certificates", response={200: CertificateList, 400: Message}, summary="List your certificates, a page at a time"
)
def list_certificates(request: AuthenticatedApiRequest, query: Query[CertificateListQuery]) -> dict[str, Any]:
    try:
        page = listing.certificates_page(
            owner=request.auth,
            status=query.status,
            sort=query.sort,
            limit=listing.parsed_limit(query.limit),
            cursor=query.cursor,
            search=query.q,
        )
    except listing.ListingError as exc:
        raise HttpError(400, str(exc)) from None
    next_url = None
    if page.next_cursor is not None:
        parameters = request.GET.copy()
        parameters["cursor"] = page.next_cursor
        next_url = request.build_absolute_uri(f"{request.path}?{parameters.urlencode()}")
    return {"items": page.certificates, "next": next_url, "next_cursor": page.next_cursor}


@api.post(
    "/certificates",
    response={201: CertificateOut, 400: Message, 403: Message, 409: Message, 429: Message, 503: Message},
    summary="Issue a certificate for a CSR",
)
def create_certificate(request: AuthenticatedApiRequest, payload: CertificateIn) -> Status[Certificate]:
    certificate = services.certificate_issue(
        user=request.auth,
        csr=payload.csr,
        validity_days=payload.validity_days,
        name=payload.name,
        origin=origin_of(request),
    )
    return Status(201, certificate)


@api.get("/certificates/{int:certificate_id}", response={200: CertificateOut, 404: Message}, summary="One certificate")
def get_certificate(request: AuthenticatedApiRequest, certificate_id: int) -> Certificate:
    return own_certificate(request.auth, certificate_id)


@api.post(
    "/certificates/{int:certificate_id}/revoke",
    response={202: CertificateOut, 404: Message, 409: Message, 429: Message, 503: Message},
    summary="Revoke a certificate (Cloudflare finishes asynchronously)",
)
def revoke_certificate(
    request: AuthenticatedApiRequest, certificate_id: int, payload: RevokeIn | None = None
) -> Status[Certificate]:
    certificate = own_certificate(request.auth, certificate_id)
    reason = payload.reason if payload else ""
    return Status(202, services.certificate_revoke(certificate=certificate, origin=origin_of(request), reason=reason))


@api.post(
    "/certificates/{int:certificate_id}/download-events",
    response={204: None, 400: Message, 404: Message},
    summary="Record that a file of this certificate was downloaded (for the audit log)",
)
def record_download(request: AuthenticatedApiRequest, certificate_id: int, payload: DownloadEventIn) -> Status[None]:
    certificate = own_certificate(request.auth, certificate_id)
    services.certificate_record_download(certificate=certificate, file_format=payload.format, origin=origin_of(request))
    return Status(204, None)


@api.get("/csr-policy", summary="The subject, keys and validity a CSR must follow")
def csr_policy(request: AuthenticatedApiRequest) -> dict[str, Any]:
    policy = get_policy()
    subject = policy.subject_for(request.auth)
    return {
        "subject": {
            "common_name": subject.common_name,
            "organization": subject.organization,
            "organizational_unit": subject.organizational_unit,
        },
        "key_types": [{"id": k.id, "label": k.label} for k in KEY_TYPES],
        "default_key_type": KEY_TYPES[0].id,
        "validity_days": {
            "choices": list(policy.validity_choices),
            "default": policy.default_validity_days,
            "maximum": policy.max_validity_days,
        },
        "max_active_certificates": policy.max_active_per_user,
        "active_certificates": Certificate.objects.filter(
            owner=request.auth, status__in=Certificate.HOLDS_A_SLOT
        ).count(),
        "zone_capacity": policy.zone_capacity,
        "zone_room": admission.zone_room(get_zone_id()),
        "admission": _admission_answer(request.auth),
        "issue_rate_limit": _rate(settings.CERTIFICATE_ISSUE_RATE_LIMIT),
        "revoke_rate_limit": _rate(settings.CERTIFICATE_REVOKE_RATE_LIMIT),
        "openssl_command": policy.openssl_command(request.auth),
        # The only extensions a CSR may request, and their values; anything else is refused by name.
        "allowed_extensions": [{"name": e.name, "values": list(e.values)} for e in policy.granted_extensions],
    }


def _admission_answer(user: Any) -> dict[str, Any]:
    refusal = admission.admission_refusal(user)
    return {
        "policy": settings.PORTAL_ADMISSION,
        "admitted": refusal is None,
        "detail": refusal.message if refusal else "",
    }


def _rate(rate: Rate) -> dict[str, int]:
    return {"count": rate.count, "period_seconds": rate.period}


class AllowlistIn(Schema):
    networks: list[str] = Field(
        description=(
            "IPv4/IPv6 addresses and CIDRs, one per entry (an entry may hold several separated by commas or spaces; "
            "`#` starts a comment); an empty list allows any address. A bad entry is refused with a 400 naming it "
            '("entry 3: `10.0.0.300/8` is not an IPv4 or IPv6 address or network."); duplicates and networks '
            "inside others are merged, and `notices` says which"
        )
    )
    confirm_unreachable: bool = Field(
        default=False,
        description=(
            "Save a list made only of networks Cloudflare never sees as a request's address (private, loopback, "
            "link-local, CGNAT, documentation ranges). Such a list blocks every request with your certificates, "
            "so without this it is refused with a 400"
        ),
    )


class AllowlistOut(Schema):
    networks: list[str] = Field(description="the networks saved, normalized, IPv4 first, in address order")
    warnings: list[str] = Field(
        default=[], description="networks kept that Cloudflare never sees, so they admit nothing"
    )
    notices: list[str] = Field(
        default=[], description="entries merged into others: duplicates, and networks inside another network"
    )
    status: Literal["applied", "waiting", "not_applied"] = Field(
        description="whether the firewall enforces these networks (or any address, when empty) at Cloudflare now"
    )
    applied_at: datetime | None = Field(description="when the sync that put them in force ran (status applied)")
    reason: str = Field(description="why they are waiting or not applied; empty when applied")


@api.get("/allowlist", response=AllowlistOut, summary="The networks your certificates may be used from")
def get_allowlist(request: AuthenticatedApiRequest) -> dict[str, Any]:
    standing = services.allowlist_standing(user=request.auth)
    return {"networks": list(standing.networks), "warnings": list(standing.warnings), **_allowlist_status(request)}


@api.put("/allowlist", response={200: AllowlistOut, 400: Message}, summary="Replace your allowlist")
def put_allowlist(request: AuthenticatedApiRequest, payload: AllowlistIn) -> dict[str, Any]:
    try:
        checked = services.allowlist_set(
            user=request.auth,
            networks=payload.networks,
            origin=origin_of(request),
            confirm_unreachable=payload.confirm_unreachable,
        )
    except services.AllowlistRefusedError as exc:
        if not exc.confirmable:
            raise
        raise services.PolicyError(f'{exc.message} Send "confirm_unreachable": true to save it anyway.') from exc
    return {
        "networks": list(checked.networks),
        "warnings": list(checked.warnings),
        "notices": list(checked.notices),
        **_allowlist_status(request),
    }


def _allowlist_status(request: AuthenticatedApiRequest) -> dict[str, Any]:
    status = allowlist_status(user=request.auth, zone_id=get_zone_id())
    return {"status": status.status, "applied_at": status.applied_at, "reason": status.reason}


@api.exception_handler(services.ServiceError)
def service_error(request: HttpRequest, exc: services.ServiceError) -> HttpResponse:
    response = api.create_response(request, {"detail": exc.message}, status=exc.status_code)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(RedisError)
@api.exception_handler(BrokerError)
def redis_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Raised before anything changed (portal/outages.py): the client may simply try again.
    logger.warning("Redis unavailable on %s %s: %r", request.method, request.path, exc)
    response = api.create_response(request, {"detail": OUTAGE_MESSAGE}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = "; ".join(_describe_problem(error) for error in exc.errors)
    return api.create_response(request, {"detail": f"Invalid request: {problems}", "errors": exc.errors}, status=422)


@api.exception_handler(AuthenticationError)
def authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"detail": "Authentication required: send Authorization: Bearer <token>."}, status=401
    )


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404 | None = None) -> HttpResponse:
    # The same answer for an unknown path, a malformed id and someone else's certificate: nothing is revealed.
    return api.create_response(request, {"detail": "Not found."}, status=404)


@api.exception_handler(RequestDataTooBig)
def request_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return api.create_response(request, {"detail": f"The request body is larger than {limit} bytes."}, status=413)


@api.exception_handler(SuspiciousOperation)
def suspicious_request(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # What Django would answer with an HTML 400 (too many fields, a malformed header...).
    return api.create_response(request, {"detail": "Bad request."}, status=400)


@api.exception_handler(PermissionDenied)
def permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": "You are not allowed to do this."}, status=403)


@api.exception_handler(Exception)
def server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Ninja would re-raise to Django's HTML 500 page (or a traceback with DEBUG); the client gets neither.
    logger.exception("API error on %s %s", request.method, request.path)
    return api.create_response(request, {"detail": "Internal error; it has been logged."}, status=500)


def _describe_problem(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "payload"))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))
