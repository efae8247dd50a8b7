"""Django admin: certificates (revoke with a reason, reactivate while pending), certificates made outside the
portal (adopt for a user, or revoke), portal CAs (create, import, upload, make issuer, remove), tokens, the audit
log, and the queue of access requests (admission, room in a full zone)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any, TypeVar

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import Count, Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from certificates import admission, services
from certificates.authority import pki
from certificates.cloudflare_client import get_zone_id
from certificates.models import (
    AccessRequest,
    AllowlistEntry,
    ApiToken,
    AuditEvent,
    Certificate,
    CertificateAuthority,
    UnknownCertificate,
    Zone,
)
from certificates.search import certificate_key_match
from certificates.services import authorities
from certificates.views_helpers import origin_of

_M = TypeVar("_M", bound=Model)


class ReadOnlyAdminMixin:
    """Staff see the rows and change nothing: other code writes them (the audit log, the allowlist forms)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# -- Lists that stay fast on large tables (issue #12: 50,000 certificates, 93,000 audit events) ------------------


class EstimatedCountPaginator(Paginator[Any]):
    """Counts a list exactly up to EXACT_UP_TO rows and estimates past that, so that no page counts a whole large
    table. The estimate is PostgreSQL's planner's (the table's statistics, pg_class.reltuples for an unfiltered
    list); the page links past it may come out empty, and the page says "about". Other databases (SQLite in
    development) count exactly."""

    EXACT_UP_TO = 1000
    estimated = False

    @cached_property
    def count(self) -> int:
        rows: QuerySet[Any] = self.object_list.order_by()  # type: ignore[attr-defined]  # admin lists are querysets
        counted = rows[: self.EXACT_UP_TO + 1].count()
        if counted <= self.EXACT_UP_TO:
            return counted
        if connections[rows.db].vendor != "postgresql":
            return rows.count()
        self.estimated = True
        return max(counted, _planned_rows(rows))

    def page(self, number: int | str) -> Page[Any]:
        """Past the first page, the page's ids first, then its rows: OFFSET skips entries of an index (created_at,
        id) alone, not the wide rows (page 300 of 50,000 certificates: 20 ms instead of 340)."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if bottom == 0:
            return super().page(number)
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count  # as Django's Paginator.page
        rows: QuerySet[Any] = self.object_list  # type: ignore[assignment]  # admin lists are querysets
        return Page(rows.filter(pk__in=rows.values("pk")[bottom:top]), number, self)


def _planned_rows(rows: QuerySet[Any]) -> int:
    sql, params = rows.query.sql_with_params()
    with connections[rows.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    return int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])


class LeanChangeList(ChangeList):
    """The list page reads the rows without the columns its admin names in `list_deferred` (a certificate's CSR and
    PEM: most of a row's bytes; only the rows shown: the change form and the actions get whole rows), and sorts
    only by the columns in `sortable_by`, which an index serves."""

    def get_results(self, request: HttpRequest) -> None:
        self.queryset = self.queryset.defer(*getattr(self.model_admin, "list_deferred", ()))
        super().get_results(request)

    def get_ordering_field(self, field_name: Callable[..., Any] | str) -> Any:
        # sortable_by hides the other columns' sort links; this refuses them in a hand-made URL (?o=1) as well.
        sortable = self.sortable_by or ()
        return super().get_ordering_field(field_name) if field_name in sortable else None


class LargeTableAdmin(admin.ModelAdmin[_M]):
    """A list over a table of tens of thousands of rows: no count of the whole table, no facet counts, sorted only
    by what an index serves (`sortable_by`, set by each), and without the bulky columns."""

    paginator = EstimatedCountPaginator
    # Django's admin renders each cell through several template layers, about 0.1 ms a cell: 50 rows a page,
    # not Django's 100, keeps a list page near 30 ms (bench/results/pages.txt).
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_deferred: tuple[str, ...] = ()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList


# Admin search: exact keys (certificates.search) and an email prefix, each read from an index; never "contains",
# which reads every row.
# An email prefix that matches more accounts than this is too short to be a search: staff are asked for more.
MAX_OWNERS_PER_SEARCH = 100
CERTIFICATE_SEARCH_HELP = (
    "Exact SHA-256 fingerprint (with or without colons), serial number (hex), or Cloudflare id, in any case; "
    "or the start of the owner's email address."
)


def owner_ids_by_email_prefix(prefix: str, *, limit: int = MAX_OWNERS_PER_SEARCH) -> list[int]:
    """Up to `limit` + 1 accounts whose email address starts with `prefix`, in any case. istartswith is
    UPPER(email) LIKE 'PREFIX%' on PostgreSQL, which migration 0012's index on UPPER(email) serves; addresses keep
    the case they were typed in (createsuperuser, sign-up), so a lower() index with startswith would miss some.
    The ids are then an index condition on the certificates, where a join on the users table could not be."""
    if not prefix or any(character.isspace() for character in prefix):
        return []
    owners = get_user_model().objects.filter(email__istartswith=prefix).order_by().values_list("pk", flat=True)
    return list(owners[: limit + 1])


def _owners_or_warn(admin_: admin.ModelAdmin[Any], request: HttpRequest, term: str) -> list[int]:
    owner_ids = owner_ids_by_email_prefix(term, limit=MAX_OWNERS_PER_SEARCH)
    if len(owner_ids) > MAX_OWNERS_PER_SEARCH:
        admin_.message_user(
            request,
            f"More than {MAX_OWNERS_PER_SEARCH} accounts have an email address starting with “{term}”: "
            "type more of the address.",
            messages.WARNING,
        )
        return []
    return owner_ids


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("expired", "Expired"), ("7d", "Within 7 days"), ("30d", "Within 30 days"), ("later", "Later")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Certificate]) -> QuerySet[Certificate]:
        now = timezone.now()
        value = self.value()
        if value == "expired":
            return queryset.filter(expires_on__lte=now)
        if value in ("7d", "30d"):
            days = 7 if value == "7d" else 30
            return queryset.filter(expires_on__gt=now, expires_on__lte=now + timedelta(days=days))
        if value == "later":
            return queryset.filter(expires_on__gt=now + timedelta(days=30))
        return queryset


class RevokeForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


class ServiceActionsAdmin(admin.ModelAdmin[_M]):
    """Actions that call a service for each selected row, then report what succeeded and each refusal."""

    noun = "certificate"

    def describe(self, obj: _M) -> str:
        return str(obj)

    def _apply(self, request: HttpRequest, queryset: QuerySet[_M], action: Callable[[_M], object], done: str) -> None:
        succeeded, failures = 0, []
        for obj in queryset:
            try:
                action(obj)
                succeeded += 1
            except services.ServiceError as exc:
                failures.append(f"{self.describe(obj)}: {exc.message}")
        if succeeded:
            self.message_user(
                request, f"{succeeded} {self.noun}{'s' if succeeded != 1 else ''} {done}.", messages.SUCCESS
            )
        for failure in failures:
            self.message_user(request, failure, messages.ERROR)


@admin.register(Certificate)
class CertificateAdmin(ServiceActionsAdmin[Certificate], LargeTableAdmin[Certificate]):
    list_display = ("name", "owner", "status", "expires_on", "fingerprint_sha256", "common_name", "created_at")
    # Each filter is a range of one index: (status, created_at, id), expires_on, (created_at, id). No date
    # hierarchy: its year, month and day links are a SELECT DISTINCT over every row of the period on each page.
    list_filter = ("status", ExpiryFilter, ("created_at", admin.DateFieldListFilter))
    sortable_by = ("expires_on", "created_at")
    # What get_search_results reads; named so that the admin shows its search box.
    search_fields = ("fingerprint_sha256", "serial_number", "cloudflare_id", "owner__email")
    search_help_text = CERTIFICATE_SEARCH_HELP
    list_select_related = ("owner",)
    list_deferred = ("csr", "certificate_pem")
    actions = ("revoke_selected", "reactivate_selected")
    readonly_fields = (
        "owner",
        "zone_id",
        "status",
        "cloudflare_id",
        "csr",
        "public_key_sha256",
        "key_type",
        "common_name",
        "validity_days",
        "certificate_pem",
        "fingerprint_sha256",
        "serial_number",
        "issued_on",
        "expires_on",
        "last_error",
        "created_at",
        "updated_at",
        # The issuer, the revocation time and the workers' bookkeeping change only through services and tasks.
        "authority",
        "revoked_at",
        "attempts",
        "last_attempt_at",
        "reminders_sent",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # certificates are issued from a CSR by their owner, never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Certificate | None = None) -> bool:
        return False  # revoke instead: the row is the audit trail

    @admin.action(description="Revoke selected certificates…")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Certificate]) -> HttpResponse | None:
        form = RevokeForm(request.POST if "reason" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/certificates/revoke_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "certificates": queryset,
                    "form": form,
                    "opts": self.model._meta,
                },
            )
        self._apply(
            request,
            queryset,
            lambda c: services.certificate_revoke(
                certificate=c, origin=origin_of(request), reason=form.cleaned_data["reason"]
            ),
            # A portal CA's revocation is final at once; Cloudflare's managed CA finishes its own a little later.
            "revoked (pending at Cloudflare)" if queryset.filter(authority__isnull=True).exists() else "revoked",
        )
        return None

    @admin.action(description="Reactivate selected certificates (only while pending revocation)")
    def reactivate_selected(self, request: HttpRequest, queryset: QuerySet[Certificate]) -> None:
        self._apply(
            request,
            queryset,
            lambda c: services.certificate_reactivate(certificate=c, origin=origin_of(request)),
            "reactivated (pending at Cloudflare)",
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Certificate], search_term: str
    ) -> tuple[QuerySet[Certificate], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        match = certificate_key_match(term) | Q(owner_id__in=_owners_or_warn(self, request, term))
        return queryset.filter(match), False

    def describe(self, obj: Certificate) -> str:
        return obj.name


@admin.register(ApiToken)
class ApiTokenAdmin(LargeTableAdmin[ApiToken]):
    list_display = ("name", "owner", "hint", "scope", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("scope",)
    sortable_by = ("created_at",)
    list_select_related = ("owner",)
    search_fields = ("owner__email",)
    search_help_text = "The start of the owner's email address, in any case."
    readonly_fields = (
        "owner",
        "name",
        "hint",
        "token_sha256",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApiToken], search_term: str
    ) -> tuple[QuerySet[ApiToken], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(owner_id__in=_owners_or_warn(self, request, term)), False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, LargeTableAdmin[AuditEvent]):
    list_display = ("created_at", "action", "actor", "certificate", "old_status", "new_status", "remote_addr")
    # (action, created_at, id) and (created_at, id) serve them, newest first (the model's ordering).
    list_filter = ("action", ("created_at", admin.DateFieldListFilter))
    sortable_by = ("created_at",)
    search_fields = ("certificate__fingerprint_sha256", "certificate__serial_number", "actor__email")
    search_help_text = (
        "A certificate's exact fingerprint, serial number or Cloudflare id (its history); "
        "or the start of the email address of who acted."
    )
    list_select_related = ("actor", "certificate")
    list_deferred = ("certificate__csr", "certificate__certificate_pem")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Ids first, then an index condition each: a join to match would read the whole log.
        certificates = Certificate.objects.filter(certificate_key_match(term)).values_list("pk", flat=True)
        match = Q(certificate_id__in=list(certificates[:MAX_OWNERS_PER_SEARCH])) | Q(
            actor_id__in=_owners_or_warn(self, request, term)
        )
        return queryset.filter(match), False


class AdoptForm(forms.Form):
    email = forms.EmailField(label="Owner's email address", help_text="The account that will hold the certificates.")

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"]
        owners = list(get_user_model().objects.filter(email__iexact=email)[:2])
        if not owners:
            raise forms.ValidationError(f"No account has the address {email}; nothing was adopted.")
        if len(owners) > 1:
            raise forms.ValidationError(f"Several accounts have the address {email}; nothing was adopted.")
        self.owner = owners[0]
        return email


BLOCKED_UNTIL_DECIDED = (
    "The API refuses these certificates: only certificates the portal holds pass its firewall rules. "
    "Adopt one to give it to a user (it then counts against their maximum and follows their networks), "
    "or revoke it."
)


@admin.register(UnknownCertificate)
class UnknownCertificateAdmin(ServiceActionsAdmin[UnknownCertificate]):
    """Certificates in the zone the portal did not issue, as the last reconciliation saw them: staff adopt or
    revoke each."""

    list_display = (
        "fingerprint_sha256",
        "common_name",
        "status",
        "at_the_api",
        "expires_on",
        "first_seen_at",
        "last_seen_at",
    )
    list_filter = ("status",)
    search_fields = ("common_name", "fingerprint_sha256", "cloudflare_id")
    actions = ("adopt_selected", "revoke_selected")

    @admin.display(description="at the API")
    def at_the_api(self, obj: UnknownCertificate) -> str:
        if obj.status in Certificate.USABLE:
            return "blocked until adopted or revoked"
        return f"{obj.status.replace('_', ' ')} at Cloudflare"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": BLOCKED_UNTIL_DECIDED})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UnknownCertificate | None = None) -> bool:
        return False  # reconciliation writes the rows; staff only adopt or revoke

    def has_decide_permission(self, request: HttpRequest) -> bool:
        # Adopting and revoking are changes: they need the model's change permission (superusers have it).
        return request.user.has_perm("certificates.change_unknowncertificate")

    @admin.action(description="Adopt selected certificates (give them to a user)…", permissions=["decide"])
    def adopt_selected(self, request: HttpRequest, queryset: QuerySet[UnknownCertificate]) -> HttpResponse | None:
        form = AdoptForm(request.POST if "email" in request.POST else None)
        if not form.is_valid():
            return self._confirm(request, queryset, form, action="adopt_selected", verb="Adopt")
        owner = form.owner
        self._apply(
            request,
            queryset,
            lambda u: services.unknown_certificate_adopt(unknown=u, owner=owner, origin=origin_of(request)),
            f"adopted for {owner.email}",
        )
        return None

    @admin.action(description="Revoke selected certificates at Cloudflare…", permissions=["decide"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[UnknownCertificate]) -> HttpResponse | None:
        form = RevokeForm(request.POST if "reason" in request.POST else None)
        if not form.is_valid():
            return self._confirm(request, queryset, form, action="revoke_selected", verb="Revoke")
        self._apply(
            request,
            queryset,
            lambda u: services.unknown_certificate_revoke(
                unknown=u, origin=origin_of(request), reason=form.cleaned_data["reason"]
            ),
            "revoked (pending at Cloudflare)",
        )
        return None

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[UnknownCertificate], form: forms.Form, *, action: str, verb: str
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/certificates/unknown_certificate_action.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{verb} {queryset.count()} unknown certificate{'s' if queryset.count() != 1 else ''}",
                "unknowns": queryset,
                "form": form,
                "action": action,
                "verb": verb,
                "opts": self.model._meta,
            },
        )


@admin.register(AllowlistEntry)
class AllowlistEntryAdmin(ReadOnlyAdminMixin, LargeTableAdmin[AllowlistEntry]):
    """Read-only: a user's list is changed through the page or the API, which check it and queue a sync."""

    list_display = ("owner", "network", "created_at")
    # The index (network, id): the model's order, made total without a sort.
    ordering = ("network", "id")
    sortable_by = ("network",)
    list_select_related = ("owner",)
    search_fields = ("network", "owner__email")
    search_help_text = (
        "A network (e.g. 192.0.2.0/24, or an address with its mask), or the start of the owner's email address."
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AllowlistEntry], search_term: str
    ) -> tuple[QuerySet[AllowlistEntry], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(owner_id__in=_owners_or_warn(self, request, term))
        with contextlib.suppress(ValueError):  # not a network: the email prefix alone
            # Stored normalized (certificates.allowlist); an address with its mask finds its network.
            match |= Q(network=str(ipaddress.ip_network(term, strict=False)))
        return queryset.filter(match), False


class PendingFirstFilter(admin.SimpleListFilter):
    """The queue opens on what waits for a decision."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [*AccessRequest.Status.choices, ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": (self.value() or AccessRequest.Status.PENDING) == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
        value = self.value() or AccessRequest.Status.PENDING
        return queryset if value == "all" else queryset.filter(status=value)


@admin.register(AccessRequest)
class AccessRequestAdmin(admin.ModelAdmin[AccessRequest]):
    """Staff's queue: accounts waiting for admission (PORTAL_ADMISSION=approval) and users asking for room."""

    list_display = ("created_at", "email", "kind", "status", "note", "held", "decided_by", "decided_at")
    list_filter = (PendingFirstFilter, "kind")
    list_select_related = ("user", "decided_by")
    search_fields = ("user__username", "user__email", "note")
    actions = ("approve_selected", "refuse_selected")
    readonly_fields = ("user", "kind", "status", "note", "created_at", "decided_at", "decided_by")

    @admin.display(description="account", ordering="user__email")
    def email(self, obj: AccessRequest) -> str:
        return obj.user.email or obj.user.get_username()

    @admin.display(description="certificates held")
    def held(self, obj: AccessRequest) -> int:
        return admission.held_by(obj.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users ask from their dashboard

    def has_delete_permission(self, request: HttpRequest, obj: AccessRequest | None = None) -> bool:
        return False  # decisions are history

    @admin.action(description="Approve selected requests (for room: once there is room)")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[AccessRequest]) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Refuse selected requests")
    def refuse_selected(self, request: HttpRequest, queryset: QuerySet[AccessRequest]) -> None:
        self._decide(request, queryset, approve=False)

    def _decide(self, request: HttpRequest, queryset: QuerySet[AccessRequest], *, approve: bool) -> None:
        decided = sum(
            services.access_request_decide(request=item, approve=approve, origin=origin_of(request))
            for item in queryset.select_related("user")
        )
        verb = "approved" if approve else "refused"
        self.message_user(request, f"{decided} request{'s' if decided != 1 else ''} {verb}; the users are emailed.")
        if decided < queryset.count():
            self.message_user(request, "Requests decided before were left as they were.", messages.WARNING)


# -- Portal CAs (README, "Issuers") ---------------------------------------------------------------------------


class AuthorityCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="The CA's common name, e.g. “Example API clients 2027”.")
    algorithm = forms.ChoiceField(
        choices=list(pki.ALGORITHMS.items()), initial=pki.DEFAULT_ALGORITHM, label="Key algorithm"
    )
    validity_days = forms.IntegerField(
        min_value=pki.MIN_CA_VALIDITY_DAYS,
        max_value=pki.MAX_CA_VALIDITY_DAYS,
        initial=authorities.DEFAULT_VALIDITY_DAYS,
        help_text="Every certificate it signs ends by then at the latest; plan its successor well before.",
    )


class SecretTextarea(forms.Textarea):
    """Never renders a submitted value back: a form shown again after an error asks for the key again, so the key
    is in no page the portal sends."""

    def format_value(self, value: Any) -> None:
        return None


class AuthorityImportForm(forms.Form):
    name = forms.CharField(max_length=100)
    chain_pem = forms.CharField(
        label="CA certificate and chain (PEM)",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 70}),
        help_text="The issuing CA first, then the certificates above it. Use an intermediate dedicated to the portal.",
    )
    key_pem = forms.CharField(
        label="The CA's private key (PEM)",
        strip=False,
        widget=SecretTextarea(attrs={"rows": 8, "cols": 70, "autocomplete": "off"}),
        help_text="Stored encrypted with PORTAL_CA_ENCRYPTION_KEY and never shown again.",
    )
    password = forms.CharField(
        label="Password of the key, if it is encrypted", required=False, strip=False, widget=forms.PasswordInput
    )


IMPORT_TITLE = "Import a CA (an intermediate and its key)"


class AuthorityRemoveForm(forms.Form):
    force = forms.BooleanField(
        required=False,
        label="Remove it anyway: its certificates still in use stop working at the edge at once",
    )


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(ServiceActionsAdmin[CertificateAuthority]):
    """Portal CAs: made or imported here, uploaded to the Cloudflare account with the API hostnames associated,
    made the zone's issuer, and removed. The private key is never among the fields: no page shows it."""

    noun = "portal CA"
    list_display = (
        "name",
        "status",
        "key_algorithm",
        "subject_key_identifier",
        "not_after",
        "certificates_in_use",
        "issuer_of",
    )
    list_filter = ("status",)
    search_fields = ("name", "subject_key_identifier", "cloudflare_id")
    actions = ("upload_selected",)
    # Every field but the encrypted key and the CRL's bytes, all read-only: the services change CAs.
    fields = (
        "name",
        "status",
        "key_algorithm",
        "imported",
        "subject",
        "subject_key_identifier",
        "not_before",
        "not_after",
        "cloudflare_id",
        "certificate_pem",
        "chain_pem",
        "crl_number",
        "crl_this_update",
        "crl_next_update",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[CertificateAuthority]:
        now = timezone.now()
        in_use = Q(certificates__status__in=authorities.IN_USE) & (
            Q(certificates__expires_on__isnull=True) | Q(certificates__expires_on__gt=now)
        )
        queryset = super().get_queryset(request).annotate(in_use=Count("certificates", filter=in_use))
        return queryset.prefetch_related("zones")

    @admin.display(description="certificates in use", ordering="in_use")
    def certificates_in_use(self, obj: CertificateAuthority) -> int:
        return int(getattr(obj, "in_use", 0))

    @admin.display(description="issuer of zone")
    def issuer_of(self, obj: CertificateAuthority) -> str:
        return ", ".join(zone.zone_id for zone in obj.zones.all()) or "-"

    def has_change_permission(self, request: HttpRequest, obj: CertificateAuthority | None = None) -> bool:
        return False  # the services change CAs, through the buttons and actions below

    def has_delete_permission(self, request: HttpRequest, obj: CertificateAuthority | None = None) -> bool:
        return False  # certificates point to it, and the audit log; "remove from Cloudflare" instead

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("certificates.change_certificateauthority")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        zone = Zone.objects.filter(zone_id=get_zone_id()).select_related("issuer").first()
        issuer = authorities.issuer_name(zone.issuer if zone else None)
        subtitle = f"New certificates of zone {get_zone_id()} are signed by {issuer}."
        context = {"subtitle": subtitle, "can_manage": self.has_manage_permission(request)}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"can_manage": self.has_manage_permission(request)}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **context})

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        prefix = "certificates_certificateauthority"
        return [
            path("import/", view(self.import_view), name=f"{prefix}_import"),
            path("managed/", view(self.managed_view), name=f"{prefix}_managed"),
            path("<int:pk>/upload/", view(self.upload_view), name=f"{prefix}_upload"),
            path("<int:pk>/issuer/", view(self.issuer_view), name=f"{prefix}_issuer"),
            path("<int:pk>/remove/", view(self.remove_view), name=f"{prefix}_remove"),
            *super().get_urls(),
        ]

    # -- making and importing --------------------------------------------------------------------------------

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AuthorityCreateForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            data = form.cleaned_data
            return self._made(
                request,
                form,
                lambda: authorities.authority_create(
                    name=data["name"],
                    algorithm=data["algorithm"],
                    validity_days=data["validity_days"],
                    origin=origin_of(request),
                ),
                done="created",
                page=("Create a portal CA", "Create"),
            )
        return self._form_page(request, form, title="Create a portal CA", submit="Create")

    @method_decorator(sensitive_post_parameters("key_pem", "password"))
    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AuthorityImportForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            data = form.cleaned_data
            return self._made(
                request,
                form,
                lambda: authorities.authority_import(
                    name=data["name"],
                    chain_pem=data["chain_pem"],
                    key_pem=data["key_pem"],
                    password=data["password"],
                    origin=origin_of(request),
                ),
                done="imported",
                page=(IMPORT_TITLE, "Import"),
            )
        return self._form_page(request, form, title=IMPORT_TITLE, submit="Import")

    def _made(
        self,
        request: HttpRequest,
        form: forms.Form,
        make: Callable[[], CertificateAuthority],
        *,
        done: str,
        page: tuple[str, str],
    ) -> HttpResponse:
        try:
            ca = make()
        except services.ServiceError as exc:
            form.add_error(None, exc.message)
            title, submit = page
            return self._form_page(request, form, title=title, submit=submit)
        self.log_addition(request, ca, f"Portal CA {done}.")  # the history names the action, never the key
        self.message_user(
            request,
            f"Portal CA “{ca.name}” {done} (SKI {ca.subject_key_identifier}); its private key is stored encrypted "
            "and never shown. Next: upload it to Cloudflare.",
            messages.SUCCESS,
        )
        return redirect(self._change_url(ca))

    def _form_page(self, request: HttpRequest, form: forms.Form, *, title: str, submit: str) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/certificates/authority_form.html",
            {**self.admin_site.each_context(request), "title": title, "form": form, "submit": submit, **self._opts()},
        )

    # -- at Cloudflare and the zone's issuer -----------------------------------------------------------------

    @admin.action(description="Upload selected CAs and associate the API hostnames", permissions=["manage"])
    def upload_selected(self, request: HttpRequest, queryset: QuerySet[CertificateAuthority]) -> None:
        self._apply(
            request,
            queryset,
            lambda ca: authorities.authority_upload(authority=ca, origin=origin_of(request), interactive=True),
            "uploaded and associated with the API hostnames",
        )

    def upload_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        ca = self._managed(request, pk)
        if request.method != "POST":
            return self._confirm(
                request,
                ca,
                title=f"Upload “{ca.name}” to Cloudflare",
                explanation=[
                    f"The CA certificate is uploaded to account {settings.CLOUDFLARE_ACCOUNT_ID} (bring your own CA, "
                    "Enterprise) and associated with "
                    f"{', '.join(settings.PORTAL_API_HOSTNAMES)}: certificates it signs then verify at the edge.",
                    "The private key stays in the portal.",
                ],
                submit="Upload and associate",
            )
        self._outcome(
            request,
            lambda: authorities.authority_upload(authority=ca, origin=origin_of(request), interactive=True),
            f"Portal CA “{ca.name}” is uploaded and associated with {', '.join(settings.PORTAL_API_HOSTNAMES)}.",
        )
        return redirect(self._change_url(ca))

    def issuer_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        ca = self._managed(request, pk)
        if request.method != "POST":
            return self._confirm(
                request,
                ca,
                title=f"Make “{ca.name}” the issuer of zone {get_zone_id()}",
                explanation=[
                    f"New certificates of the zone are signed by “{ca.name}”, without a call to Cloudflare and with "
                    "no per-zone limit. Certificates issued before keep their issuer until they expire or are "
                    "replaced.",
                    "If another portal CA issues now, the owners of its certificates are emailed to renew, and it "
                    "is removed from Cloudflare once its last certificate is gone.",
                ],
                submit="Make it the issuer",
            )
        self._set_issuer(request, ca)
        return redirect(self._change_url(ca))

    def managed_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_manage_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return self._confirm(
                request,
                None,
                title=f"Issue the certificates of zone {get_zone_id()} with Cloudflare's managed CA",
                explanation=[
                    "New certificates are signed by Cloudflare's managed CA again (a call to Cloudflare each, at "
                    f"most CLOUDFLARE_ZONE_CAPACITY = {settings.CLOUDFLARE_ZONE_CAPACITY} in the zone).",
                    "Certificates of the portal CA keep working until they expire or are replaced; their owners are "
                    "emailed to renew, and the CA is removed from Cloudflare once its last certificate is gone.",
                ],
                submit="Use Cloudflare's managed CA",
            )
        self._set_issuer(request, None)
        return redirect(self._changelist_url())

    def _set_issuer(self, request: HttpRequest, ca: CertificateAuthority | None) -> None:
        try:
            change = authorities.zone_set_issuer(zone_id=get_zone_id(), authority=ca, origin=origin_of(request))
        except services.ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, change.summary(), messages.SUCCESS if change.changed else messages.INFO)
        for note in change.notes:
            self.message_user(request, note, messages.WARNING)

    def remove_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        ca = self._managed(request, pk)
        form = AuthorityRemoveForm(request.POST if request.method == "POST" else None)
        if not form.is_valid():
            in_use = authorities.authority_certificates_in_use(ca, now=timezone.now()).count()
            return self._confirm(
                request,
                ca,
                title=f"Remove “{ca.name}” from Cloudflare",
                explanation=[
                    "Its hostname associations are removed, then its upload: nothing it signed verifies at the edge "
                    "any more, and it cannot be uploaded again.",
                    f"{in_use} certificate{'s' if in_use != 1 else ''} it signed "
                    f"{'are' if in_use != 1 else 'is'} still in use.",
                ],
                submit="Remove from Cloudflare",
                form=form if in_use else None,
            )
        self._outcome(
            request,
            lambda: authorities.authority_remove(
                authority=ca, origin=origin_of(request), force=form.cleaned_data["force"], interactive=True
            ),
            f"Portal CA “{ca.name}” is removed from Cloudflare.",
        )
        return redirect(self._change_url(ca))

    def _managed(self, request: HttpRequest, pk: int) -> CertificateAuthority:
        if not self.has_manage_permission(request):
            raise PermissionDenied
        ca: CertificateAuthority = get_object_or_404(CertificateAuthority, pk=pk)
        return ca

    def _outcome(self, request: HttpRequest, call: Callable[[], object], done: str) -> None:
        try:
            call()
        except services.ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)

    def _confirm(
        self,
        request: HttpRequest,
        ca: CertificateAuthority | None,
        *,
        title: str,
        explanation: list[str],
        submit: str,
        form: forms.Form | None = None,
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/certificates/authority_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "authority": ca,
                "explanation": explanation,
                "submit": submit,
                "form": form,
                "cancel_url": self._change_url(ca) if ca else self._changelist_url(),
                **self._opts(),
            },
        )

    def _opts(self) -> dict[str, Any]:
        return {"opts": self.model._meta, "app_label": self.model._meta.app_label}

    @staticmethod
    def _changelist_url() -> str:
        return reverse("admin:certificates_certificateauthority_changelist")

    @staticmethod
    def _change_url(ca: CertificateAuthority) -> str:
        return reverse("admin:certificates_certificateauthority_change", args=[ca.pk])

    def describe(self, obj: CertificateAuthority) -> str:
        return obj.name
