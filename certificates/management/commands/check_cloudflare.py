"""python manage.py check_cloudflare [--fix]: is mTLS enforced at the edge, and can the portal keep it so?

One line per check, "ok ...", "warn ..." or "FAIL ..."; the command exits non-zero when any check fails.
- the token reads client certificates, hostname associations and the custom rules (FACTS.md §10; Cloudflare's
  API has no call that lists a token's permissions, so edit rights are inferred from the reads and named);
- mTLS is enabled on every PORTAL_API_HOSTNAMES entry (--fix adds the missing ones to the associations);
- the zone's custom-rules entrypoint holds the portal's base rule, enabled, blocking, covering every API hostname,
  and the portal's rules come first: a rule of someone else's above them (a `skip` rule above all) can switch
  mTLS off for the requests it matches (FACTS.md §14);
- portal CAs (bring your own CA): which CA issues; each trusted CA is uploaded to the account and associated
  with every API hostname (--fix associates them again); the plan allows it (Enterprise; the zone's plan is not
  in the API schema the portal follows, so CLOUDFLARE_PLAN says it); the account id is set;
- the call budget is shared by every process (REDIS_URL) and leaves headroom under Cloudflare's 1,200 calls;
- the last firewall sync pushed everything and did not fail.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import octorules_wirefilter
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from certificates.cloudflare_client import get_cloudflare_client, get_zone_id
from certificates.firewall.status import sync_trouble
from certificates.models import CertificateAuthority, FirewallState, Zone
from certificates.services import ServiceError, authorities
from certificates.services.audit import Origin
from cloudflare.client import CloudflareClient
from cloudflare.errors import AuthenticationError, CloudflareError, NotFoundError, PermissionDeniedError
from cloudflare.models import Rule, Ruleset

T = TypeVar("T")

# Cloudflare allows 1,200 calls per 5 minutes per user, across all tokens and the dashboard (FACTS.md §9).
CLOUDFLARE_LIMIT_PER_FIVE_MINUTES = 1200
# Above this the people and tools sharing the account have under 100 calls left before a 5-minute lock-out.
BUDGET_WARNING_ABOVE = 1100
SSL_EDIT = "Zone: SSL and Certificates Edit"
ACCOUNT_SSL_EDIT = "Account: SSL and Certificates Edit"
WAF_EDIT = "Zone: Zone WAF Edit"
# Fields the base rule must test: a verified certificate, not revoked (DESIGN.md, Firewall layout).
BASE_RULE_FIELDS = ("http.host", "cf.tls_client_auth.cert_verified", "cf.tls_client_auth.cert_revoked")


class Command(BaseCommand):
    help = "Check that mTLS is enforced at Cloudflare for PORTAL_API_HOSTNAMES and that the portal can keep it so."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fix", action="store_true", help="associate the API hostnames with the managed CA and the portal CAs"
        )

    def handle(self, *args: Any, fix: bool, **options: Any) -> None:
        client = get_cloudflare_client()
        zone_id = get_zone_id()
        where = "the built-in emulator" if settings.CLOUDFLARE_EMULATED else settings.CLOUDFLARE_API_BASE_URL
        self.stdout.write(f"Zone {zone_id} at {where}")
        self.failures = 0
        self._read(
            f"client certificates ({SSL_EDIT})", lambda: client.list_client_certificates_page(zone_id, per_page=5)
        )
        self._check_hostnames(client, zone_id, fix=fix)
        self._check_portal_cas(client, zone_id, fix=fix)
        readable, entrypoint = self._read(f"custom rules ({WAF_EDIT})", lambda: client.get_entrypoint(zone_id))
        if readable:
            self._check_rules(entrypoint)
        self._check_budget()
        self._check_last_sync(zone_id)
        if self.failures:
            raise CommandError(f"{self.failures} check(s) failed.")
        self.stdout.write(self.style.SUCCESS("All checks passed."))

    # -- output ----------------------------------------------------------------------------------------------

    def _ok(self, message: str) -> None:
        self.stdout.write(f"ok {message}")

    def _warn(self, message: str) -> None:
        self.stdout.write(self.style.WARNING(f"warn {message}"))

    def _fail(self, message: str) -> None:
        self.failures += 1
        self.stdout.write(self.style.ERROR(f"FAIL {message}"))

    # -- the token ---------------------------------------------------------------------------------------------

    def _read(self, what: str, call: Callable[[], T]) -> tuple[bool, T | None]:
        """One read call, and whether it worked; the token's rights are inferred from it (no endpoint lists them)."""
        try:
            result = call()
        except (AuthenticationError, PermissionDeniedError) as exc:
            self._fail(f"{what}: the token may not read this ({exc})")
        except NotFoundError as exc:
            self._fail(f"{what}: the zone was not found ({exc})")
        except CloudflareError as exc:
            self._fail(f"{what}: {exc}")
        else:
            self._ok(f"{what}: readable")
            return True, result
        return False, None

    # -- mTLS on the API hostnames -------------------------------------------------------------------------

    def _check_hostnames(self, client: CloudflareClient, zone_id: str, *, fix: bool) -> None:
        wanted = _api_hostnames()
        if not wanted:
            self._fail("PORTAL_API_HOSTNAMES is empty: nothing is protected")
            return
        try:
            current = client.get_hostname_associations(zone_id).hostnames
        except CloudflareError as exc:
            self._fail(f"hostname associations ({SSL_EDIT}): {exc}")
            return
        missing = [name for name in wanted if name not in current]
        if not missing:
            self._ok(f"mTLS is enabled on {', '.join(wanted)}")
        elif not fix:
            self._fail(f"mTLS is not enabled on {', '.join(missing)}; run with --fix to enable it")
        else:
            self._enable_mtls(client, zone_id, current=list(current), missing=missing)

    def _enable_mtls(self, client: CloudflareClient, zone_id: str, *, current: list[str], missing: list[str]) -> None:
        try:
            # The PUT replaces the whole set (FACTS.md §4): keep what is there, add ours.
            client.put_hostname_associations(zone_id, [*current, *missing])
        except CloudflareError as exc:
            self._fail(f"could not enable mTLS on {', '.join(missing)}: {exc}")
            return
        self._ok(f"mTLS enabled on {', '.join(missing)}")

    # -- portal CAs (bring your own CA, FACTS.md §3, §4) ------------------------------------------------------

    def _check_portal_cas(self, client: CloudflareClient, zone_id: str, *, fix: bool) -> None:
        zone = Zone.objects.filter(zone_id=zone_id).select_related("issuer").first()
        issuer = zone.issuer if zone is not None else None
        trusted = list(CertificateAuthority.objects.filter(status=CertificateAuthority.Status.TRUSTED))
        for ca in CertificateAuthority.objects.filter(status=CertificateAuthority.Status.CREATED):
            self._warn(
                f"portal CA {_ca(ca)} is not uploaded to Cloudflare yet: python manage.py portal_ca upload {ca.pk}"
            )
        if issuer is None:
            self._ok(f"new certificates are signed by {authorities.MANAGED_CA}")
        elif issuer.status != CertificateAuthority.Status.TRUSTED:
            self._fail(
                f"the zone's issuer, portal CA {_ca(issuer)}, is {issuer.get_status_display().lower()}: what it signs "
                f"does not verify at the edge; python manage.py portal_ca upload {issuer.pk}, or portal_ca issuer "
                "managed"
            )
        else:
            self._ok(f"new certificates are signed by portal CA {_ca(issuer)}")
        if not trusted:
            return
        self._check_plan()
        if not self._account_id_set():
            return
        for ca in trusted:
            self._check_upload(client, ca, fix=fix)
            self._check_expiry(ca)

    def _check_plan(self) -> None:
        if settings.CLOUDFLARE_PLAN == "enterprise":
            self._ok("the plan allows portal CAs (bring your own CA needs Enterprise; CLOUDFLARE_PLAN=enterprise)")
            return
        problem = (
            f"portal CAs need bring your own CA, which only Enterprise accounts have, and CLOUDFLARE_PLAN is "
            f"{settings.CLOUDFLARE_PLAN}: if the account is on Enterprise, set CLOUDFLARE_PLAN=enterprise; if not, "
            "issue with the managed CA again (python manage.py portal_ca issuer managed)"
        )
        if settings.CLOUDFLARE_EMULATED:
            self._warn(f"{problem} (the emulator accepts an upload on any plan, Cloudflare does not)")
        else:
            self._fail(problem)

    def _check_expiry(self, ca: CertificateAuthority) -> None:
        if ca.not_after <= timezone.now() + timedelta(days=authorities.EXPIRY_WARNING_DAYS):
            self._warn(
                f"portal CA {_ca(ca)} expires on {ca.not_after:%Y-%m-%d}: what it signed stops working then; "
                "create its successor, upload it and make it the issuer (README, “Rotating a portal CA”)"
            )

    def _account_id_set(self) -> bool:
        if not settings.CLOUDFLARE_ACCOUNT_ID:
            self._fail(
                "CLOUDFLARE_ACCOUNT_ID is not set, so the portal cannot read its uploaded CAs: set it to the "
                "account's id (the account's overview page in the dashboard)"
            )
            return False
        return True

    def _check_upload(self, client: CloudflareClient, ca: CertificateAuthority, *, fix: bool) -> None:
        account_id = settings.CLOUDFLARE_ACCOUNT_ID
        redo = f"python manage.py portal_ca upload {ca.pk}"
        try:
            uploaded = client.get_mtls_certificate(account_id, ca.cloudflare_id) if ca.cloudflare_id else None
            associated = (
                client.get_hostname_associations(get_zone_id(), mtls_certificate_id=ca.cloudflare_id).hostnames
                if uploaded is not None
                else ()
            )
        except NotFoundError:
            uploaded, associated = None, ()
        except (AuthenticationError, PermissionDeniedError) as exc:
            self._fail(f"portal CA {_ca(ca)}: the token may not read uploaded CAs ({ACCOUNT_SSL_EDIT}): {exc}")
            return
        except CloudflareError as exc:
            self._fail(f"portal CA {_ca(ca)}: {exc}")
            return
        if uploaded is None or not uploaded.ca:
            self._fail_or_fix(
                ca,
                fix=fix,
                problem="is not uploaded to the account (or not as a CA): what it signed fails at the edge",
                redo=redo,
            )
            return
        missing = [name for name in _api_hostnames() if name not in {h.lower() for h in associated}]
        if missing:
            self._fail_or_fix(
                ca,
                fix=fix,
                problem=f"is not associated with {', '.join(missing)}: what it signed is not verified there",
                redo=redo,
            )
            return
        self._ok(f"portal CA {_ca(ca)} is uploaded ({ca.cloudflare_id}) and associated with every API hostname")

    def _fail_or_fix(self, ca: CertificateAuthority, *, fix: bool, problem: str, redo: str) -> None:
        if not fix:
            self._fail(f"portal CA {_ca(ca)} {problem}; run with --fix, or {redo}")
            return
        try:
            authorities.authority_upload(authority=ca, origin=Origin(actor=None))
        except ServiceError as exc:
            self._fail(f"portal CA {_ca(ca)} {problem}, and uploading it again failed: {exc.message}")
        else:
            self._ok(f"portal CA {_ca(ca)} uploaded and associated with every API hostname again")

    # -- the custom rules ----------------------------------------------------------------------------------

    def _check_rules(self, entrypoint: Ruleset | None) -> None:
        if entrypoint is None:
            self._fail(
                "the zone has no custom-rules entrypoint (http_request_firewall_custom): no portal rule is in "
                "force; run python manage.py sync_firewall"
            )
            return
        self._check_base_rule(entrypoint)
        self._check_order(entrypoint)

    def _check_base_rule(self, entrypoint: Ruleset) -> None:
        ref = f"{settings.PORTAL_RULE_REF_PREFIX}base"
        rule = entrypoint.rule_by_ref(ref)
        if rule is None:
            self._fail(
                f"the base rule {ref} is missing: certificates are not checked; run python manage.py sync_firewall"
            )
            return
        problems = _base_rule_problems(rule)
        if problems:
            self._fail(f"the base rule {ref} {'; '.join(problems)}; run python manage.py sync_firewall")
        else:
            self._ok(f"the base rule {ref} blocks requests without a valid certificate on every API hostname")

    def _check_order(self, entrypoint: Ruleset) -> None:
        prefix = settings.PORTAL_RULE_REF_PREFIX
        positions = [index for index, rule in enumerate(entrypoint.rules) if rule.ref.startswith(prefix)]
        if not positions:
            return  # the missing base rule has failed already
        above = [rule for rule in entrypoint.rules[: positions[-1]] if not rule.ref.startswith(prefix)]
        for rule in above:
            if rule.action == "skip":
                self._fail(
                    f"skip rule {_name(rule)} sits above the portal's rules: the requests it matches skip the "
                    "mTLS checks; move it below them or remove it"
                )
            else:
                self._fail(
                    f"rule {_name(rule)} (action {rule.action}) sits above the portal's rules, which must come "
                    "first; python manage.py sync_firewall moves them back on top"
                )
        if not above:
            self._ok(f"the portal's {len(positions)} rule(s) come first in the entrypoint")

    # -- the call budget -----------------------------------------------------------------------------------

    def _check_budget(self) -> None:
        if settings.REDIS_URL:
            self._ok("the call budget is shared by every process through REDIS_URL")
        elif settings.CLOUDFLARE_EMULATED:
            self._ok("the call budget is per process (fine for the emulator; a real token needs REDIS_URL)")
        else:
            self._fail(
                "REDIS_URL is not set: each process (web, worker, beat) would spend CLOUDFLARE_CALL_BUDGET on its "
                "own and together they can pass Cloudflare's limit, which locks every call out for 5 minutes"
            )
        per_five_minutes = round(
            settings.CLOUDFLARE_CALL_BUDGET * max(1.0, 300 / settings.CLOUDFLARE_CALL_BUDGET_WINDOW)
        )
        if per_five_minutes > BUDGET_WARNING_ABOVE:
            self._warn(
                f"the call budget allows {per_five_minutes} calls per 5 minutes (CLOUDFLARE_CALL_BUDGET, "
                f"CLOUDFLARE_CALL_BUDGET_WINDOW): people using the dashboard draw from the same "
                f"{CLOUDFLARE_LIMIT_PER_FIVE_MINUTES}; keep it at {BUDGET_WARNING_ABOVE} or less"
            )
        else:
            self._ok(
                f"the call budget allows {per_five_minutes} of Cloudflare's "
                f"{CLOUDFLARE_LIMIT_PER_FIVE_MINUTES} calls per 5 minutes"
            )

    # -- the last sync ------------------------------------------------------------------------------------

    def _check_last_sync(self, zone_id: str) -> None:
        trouble = sync_trouble(zone_id=zone_id)
        if trouble is not None:
            self._warn(f"{trouble.summary()}; see /staff/firewall/")
            return
        state = FirewallState.objects.filter(zone_id=zone_id).first()
        if state is None or state.last_synced_at is None:
            self._warn("no firewall sync has run yet: python manage.py sync_firewall")
        else:
            self._ok(f"the last firewall sync ({state.last_synced_at:%Y-%m-%d %H:%M:%S} UTC) pushed every rule")


def _ca(ca: CertificateAuthority) -> str:
    return f"{ca.pk} “{ca.name}”"


def _api_hostnames() -> list[str]:
    return [name.lower() for name in settings.PORTAL_API_HOSTNAMES]


def _base_rule_problems(rule: Rule) -> list[str]:
    """What keeps the base rule from blocking requests without a valid certificate on every API hostname."""
    problems = []
    if not rule.enabled:
        problems.append("is disabled")
    if rule.action != "block":
        problems.append(f"has action {rule.action}, not block")
    parsed = octorules_wirefilter.parse_expression(rule.expression)
    if parsed.get("error"):
        return [*problems, "has an expression Cloudflare's parser refuses"]
    unchecked = [field for field in BASE_RULE_FIELDS if field not in parsed["fields"]]
    if unchecked:
        problems.append(f"does not test {', '.join(unchecked)}")
    covered = {literal.lower() for literal in parsed["string_literals"]}
    missing = [name for name in _api_hostnames() if name not in covered]
    if missing:
        problems.append(f"does not cover {', '.join(missing)}")
    return problems


def _name(rule: Rule) -> str:
    label = f'"{rule.description}" ' if rule.description else ""
    disabled = ", disabled" if not rule.enabled else ""
    return f"{label}(ref {rule.ref}{disabled})"
