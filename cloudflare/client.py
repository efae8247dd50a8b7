"""A typed client for the Cloudflare v4 endpoints the portal uses.

Plain Python (no Django): one `requests.Session`, a timeout on every call, the shared call budget before
every attempt, retries per `cloudflare.retry`, and typed results and errors. The token is sent in a header
and never logged; request and response bodies are never logged either (they carry CSRs and CA keys).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from cloudflare import __version__
from cloudflare.budget import CallBudget, LocalBudget, acquire
from cloudflare.errors import (
    AmbiguousRequestError,
    APIError,
    ConnectError,
    DeadlineAfterSendError,
    DeadlineExceededError,
    ErrorDetail,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    TransportError,
    error_class_for,
)
from cloudflare.models import (
    CertificateStatus,
    ClientCertificate,
    HostnameAssociation,
    MTLSAssociation,
    MTLSCertificate,
    ResultInfo,
    Rule,
    Ruleset,
    RuleSpec,
)
from cloudflare.retry import IDEMPOTENT_METHODS, RetryPolicy

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
FIREWALL_CUSTOM_PHASE = "http_request_firewall_custom"
MAX_PER_PAGE = 50  # FACTS.md §1: per_page is 5..50
MIN_PER_PAGE = 5
MAX_VALIDITY_DAYS = 3650  # Cloudflare's own example value; the schema gives no bound (FACTS.md §2)
# The one CSR size limit: the portal's policy uses it too (certificates/policy.py). A PEM CSR for an RSA 4096 key
# is under 2 KiB; the client refuses larger input itself because callers other than the portal may use it.
MAX_CSR_BYTES = 8 * 1024
CSR_MARKERS = ("-----BEGIN CERTIFICATE REQUEST-----", "-----BEGIN NEW CERTIFICATE REQUEST-----")

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Envelope:
    result: Any
    result_info: ResultInfo | None
    messages: tuple[ErrorDetail, ...]


@dataclass(frozen=True)
class Page:
    items: tuple[ClientCertificate, ...]
    info: ResultInfo

    def is_last(self, page_number: int, per_page: int) -> bool:
        """No page follows this one: how iter_client_certificates stops, for callers that page themselves."""
        return _is_last_page(self, page_number, per_page)


class CloudflareClient:
    # Writes that may have reached Cloudflare without the client learning their outcome, retried or not. Such a
    # write can still commit later, over a newer one: a caller that counts them can check again afterwards.
    uncertain_writes: int = 0

    def __init__(
        self,
        *,
        api_token: str,
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        budget: CallBudget | None = None,
        wait_for_budget: bool = True,
        max_budget_wait: float | None = 60.0,
        budget_reserve: int = 0,
        deadline: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_call: CallObserver | None = None,
    ) -> None:
        if not api_token:
            raise InvalidArgumentError("a Cloudflare API token is required")
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.budget: CallBudget = budget or LocalBudget()
        if not 0 <= budget_reserve < self.budget.limit:
            raise InvalidArgumentError(f"budget_reserve must be between 0 and {self.budget.limit - 1}")
        self.wait_for_budget = wait_for_budget
        self.max_budget_wait = max_budget_wait
        # Slots of the budget's window this client leaves to others (cloudflare.budget, "Priorities").
        self.budget_reserve = budget_reserve
        self._sleep = sleep
        self._clock = clock
        # A web request's bound on its time with Cloudflare, counted from the client's creation (one client per
        # request): every attempt, backoff, Retry-After sleep and budget wait must fit in what is left of it.
        self.deadline = deadline
        self._deadline_at = None if deadline is None else clock() + deadline
        self._rng = rng or random.Random()  # jitter, not security
        self._api_token = api_token
        # Told of every HTTP attempt (for metrics): it must not raise, and if it does the call goes on regardless.
        self._on_call = on_call

    def __repr__(self) -> str:
        return f"CloudflareClient(base_url={self.base_url!r})"

    # -- client certificates (FACTS.md §2) ---------------------------------------------------------------

    def create_client_certificate(self, zone_id: str, *, csr: str, validity_days: int) -> ClientCertificate:
        """Ask Cloudflare's managed CA to sign `csr`.

        Never repeated after the request may have reached Cloudflare: a timeout or 5xx raises
        AmbiguousRequestError, and the caller reconciles (list and match the CSR) before trying again.
        """
        _check_zone_id(zone_id)
        _check_csr(csr)
        _check_validity_days(validity_days)
        body = {"csr": csr, "validity_days": validity_days}
        envelope = self._call("POST", f"/zones/{zone_id}/client_certificates", json_body=body)
        return ClientCertificate.from_api(envelope.result)

    def get_client_certificate(self, zone_id: str, certificate_id: str) -> ClientCertificate:
        _check_zone_id(zone_id)
        _check_object_id(certificate_id, "client certificate id")
        envelope = self._call("GET", f"/zones/{zone_id}/client_certificates/{certificate_id}")
        return ClientCertificate.from_api(envelope.result)

    def revoke_client_certificate(self, zone_id: str, certificate_id: str) -> ClientCertificate:
        """Start revocation: the certificate becomes `pending_revocation`, later `revoked`."""
        _check_zone_id(zone_id)
        _check_object_id(certificate_id, "client certificate id")
        envelope = self._call("DELETE", f"/zones/{zone_id}/client_certificates/{certificate_id}")
        # None: an earlier attempt went through and the retry found the certificate gone (see _call).
        return ClientCertificate.from_api(envelope.result or {"id": certificate_id, "status": "revoked"})

    def reactivate_client_certificate(self, zone_id: str, certificate_id: str) -> ClientCertificate:
        """Undo a revocation that is still `pending_revocation` (SPEC-2026 body, FACTS.md §2)."""
        _check_zone_id(zone_id)
        _check_object_id(certificate_id, "client certificate id")
        envelope = self._call(
            "PATCH",
            f"/zones/{zone_id}/client_certificates/{certificate_id}",
            json_body={"reactivate": True},
        )
        return ClientCertificate.from_api(envelope.result)

    def list_client_certificates_page(
        self,
        zone_id: str,
        *,
        page: int = 1,
        per_page: int = MAX_PER_PAGE,
        status: CertificateStatus | str | None = None,
    ) -> Page:
        _check_zone_id(zone_id)
        if page < 1:
            raise InvalidArgumentError("page starts at 1")
        if not MIN_PER_PAGE <= per_page <= MAX_PER_PAGE:
            raise InvalidArgumentError(f"per_page must be between {MIN_PER_PAGE} and {MAX_PER_PAGE}")
        params: dict[str, Any] = {"page": page, "per_page": per_page}
        if status is not None:
            params["status"] = _check_status_filter(status)
        envelope = self._call("GET", f"/zones/{zone_id}/client_certificates", params=params)
        items = tuple(ClientCertificate.from_api(item) for item in envelope.result or ())
        info = envelope.result_info or ResultInfo(page, per_page, len(items), None, None)
        return Page(items=items, info=info)

    def iter_client_certificates(
        self,
        zone_id: str,
        *,
        status: CertificateStatus | str = "all",
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[ClientCertificate]:
        """Every certificate of the zone with `status`, page by page, driven by `result_info`.

        `status` is always sent: the schema declares no default (FACTS.md §1), so "all" is asked for by name.

        Statuses can change while we page (a revocation completes), which shifts later pages; an id is
        yielded once even if it shows up on two pages.
        """
        seen: set[str] = set()
        page_number = 1
        while True:
            page = self.list_client_certificates_page(zone_id, page=page_number, per_page=per_page, status=status)
            for certificate in page.items:
                if certificate.id not in seen:
                    seen.add(certificate.id)
                    yield certificate
            if page.is_last(page_number, per_page):
                return
            page_number += 1

    # -- hostname associations (FACTS.md §4) -------------------------------------------------------------

    def get_hostname_associations(self, zone_id: str, *, mtls_certificate_id: str | None = None) -> HostnameAssociation:
        _check_zone_id(zone_id)
        params = {}
        if mtls_certificate_id is not None:
            _check_uuid(mtls_certificate_id, "mTLS certificate id")
            params["mtls_certificate_id"] = mtls_certificate_id
        envelope = self._call("GET", f"/zones/{zone_id}/certificate_authorities/hostname_associations", params=params)
        return HostnameAssociation.from_api(envelope.result or {}, mtls_certificate_id=mtls_certificate_id)

    def put_hostname_associations(
        self, zone_id: str, hostnames: Iterable[str], *, mtls_certificate_id: str | None = None
    ) -> HostnameAssociation:
        """Replace the whole set of hostnames for the managed CA (or the given uploaded CA)."""
        _check_zone_id(zone_id)
        names = [_check_hostname(name) for name in hostnames]
        body: dict[str, Any] = {"hostnames": names}
        if mtls_certificate_id is not None:
            _check_uuid(mtls_certificate_id, "mTLS certificate id")
            body["mtls_certificate_id"] = mtls_certificate_id
        envelope = self._call("PUT", f"/zones/{zone_id}/certificate_authorities/hostname_associations", json_body=body)
        return HostnameAssociation.from_api(envelope.result or {}, mtls_certificate_id=mtls_certificate_id)

    # -- account mTLS certificates: uploaded CAs (FACTS.md §3, §4) ---------------------------------------

    def list_mtls_certificates(self, account_id: str) -> list[MTLSCertificate]:
        _check_account_id(account_id)
        envelope = self._call("GET", f"/accounts/{account_id}/mtls_certificates")
        return [MTLSCertificate.from_api(item) for item in envelope.result or ()]

    def upload_mtls_certificate(
        self,
        account_id: str,
        *,
        certificates: str,
        name: str | None = None,
        ca: bool = True,
        private_key: str | None = None,
    ) -> MTLSCertificate:
        _check_account_id(account_id)
        if "-----BEGIN CERTIFICATE-----" not in (certificates or ""):
            raise InvalidArgumentError("certificates must be one or more PEM certificates")
        body: dict[str, Any] = {"ca": ca, "certificates": certificates}
        if name:
            body["name"] = name
        if private_key:
            body["private_key"] = private_key
        envelope = self._call("POST", f"/accounts/{account_id}/mtls_certificates", json_body=body)
        return MTLSCertificate.from_api(envelope.result)

    def get_mtls_certificate(self, account_id: str, mtls_certificate_id: str) -> MTLSCertificate:
        _check_account_id(account_id)
        _check_uuid(mtls_certificate_id, "mTLS certificate id")
        envelope = self._call("GET", f"/accounts/{account_id}/mtls_certificates/{mtls_certificate_id}")
        return MTLSCertificate.from_api(envelope.result)

    def delete_mtls_certificate(self, account_id: str, mtls_certificate_id: str) -> MTLSCertificate:
        """Fails while hostnames are still associated: PUT an empty set for this CA first (FACTS.md §4)."""
        _check_account_id(account_id)
        _check_uuid(mtls_certificate_id, "mTLS certificate id")
        # The official schema marks a JSON request body as required on this DELETE; an empty object satisfies it.
        envelope = self._call("DELETE", f"/accounts/{account_id}/mtls_certificates/{mtls_certificate_id}", json_body={})
        return MTLSCertificate.from_api(envelope.result or {"id": mtls_certificate_id})

    def list_mtls_certificate_associations(self, account_id: str, mtls_certificate_id: str) -> list[MTLSAssociation]:
        _check_account_id(account_id)
        _check_uuid(mtls_certificate_id, "mTLS certificate id")
        envelope = self._call("GET", f"/accounts/{account_id}/mtls_certificates/{mtls_certificate_id}/associations")
        return [MTLSAssociation.from_api(item) for item in envelope.result or ()]

    # -- rulesets: the zone's custom-rules entrypoint (FACTS.md §8) --------------------------------------

    def get_entrypoint(self, zone_id: str, *, phase: str = FIREWALL_CUSTOM_PHASE) -> Ruleset | None:
        """The zone's entrypoint ruleset for `phase`, or None when none was created yet (a 404)."""
        _check_zone_id(zone_id)
        try:
            envelope = self._call("GET", f"/zones/{zone_id}/rulesets/phases/{phase}/entrypoint")
        except APIError as exc:
            if exc.status == 404:
                return None
            raise
        return Ruleset.from_api(envelope.result)

    def create_entrypoint(
        self,
        zone_id: str,
        *,
        rules: Sequence[RuleSpec] = (),
        phase: str = FIREWALL_CUSTOM_PHASE,
        name: str = "default",
        description: str = "",
    ) -> Ruleset:
        _check_zone_id(zone_id)
        for rule in rules:
            _check_rule(rule)
        body = {
            "name": name,
            "description": description,
            "kind": "zone",
            "phase": phase,
            "rules": [rule.to_api() for rule in rules],
        }
        envelope = self._call("POST", f"/zones/{zone_id}/rulesets", json_body=body)
        return Ruleset.from_api(envelope.result)

    def add_rule(
        self, zone_id: str, ruleset_id: str, rule: RuleSpec, *, position: Mapping[str, Any] | None = None
    ) -> Ruleset:
        """Append one rule (or place it with `position`); other rules are left alone."""
        _check_zone_id(zone_id)
        _check_hex_id(ruleset_id, "ruleset id")
        _check_rule(rule)
        body = rule.to_api()
        if position is not None:
            body["position"] = _check_position(position)
        envelope = self._call("POST", f"/zones/{zone_id}/rulesets/{ruleset_id}/rules", json_body=body)
        return Ruleset.from_api(envelope.result)

    def update_rule(
        self,
        zone_id: str,
        ruleset_id: str,
        rule_id: str,
        rule: RuleSpec,
        *,
        position: Mapping[str, Any] | None = None,
    ) -> Ruleset:
        """Replace one rule's whole definition (PATCH takes the full rule, FACTS.md §8)."""
        _check_zone_id(zone_id)
        _check_hex_id(ruleset_id, "ruleset id")
        _check_hex_id(rule_id, "rule id")
        _check_rule(rule)
        body = rule.to_api()
        if position is not None:
            body["position"] = _check_position(position)
        envelope = self._call("PATCH", f"/zones/{zone_id}/rulesets/{ruleset_id}/rules/{rule_id}", json_body=body)
        return Ruleset.from_api(envelope.result)

    def replace_entrypoint(
        self, zone_id: str, rules: Sequence[RuleSpec | Rule], *, phase: str = FIREWALL_CUSTOM_PHASE
    ) -> Ruleset:
        """Replace the entrypoint's whole rule list, in this order (FACTS.md §8); creates a missing entrypoint.

        Every rule not in `rules` is deleted. A `Rule` (another team's, read from the entrypoint) goes back as
        Cloudflare returned it, with its id and ref, so it stays the same rule; a `RuleSpec` is the portal's new
        or changed rule (give it the existing rule's `id` to keep that rule's identity).
        """
        _check_zone_id(zone_id)
        bodies = [_carried_back(rule) if isinstance(rule, Rule) else _checked_spec(rule) for rule in rules]
        _check_unique_refs(bodies)
        envelope = self._call(
            "PUT", f"/zones/{zone_id}/rulesets/phases/{phase}/entrypoint", json_body={"rules": bodies}
        )
        return Ruleset.from_api(envelope.result)

    def move_rule(self, zone_id: str, ruleset_id: str, rule: Rule, position: Mapping[str, Any]) -> Ruleset:
        """Move one rule, unchanged, to `position` (other rules are left alone).

        Cloudflare's docs allow a PATCH with only `position`, but the schema's rule body needs `action` (its
        discriminator), so the rule's own definition goes along: the same definition, only the place changes.
        """
        _check_zone_id(zone_id)
        _check_hex_id(ruleset_id, "ruleset id")
        _check_hex_id(rule.id, "rule id")
        body = _carried_back(rule)
        del body["id"]  # the path names the rule
        body["position"] = _check_position(position)
        envelope = self._call("PATCH", f"/zones/{zone_id}/rulesets/{ruleset_id}/rules/{rule.id}", json_body=body)
        return Ruleset.from_api(envelope.result)

    def delete_rule(self, zone_id: str, ruleset_id: str, rule_id: str) -> Ruleset:
        _check_zone_id(zone_id)
        _check_hex_id(ruleset_id, "ruleset id")
        _check_hex_id(rule_id, "rule id")
        envelope = self._call("DELETE", f"/zones/{zone_id}/rulesets/{ruleset_id}/rules/{rule_id}")
        if envelope.result is None:
            return self._ruleset_after_gone_rule(zone_id, ruleset_id, rule_id)
        return Ruleset.from_api(envelope.result)

    def _ruleset_after_gone_rule(self, zone_id: str, ruleset_id: str, rule_id: str) -> Ruleset:
        """The retried delete found the rule gone: the ruleset as it is now, read again (the 404 carries none).

        The portal deletes rules only from the custom-rules entrypoint, so that is the ruleset to read.
        """
        entrypoint = self.get_entrypoint(zone_id)
        if entrypoint is None or entrypoint.id != ruleset_id:
            raise NotFoundError(404, (ErrorDetail(0, f"ruleset {ruleset_id} is gone"),), method="GET", path=zone_id)
        return entrypoint

    # -- transport ---------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Envelope:
        repeatable = method in IDEMPOTENT_METHODS
        # An earlier attempt may have reached Cloudflare and done its work although no answer said so (a repeated
        # DELETE that finds the thing gone is then done; a deadline then leaves the outcome unknown).
        may_have_landed = False
        attempt = 1
        last_error: Exception | None = None
        while True:
            self._check_time_left(method, path, maybe_sent=may_have_landed, after=last_error)
            try:
                return self._attempt(method, path, params=params, json_body=json_body, attempt=attempt)
            except NotFoundError:
                if method == "DELETE" and may_have_landed:
                    # The first attempt deleted it; the repeat finds it gone. Deleting is done, not failed.
                    logger.info("cloudflare %s %s: gone after an earlier attempt; done", method, path)
                    return Envelope(result=None, result_info=None, messages=())
                raise
            except RateLimitedError as exc:
                last_error = exc
                retry_after = exc.retry_after if exc.retry_after is not None else self.budget.window
                self.budget.pause(retry_after)
                if attempt >= self.retry.max_attempts or retry_after > self.retry.max_retry_after:
                    raise
                delay = self.retry.delay_for_retry_after(retry_after, attempt, self._rng)
                if not self._fits(delay):
                    raise
            except ConnectError as exc:
                last_error = exc
                if attempt >= self.retry.max_attempts:
                    raise
                delay = self.retry.backoff(attempt, self._rng)
            except (TransportError, APIError) as exc:
                last_error = exc
                if not exc.retryable:
                    raise
                may_have_landed = True
                if method != "GET":
                    self.uncertain_writes += 1
                if not repeatable:
                    raise AmbiguousRequestError(
                        f"{method} {path} may have reached Cloudflare but failed ({exc}); reconcile before repeating it"
                    ) from exc
                if attempt >= self.retry.max_attempts:
                    raise
                delay = self.retry.backoff(attempt, self._rng)
            self._check_time_left(method, path, maybe_sent=may_have_landed, after=last_error, needed=delay)
            logger.info("cloudflare %s %s: attempt %d failed, retrying in %.2fs", method, path, attempt, delay)
            self._sleep(delay)
            attempt += 1

    def _time_left(self) -> float | None:
        return None if self._deadline_at is None else self._deadline_at - self._clock()

    def _fits(self, seconds: float) -> bool:
        left = self._time_left()
        return left is None or seconds < left

    def _check_time_left(
        self, method: str, path: str, *, maybe_sent: bool, after: Exception | None, needed: float = 0.0
    ) -> None:
        """Raise when the deadline leaves no time for `needed` seconds and then an attempt."""
        if self._fits(needed):
            return
        if maybe_sent:
            raise DeadlineAfterSendError(
                f"{method} {path}: Cloudflare did not answer within the {self.deadline:g} s deadline; "
                "the request may have reached it"
            ) from after
        raise DeadlineExceededError(
            f"{method} {path}: no time left within the {self.deadline:g} s deadline; nothing was sent"
        ) from after

    def _attempt(
        self, method: str, path: str, *, params: Mapping[str, Any] | None, json_body: Any, attempt: int
    ) -> Envelope:
        grant = uuid.uuid4().hex
        self._acquire_budget(grant)
        timeout = self._attempt_timeout()
        started = time.monotonic()
        status: int | None = None  # None: no answer (the exception raised below says why)
        try:
            response = self.session.request(
                method,
                f"{self.base_url}{path}",
                params=dict(params or {}),
                data=json.dumps(json_body) if json_body is not None else None,
                headers=self._headers(with_body=json_body is not None),
                timeout=timeout,
            )
            status = response.status_code
        except requests.exceptions.ConnectTimeout as exc:
            raise ConnectError(f"{method} {path}: could not connect to Cloudflare ({type(exc).__name__})") from exc
        except requests.exceptions.SSLError as exc:
            # TLS fails during the handshake or while the answer is read, and requests does not say which: the
            # request may have been sent.
            raise AmbiguousRequestError(f"{method} {path}: TLS failed, possibly after sending ({exc})") from exc
        except requests.exceptions.ConnectionError as exc:
            if _nothing_was_sent(exc):
                raise ConnectError(f"{method} {path}: could not connect to Cloudflare") from exc
            raise AmbiguousRequestError(f"{method} {path}: the connection failed mid-call") from exc
        except requests.exceptions.Timeout as exc:
            raise AmbiguousRequestError(f"{method} {path}: no answer within the read timeout") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            # Anything else failed once the request was on its way (a broken chunked body, an undecodable answer).
            raise AmbiguousRequestError(
                f"{method} {path}: the answer could not be read ({type(exc).__name__})"
            ) from exc
        finally:
            seconds = time.monotonic() - started
            self._settle(grant)
            _log_call(method, path, status, seconds=seconds, attempt=attempt)
            self._observe(method, path, status, seconds)
        return _parse_envelope(response, method, path)

    def _settle(self, grant: str) -> None:
        """The slot counts from the call's end: Cloudflare may have counted it as late as that (cloudflare.budget).

        By now the request may have reached Cloudflare, so a failure to record that (the shared budget's Redis went
        away) must not turn the call's outcome into an error: a create would look as if nothing had been made. The
        slot then stays held until its hold ends, which only makes the budget stricter.
        """
        try:
            self.budget.settle(grant)
        except Exception:  # the budget's store is not ours to know (Redis, or another implementation)
            logger.warning("cloudflare: could not settle a call budget slot; it expires on its own", exc_info=True)

    def _observe(self, method: str, path: str, status: int | None, seconds: float) -> None:
        """Tell the observer of one attempt: its endpoint with the ids left out, so that the endpoints are a short
        list, and its HTTP status (None when no answer came)."""
        if self._on_call is None:
            return
        try:
            self._on_call(method, path_template(path), status, seconds)
        except Exception:  # the observer's store (Redis, say) is not ours to know; the call's outcome stands
            logger.warning("cloudflare: the call observer failed", exc_info=True)

    def _acquire_budget(self, grant: str) -> None:
        """A slot held until the attempt can last end; within the deadline, a web request waits only briefly."""
        max_wait = self.max_budget_wait
        left = self._time_left()
        if left is not None:
            max_wait = left if max_wait is None else min(max_wait, left)
        acquire(
            self.budget,
            wait=self.wait_for_budget,
            max_wait=max_wait,
            reserve=self.budget_reserve,
            clock=self._clock,
            sleep=self._sleep,
            grant_id=grant,
            hold=sum(_timeouts(self.timeout)),
        )

    def _attempt_timeout(self) -> float | tuple[float, float]:
        """The configured timeouts, cut to what is left of the deadline."""
        left = self._time_left()
        if left is None:
            return self.timeout
        connect, read = _timeouts(self.timeout)
        left = max(left, 0.001)
        return (min(connect, left), min(read, left))

    def _headers(self, *, with_body: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._api_token}",
            "Accept": "application/json",
            "User-Agent": f"mtls-portal/{__version__} python-requests/{requests.__version__}",
        }
        if with_body:
            headers["Content-Type"] = "application/json"
        return headers


def _log_call(method: str, path: str, status: int | None, *, seconds: float, attempt: int) -> None:
    """One line per HTTP call, for operators: the path holds only ids; params, bodies and headers stay out."""
    duration_ms = round(seconds * 1000)
    logger.info(
        "cloudflare %s %s -> %s in %d ms (attempt %d)",
        method,
        path,
        status if status is not None else "no answer",
        duration_ms,
        attempt,
        extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms, "attempt": attempt},
    )


# Told of each HTTP attempt: (method, path template, HTTP status or None when no answer came, seconds).
CallObserver = Callable[[str, str, int | None, float], None]

_ID_SEGMENT = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_NAMED_IDS = {"zones": "{zone_id}", "accounts": "{account_id}"}


def path_template(path: str) -> str:
    """`/zones/<32 hex>/client_certificates/<uuid>` -> `/zones/{zone_id}/client_certificates/{id}`: every id the
    client's argument checks accept (32 hex digits or a UUID) replaced by a placeholder named after its collection."""
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if _ID_SEGMENT.match(segment):
            segments[index] = _NAMED_IDS.get(segments[index - 1], "{id}") if index else "{id}"
    return "/".join(segments)


def _parse_envelope(response: requests.Response, method: str, path: str) -> Envelope:
    status = response.status_code
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or "success" not in data:
        excerpt = response.text[:200].strip() if response.content else "empty body"
        error_cls = error_class_for(status, ()) if status >= 400 else InvalidResponseError
        if status >= 500 or status < 400:
            error_cls = InvalidResponseError
        raise _api_error(error_cls, response, (), method, path, body_excerpt=f"not a JSON envelope: {excerpt}")
    errors = tuple(ErrorDetail.from_api(item) for item in data.get("errors") or () if isinstance(item, dict))
    if status >= 400 or not data.get("success"):
        raise _api_error(error_class_for(status, (error.code for error in errors)), response, errors, method, path)
    messages = tuple(ErrorDetail.from_api(item) for item in data.get("messages") or () if isinstance(item, dict))
    info = data.get("result_info")
    return Envelope(
        result=data.get("result"),
        result_info=ResultInfo.from_api(info) if isinstance(info, dict) else None,
        messages=messages,
    )


def _api_error(
    error_cls: type[APIError],
    response: requests.Response,
    errors: tuple[ErrorDetail, ...],
    method: str,
    path: str,
    *,
    body_excerpt: str = "",
) -> APIError:
    kwargs: dict[str, Any] = {"method": method, "path": path, "body_excerpt": body_excerpt}
    if error_cls is RateLimitedError:
        # Whatever the body (an edge's HTML page, nothing at all), a 429's Retry-After says how long to hold off.
        kwargs["retry_after"] = parse_retry_after(response.headers.get("Retry-After"))
    return error_cls(response.status_code, errors, **kwargs)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is seconds (Cloudflare's form, FACTS.md §9) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _timeouts(timeout: float | tuple[float, float]) -> tuple[float, float]:
    """(connect, read) seconds, as requests reads a single number or a pair."""
    if isinstance(timeout, tuple):
        return timeout
    return (timeout, timeout)


def _is_last_page(page: Page, page_number: int, per_page: int) -> bool:
    info = page.info
    if not page.items:
        return True
    if info.total_pages is not None:
        return page_number >= info.total_pages
    if info.total_count is not None:
        return page_number * per_page >= info.total_count
    return len(page.items) < per_page


def _nothing_was_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection itself failed (refused, DNS), so the request never left."""
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    name = type(reason).__name__
    return name in {"NewConnectionError", "NameResolutionError", "ConnectTimeoutError"}


# -- argument checks: bad input fails here, before any call ------------------------------------------------


def _check_zone_id(zone_id: str) -> None:
    _check_hex_id(zone_id, "zone id")


def _check_account_id(account_id: str) -> None:
    _check_hex_id(account_id, "account id")


def _check_hex_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _HEX32.match(value):
        raise InvalidArgumentError(f"{what} must be 32 lowercase hexadecimal characters, got {value!r}")


def _check_uuid(value: str, what: str) -> None:
    if not isinstance(value, str) or not _UUID.match(value):
        raise InvalidArgumentError(f"{what} must be a UUID, got {value!r}")


def _check_object_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not (_UUID.match(value) or _HEX32.match(value)):
        raise InvalidArgumentError(f"{what} must be a UUID or 32 hexadecimal characters, got {value!r}")


def _check_csr(csr: str) -> None:
    if not isinstance(csr, str) or not csr.strip():
        raise InvalidArgumentError("the CSR is empty")
    if len(csr.encode()) > MAX_CSR_BYTES:
        raise InvalidArgumentError(f"the CSR is larger than {MAX_CSR_BYTES} bytes")
    if not any(marker in csr for marker in CSR_MARKERS):
        raise InvalidArgumentError("the CSR must be PEM: -----BEGIN CERTIFICATE REQUEST----- ...")


def _check_validity_days(validity_days: int) -> None:
    if isinstance(validity_days, bool) or not isinstance(validity_days, int):
        raise InvalidArgumentError("validity_days must be a whole number of days")
    if not 1 <= validity_days <= MAX_VALIDITY_DAYS:
        raise InvalidArgumentError(f"validity_days must be between 1 and {MAX_VALIDITY_DAYS}")


def _check_status_filter(status: CertificateStatus | str) -> str:
    allowed = {"all", *(item.value for item in CertificateStatus)}
    value = str(status)
    if value not in allowed:
        raise InvalidArgumentError(f"status must be one of {sorted(allowed)}, got {value!r}")
    return value


_HOSTNAME = re.compile(r"^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


def _check_hostname(name: str) -> str:
    normalized = name.strip().lower().rstrip(".") if isinstance(name, str) else ""
    if not _HOSTNAME.match(normalized):
        raise InvalidArgumentError(f"{name!r} is not a hostname")
    return normalized


def _check_rule(rule: RuleSpec) -> None:
    # The expression's shape only: its syntax is validated once, where it is written (the portal's compiler
    # calls cloudflare.expressions.validate, and so can any other caller); Cloudflare refuses the rest with a 400.
    if not rule.ref:
        raise InvalidArgumentError("a rule needs a ref")
    if not re.fullmatch(r"[a-z]+", rule.action):
        raise InvalidArgumentError(f"{rule.action!r} is not a rule action")
    if not isinstance(rule.expression, str) or not rule.expression.strip():
        raise InvalidArgumentError(f"rule {rule.ref}: the expression is empty")


def _checked_spec(rule: RuleSpec) -> dict[str, Any]:
    _check_rule(rule)
    if rule.id is not None:
        _check_hex_id(rule.id, f"rule {rule.ref}: id")
    return rule.to_api()


def _carried_back(rule: Rule) -> dict[str, Any]:
    _check_hex_id(rule.id, "rule id")
    return rule.to_api()


def _check_unique_refs(bodies: Sequence[Mapping[str, Any]]) -> None:
    """Refs and ids must be unique in a ruleset (FACTS.md §8); Cloudflare would refuse the whole list."""
    for key in ("ref", "id"):
        counts = Counter(body[key] for body in bodies if body.get(key))
        repeated = sorted(value for value, count in counts.items() if count > 1)
        if repeated:
            raise InvalidArgumentError(f"each rule needs its own {key}; repeated: {', '.join(repeated)}")


def _check_position(position: Mapping[str, Any]) -> dict[str, Any]:
    if len(position) != 1:
        raise InvalidArgumentError("position takes exactly one of before, after, index")
    ((key, value),) = position.items()
    if key in ("before", "after") and isinstance(value, str):
        if value and not _HEX32.match(value):
            raise InvalidArgumentError(f"position {key} must name a rule id, got {value!r}")
        return {key: value}
    if key == "index" and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return {key: value}
    raise InvalidArgumentError(f"invalid position {dict(position)!r}")


def before(rule_id: str) -> dict[str, str]:
    """Position for add_rule/update_rule; before("") puts a rule first."""
    return {"before": rule_id}


def after(rule_id: str) -> dict[str, str]:
    return {"after": rule_id}
