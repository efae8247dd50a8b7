"""Django admin: certificates (revoke with a reason, reactivate while pending), certificates made outside the
portal (adopt for a user, or revoke), tokens, the audit log, and the queue of access requests (admission, room
in a full zone)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from certificates import admission, services
from certificates.models import AccessRequest, AllowlistEntry, ApiToken, AuditEvent, Certificate, UnknownCertificate
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
    """Actions that call a service for each selected certificate, then report what succeeded and each refusal."""

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
                request, f"{succeeded} certificate{'s' if succeeded != 1 else ''} {done}.", messages.SUCCESS
            )
        for failure in failures:
            self.message_user(request, failure, messages.ERROR)


@admin.register(Certificate)
class CertificateAdmin(ServiceActionsAdmin[Certificate]):
    list_display = ("name", "owner", "status", "expires_on", "fingerprint_sha256", "common_name", "created_at")
    list_filter = ("status", ExpiryFilter)
    search_fields = (
        "owner__username",
        "owner__email",
        "fingerprint_sha256",
        "serial_number",
        "common_name",
        "name",
        "cloudflare_id",
    )
    list_select_related = ("owner",)
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
            "revoked (pending at Cloudflare)",
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

    def describe(self, obj: Certificate) -> str:
        return obj.name


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ("name", "owner", "hint", "scope", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("scope",)
    list_select_related = ("owner",)
    search_fields = ("name", "owner__username", "owner__email")
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


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[AuditEvent]):
    list_display = ("created_at", "action", "actor", "certificate", "old_status", "new_status", "remote_addr")
    list_filter = ("action",)
    search_fields = ("actor__username", "actor__email", "certificate__fingerprint_sha256", "certificate__name")
    list_select_related = ("actor", "certificate")


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
class AllowlistEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[AllowlistEntry]):
    """Read-only: a user's list is changed through the page or the API, which check it and queue a sync."""

    list_display = ("owner", "network", "created_at")
    list_select_related = ("owner",)
    search_fields = ("owner__username", "owner__email", "network")


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
