"""Pages: dashboard, new certificate, certificate detail, revoke (with confirmation), API tokens."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import Count, Window
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import http_date
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certificates import admission, enqueue, listing, services
from certificates.allowlist import CheckedAllowlist, Problem, address_offer, lines_of
from certificates.authority.pki import crl_pem
from certificates.cloudflare_client import get_zone_id
from certificates.firewall.status import allowlist_status, awaiting_the_edge, sync_trouble
from certificates.firewall.sync import firewall_preview
from certificates.models import AccessRequest, ApiToken, AuditEvent, Certificate, CertificateAuthority, FirewallState
from certificates.policy import get_policy
from certificates.templatetags.certificate_pages import reminder_window_days
from certificates.views_helpers import AuthenticatedHttpRequest, client_address, issuer_of, origin_of, own_certificate

logger = logging.getLogger(__name__)


@login_required
@require_GET
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's certificates, usable ones by default, a page at a time; a query parameter the page does not
    know is ignored (its default used), and a cursor that does not verify starts again at the first page."""
    # By default what the user still deals with: usable certificates and those in progress (a pending revocation too).
    status = request.GET.get("status", listing.CURRENT)
    status = status if status in listing.STATUS_FILTERS else listing.CURRENT
    sort = request.GET.get("sort", listing.DEFAULT_SORT)
    sort = sort if sort in listing.SORT_KEYS else listing.DEFAULT_SORT
    search = request.GET.get("q", "").strip()[: listing.MAX_SEARCH]
    cursor = request.GET.get("cursor")

    def page_from(cursor: str | None) -> listing.Page:
        return listing.certificates_page(
            owner=request.user, status=status, sort=sort, search=search, cursor=cursor, with_pem=False
        )

    try:
        page = page_from(cursor)
    except listing.ListingError:
        cursor = None
        page = page_from(None)
    waiting = awaiting_the_edge(page.certificates, zone_id=get_zone_id())
    return render(
        request,
        "certificates/dashboard.html",
        {
            "certificates": page.certificates,
            "next_cursor": page.next_cursor,
            "paged": bool(cursor),
            # An empty page of a filter is not an empty account: a new user is shown how to start.
            "has_any": bool(page.certificates) or Certificate.objects.filter(owner=request.user).exists(),
            "status": status,
            "sort": sort,
            "search": search,
            "filters": DASHBOARD_FILTERS.items(),
            "sorts": DASHBOARD_SORTS.items(),
            "awaiting_the_edge": waiting,
            "expiring": _expiring_soon(request.user),
            **standing(request.user),
        },
    )


# The dashboard's filter and sort links: label -> query value.
DASHBOARD_FILTERS = {
    "Current": listing.CURRENT,
    "Revoked": Certificate.Status.REVOKED.value,
    "Expired": Certificate.Status.EXPIRED.value,
    "All": listing.ALL,
}
DASHBOARD_SORTS = {"Newest": "-created_at", "Expiring soonest": "expires_on"}


# The dashboard's expiry warning names this many certificates at most; the rest are one "Expiring soonest" away.
EXPIRY_WARNING_NAMES = 10


@dataclass(frozen=True)
class ExpiringSoon:
    soonest: Sequence[Certificate]
    count: int


def _expiring_soon(user: User) -> ExpiringSoon:
    """The user's usable certificates that expire within the reminder window, soonest first (any page, any filter):
    a few named, however many a heavy user holds, and only the columns the warning shows, in one query."""
    now = timezone.now()
    rows = (
        Certificate.objects.filter(
            owner=user,
            status__in=Certificate.USABLE,
            expires_on__gt=now,
            expires_on__lte=now + timedelta(days=reminder_window_days()),
        )
        .only("id", "name", "status", "expires_on")
        # How many in all, counted in the same query: a window is computed before the LIMIT.
        .annotate(total=Window(Count("id")))
        .order_by("expires_on", "id")
    )
    soonest = list(rows[:EXPIRY_WARNING_NAMES])
    return ExpiringSoon(soonest=soonest, count=soonest[0].total if soonest else 0)


def standing(user: User) -> dict[str, object]:
    """What the user may issue now: admission, their own maximum, the zone's room, and requests to staff."""
    policy = get_policy()
    room = admission.zone_room(get_zone_id())
    refusal = admission.admission_refusal(user)
    held = admission.held_by(user)
    return {
        "refusal": refusal,
        "held": held,
        "max_active": policy.max_active_per_user,
        # The new-certificate page's buttons start disabled when issuing cannot succeed: no key is made for nothing.
        "may_issue": refusal is None and held < policy.max_active_per_user and room != 0,
        "zone_room": room,
        "zone_capacity": policy.zone_capacity,
        "room_request": admission.pending_request(user, AccessRequest.Kind.ROOM),
    }


@login_required
@require_POST
def access_request(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Ask staff for admission, or for room in a full zone: the buttons on the dashboard."""
    try:
        services.access_request_create(
            user=request.user,
            kind=request.POST.get("kind", ""),
            note=request.POST.get("note", ""),
            origin=origin_of(request),
        )
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Your request is with staff. You get an email when they decide.")
    return redirect("certificates:dashboard")


@login_required
@require_GET
def certificate_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    taken = Certificate.objects.filter(owner=request.user).count()
    # "Renew" on a certificate's page: a replacement with the same name; once it is issued the page offers to
    # revoke the old one (behind its confirmation page), which nothing here does by itself.
    renewed = _certificate_to_renew(request)
    policy = get_policy()
    subject = shlex.quote(policy.subject_for(request.user).openssl_subj())
    return render(
        request,
        "certificates/certificate_new.html",
        {
            "policy_url": reverse("api-v1:csr_policy"),
            "issue_url": reverse("api-v1:create_certificate"),
            "download_event_url_template": reverse("api-v1:record_download", args=[0]).replace("/0/", "/{id}/"),
            "api_hostnames": settings.PORTAL_API_HOSTNAMES,
            "dashboard_url": reverse("certificates:dashboard"),
            "name_suggestion": renewed.name if renewed else f"certificate-{taken + 1}",
            "renewed": renewed,
            "openssl_existing_key": f"openssl req -new -key client.key -out client.csr -subj {subject}",
            "openssl_new_key": policy.openssl_command(request.user),
            **standing(request.user),
        },
    )


def _certificate_to_renew(request: AuthenticatedHttpRequest) -> Certificate | None:
    """The user's certificate named by ?renew=, if it can be renewed; another user's is a 404."""
    renewing = _id_in(request.GET.get("renew", ""))
    if renewing is None:
        return None
    certificate = own_certificate(request.user, renewing)
    return certificate if certificate.status in RENEWABLE else None


# The largest primary key (BigAutoField): a longer number in a query string would make the database refuse the query.
LARGEST_ID = 2**63 - 1


def _id_in(text: str) -> int | None:
    """A row id given in a query string or form field, or None when the text is not one."""
    if not (text.isascii() and text.isdigit()) or int(text) > LARGEST_ID:
        return None
    return int(text)


# What "Renew" is offered for: a certificate in use (replaced, then revoked on confirmation) or one that ran out.
# A revoked or failed one has nothing to renew: "New certificate" makes another.
RENEWABLE = frozenset({Certificate.Status.ACTIVE, Certificate.Status.EXPIRED})


@login_required
@require_GET
def certificate_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    certificate = own_certificate(request.user, pk)
    events = certificate.events.select_related("actor")
    # A certificate made outside the portal and given to this user by staff: it has no CSR, and its key was
    # not made in this user's browser.
    adopted = events.filter(action=AuditEvent.Action.ADOPTED_BY_STAFF).first()
    return render(
        request,
        "certificates/certificate_detail.html",
        {
            "certificate": certificate,
            "events": events,
            "adopted": adopted,
            "awaiting_the_edge": awaiting_the_edge([certificate], zone_id=certificate.zone_id),
            "issuer": issuer_of(certificate),
            "renewable": certificate.status in RENEWABLE,
        },
    )


@login_required
@require_GET
def certificate_pem(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    certificate = own_certificate(request.user, pk)
    if not certificate.certificate_pem:
        messages.error(request, "This certificate has not been issued, so there is nothing to download.")
        return redirect("certificates:detail", pk=pk)
    services.certificate_record_download(
        certificate=certificate, file_format="certificate_pem", origin=origin_of(request)
    )
    response = HttpResponse(certificate.certificate_pem, content_type="application/x-pem-file")
    filename = f"{slugify(certificate.name) or 'certificate'}.crt"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def certificate_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    certificate = own_certificate(request.user, pk)
    # After a renewal: the new certificate that replaces this one (the user's own, else not mentioned).
    replacement = _replacement(request, certificate)
    if request.method == "GET":
        context = {"certificate": certificate, "replacement": replacement}
        return render(request, "certificates/certificate_revoke.html", context)
    reason = f"replaced by “{replacement.name}”" if replacement else "revoked by owner"
    try:
        services.certificate_revoke(certificate=certificate, origin=origin_of(request), reason=reason)
    except services.ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("certificates:detail", pk=pk)
    if replacement is None:
        messages.success(request, "Revocation requested. Cloudflare finishes it within a few minutes.")
        return redirect("certificates:detail", pk=pk)
    messages.success(request, f"“{certificate.name}” is being revoked; “{replacement.name}” replaces it.")
    return redirect("certificates:detail", pk=replacement.pk)


def _replacement(request: AuthenticatedHttpRequest, certificate: Certificate) -> Certificate | None:
    given = request.POST.get("replacement", "") if request.method == "POST" else request.GET.get("replacement", "")
    replacement_id = _id_in(given)
    if replacement_id is None or replacement_id == certificate.pk:
        return None
    return Certificate.objects.filter(owner=request.user, pk=replacement_id, status__in=Certificate.USABLE).first()


@login_required
@require_http_methods(["GET", "POST"])
def allowlist(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's networks. A refused list comes back as typed, each problem naming its line, and changes nothing
    (400); a list that admits no request at all is saved only when the user ticks the confirmation."""
    standing = services.allowlist_standing(user=request.user)
    text = "\n".join(standing.networks)
    refusal: services.ServiceError | None = None
    if request.method == "POST":
        text = request.POST.get("networks", "")
        try:
            checked = services.allowlist_set(
                user=request.user,
                networks=lines_of(text),
                origin=origin_of(request),
                confirm_unreachable=request.POST.get("confirm_unreachable") == "yes",
                counted_as="line",
            )
        except services.ServiceError as exc:
            refusal = exc
        else:
            _tell_allowlist_saved(request, checked)
            return redirect("certificates:allowlist")
    problems, confirmable = _allowlist_refusal(refusal)
    context = {
        "networks_text": text,
        "has_networks": bool(standing.networks),
        # Saved as confirmed, or before the portal refused such lists: said on every visit, not only once.
        "admits_nothing": standing.admits_nothing,
        "status": allowlist_status(user=request.user, zone_id=get_zone_id()),
        "problems": problems,
        "confirmable": confirmable,
        # The address this browser reaches the portal from, as the audit log records it (TRUSTED_PROXY_COUNT).
        "here": address_offer(client_address(request)),
    }
    return render(request, "certificates/allowlist.html", context, status=refusal.status_code if refusal else 200)


def _allowlist_refusal(refusal: services.ServiceError | None) -> tuple[tuple[Problem, ...], bool]:
    """The problems to list, and whether ticking the confirmation would save the list."""
    if isinstance(refusal, services.AllowlistRefusedError):
        return refusal.problems, refusal.confirmable
    return ((Problem(refusal.message),) if refusal else ()), False


def _tell_allowlist_saved(request: HttpRequest, checked: CheckedAllowlist) -> None:
    everywhere = "" if checked.networks else " Your certificates will work from any address."
    messages.success(request, f"Networks saved.{everywhere} The status below says when the firewall enforces them.")
    for notice in checked.notices:
        messages.info(request, notice)
    if checked.admits_nothing:
        # The refusal before the confirmation named each network; one line now says what the user chose.
        messages.warning(request, "Saved as you confirmed: every request with your certificates will be blocked.")
    else:
        for warning in checked.warnings:
            messages.warning(request, warning)


# A new token's secret waits here for the one page view that shows it (post/redirect/get).
SHOW_ONCE_SESSION_KEY = "certificates:new_api_token"


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method == "POST":
        # Success or not, answer with a redirect: reloading the page then repeats the GET, never the POST,
        # so a reload cannot make a second token.
        _create_token(request)
        return redirect("certificates:tokens")
    new_secret = request.session.pop(SHOW_ONCE_SESSION_KEY, None)
    context = {
        "tokens": ApiToken.objects.filter(owner=request.user),
        "new_secret": new_secret,
        "scopes": ApiToken.Scope.choices,
        "default_days": settings.API_TOKEN_DEFAULT_DAYS,
        "max_days": settings.API_TOKEN_MAX_DAYS,
    }
    response = render(request, "certificates/token_list.html", context)
    if new_secret:
        response["Cache-Control"] = "no-store"  # the token is shown once; keep it out of caches
    return response


def _create_token(request: AuthenticatedHttpRequest) -> None:
    try:
        _token, secret = services.api_token_create(
            user=request.user,
            name=request.POST.get("name", ""),
            origin=origin_of(request),
            days=_requested_days(request.POST.get("days", "")),
            scope=request.POST.get("scope", ApiToken.Scope.READ_WRITE),
        )
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        request.session[SHOW_ONCE_SESSION_KEY] = secret


def _requested_days(text: str) -> int | None:
    """None (the default lifetime) when the field is empty; the service checks the range."""
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise services.PolicyError("Give the token's lifetime as a whole number of days.")
    return int(text)


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, owner=request.user)
    if request.method == "GET":
        return render(request, "certificates/token_revoke.html", {"token": token})
    services.api_token_revoke(token=token, origin=origin_of(request))
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("certificates:tokens")


@staff_member_required
@require_GET
def firewall_status(request: HttpRequest) -> HttpResponse:
    """Staff: the plan a sync would apply now (one read of the entrypoint) and what the last sync pushed."""
    zone_id = get_zone_id()
    state = FirewallState.objects.filter(zone_id=zone_id).first()
    plan, error = firewall_preview(zone_id=zone_id)
    context = {"zone_id": zone_id, "state": state, "plan": plan, "error": error}
    return render(request, "certificates/firewall_status.html", {**context, "trouble": sync_trouble(zone_id=zone_id)})


@staff_member_required
@require_POST
def firewall_sync_now(request: HttpRequest) -> HttpResponse:
    """Staff (the admin overview's button): queue a sync of the zone's rules at once."""
    zone_id = get_zone_id()
    if enqueue.request_firewall_sync_now(zone_id):
        logger.info("zone %s: staff user %s asked for a firewall sync now", zone_id, request.user.pk)
        messages.success(request, "A firewall sync is queued; the overview shows its result once a worker ran it.")
    else:
        messages.info(request, "A firewall sync was queued a few seconds ago; it covers this request too.")
    return redirect("admin:index")


# --- what origins fetch from a portal CA: public, no sign-in (the README's origin examples use these URLs) ---


@require_GET
def authority_crl(request: HttpRequest, pk: int) -> HttpResponse:
    """The CA's CRL in DER (`application/pkix-crl`, RFC 5280 §4.2.1.13), rebuilt here if it is stale."""
    return _crl_response(pk, pem=False)


@require_GET
def authority_crl_pem(request: HttpRequest, pk: int) -> HttpResponse:
    return _crl_response(pk, pem=True)


@require_GET
def authority_certificate(request: HttpRequest, pk: int) -> HttpResponse:
    """The CA certificate (and the chain above it, for an imported intermediate): what origins trust."""
    authority = get_object_or_404(CertificateAuthority.objects.only("certificate_pem", "chain_pem"), pk=pk)
    response = HttpResponse(authority.certificate_pem + authority.chain_pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'inline; filename="portal-ca-{pk}.pem"'
    return response


def _crl_response(pk: int, *, pem: bool) -> HttpResponse:
    if not CertificateAuthority.objects.filter(pk=pk).exists():
        raise Http404("No such CA")
    try:
        authority = services.crls.crl_refresh(authority_id=pk)
    except services.AuthorityUnavailableError as exc:
        # The key cannot be unlocked: serve the last CRL while it is valid rather than none; staff see why in the log.
        logger.error("portal CA %s: the CRL cannot be rebuilt: %s", pk, exc.message)
        authority = CertificateAuthority.objects.get(pk=pk)
        if not authority.crl_der or authority.crl_next_update is None or authority.crl_next_update <= timezone.now():
            return HttpResponse("The CRL is unavailable right now.", status=503, content_type="text/plain")
    der = bytes(authority.crl_der)
    body: bytes | str = crl_pem(der) if pem else der
    response = HttpResponse(body, content_type="application/x-pem-file" if pem else "application/pkix-crl")
    # Short-lived caches only: a revocation must reach origins at their next fetch, not at nextUpdate.
    response["Cache-Control"] = "public, max-age=60"
    if authority.crl_this_update is not None:
        response["Last-Modified"] = http_date(authority.crl_this_update.timestamp())
    return response
