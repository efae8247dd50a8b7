"""A revocation within the web deadline; after a lost answer the portal finds out at once (issue 9, point 3)."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from certificates import cloudflare_client, services
from certificates.cloudflare_client import get_cloudflare_client
from certificates.models import AuditEvent, Certificate
from cloudflare.budget import LocalBudget
from tests.support.pki import policy_csr

ADDR = "198.51.100.7"


@pytest.fixture
def shared_budget(emulator, monkeypatch) -> LocalBudget:
    """One budget for every client of the test, as Redis gives every process."""
    budget = LocalBudget()
    monkeypatch.setattr(cloudflare_client, "get_call_budget", lambda: budget)
    return budget


@pytest.fixture
def web_deadline(settings):
    """Short bounds, so that the emulator's latency fault times calls out in a fraction of a second."""
    settings.CLOUDFLARE_WEB_DEADLINE = 1.2
    settings.CLOUDFLARE_WEB_TIMEOUT = 0.3
    settings.CLOUDFLARE_RETRY_ATTEMPTS = 2
    return settings


def issue(user) -> Certificate:
    return services.certificate_issue(
        user=user,
        csr=policy_csr(user),
        validity_days=365,
        name="laptop",
        origin=services.Origin(actor=user, remote_addr=ADDR),
    )


def revoke(certificate: Certificate, user, reason: str = "laptop stolen") -> Certificate:
    return services.certificate_revoke(
        certificate=certificate, origin=services.Origin(actor=user, remote_addr=ADDR), reason=reason
    )


def cloudflare_status(certificate: Certificate) -> str:
    return get_cloudflare_client().get_client_certificate(certificate.zone_id, certificate.cloudflare_id).status.value


def revocation_events(certificate: Certificate):
    return list(certificate.events.filter(action=AuditEvent.Action.REVOCATION_REQUESTED))


def test_a_revocation_whose_answers_are_lost_is_found_and_recorded_with_the_reason(emulator, web_deadline, alice):
    certificate = issue(alice)
    # Cloudflare carries out the DELETE (and its retry) but every answer arrives too late.
    emulator.faults.latency(5, times=2, method="DELETE")
    started = time.monotonic()

    revoked = revoke(certificate, alice)

    assert time.monotonic() - started < 1.2 + 0.3
    assert revoked.status == Certificate.Status.PENDING_REVOCATION
    [event] = revocation_events(certificate)
    assert (event.actor, event.remote_addr, event.detail) == (alice, ADDR, {"reason": "laptop stolen"})
    assert (event.old_status, event.new_status) == ("active", "pending_revocation")


def test_a_revocation_that_did_not_happen_says_nothing_changed(emulator, web_deadline, alice):
    certificate = issue(alice)
    emulator.faults.server_error(times=2, method="DELETE")  # refused both times: nothing was revoked

    with pytest.raises(services.CloudflareUnavailableError, match="nothing changed"):
        revoke(certificate, alice)

    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE
    assert revocation_events(certificate) == []
    assert cloudflare_status(certificate) == "active"


def test_with_no_time_left_to_ask_a_worker_checks_and_keeps_the_reason(
    emulator, web_deadline, alice, django_capture_on_commit_callbacks
):
    web_deadline.CLOUDFLARE_WEB_DEADLINE = 0.6  # two timed-out DELETEs use it all
    certificate = issue(alice)
    emulator.faults.latency(5, times=2, method="DELETE")
    started = time.monotonic()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(services.CloudflareUnavailableError, match="may have gone through"),
    ):
        revoke(certificate, alice, reason="key leaked")

    assert time.monotonic() - started < 0.6 + 0.3
    assert len(callbacks) >= 1, "a check was queued"
    certificate.refresh_from_db()
    # The queued check ran (tasks run inline in tests) and found Cloudflare had revoked it.
    assert certificate.status == Certificate.Status.PENDING_REVOCATION
    [event] = revocation_events(certificate)
    assert (event.actor, event.remote_addr, event.detail) == (alice, ADDR, {"reason": "key leaked"})


def test_the_check_records_nothing_when_cloudflare_did_not_revoke(emulator, alice):
    from certificates.tasks import confirm_revocation

    certificate = issue(alice)

    assert confirm_revocation.delay(certificate.pk, "key leaked", alice.pk, ADDR).get() is False

    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE
    assert revocation_events(certificate) == []


def test_a_short_429_makes_a_revocation_wait_instead_of_failing(emulator, alice):
    certificate = issue(alice)
    emulator.faults.rate_limit(times=1, retry_after=1, method="DELETE")

    revoked = revoke(certificate, alice)

    assert revoked.status == Certificate.Status.PENDING_REVOCATION


def test_while_the_budget_is_paused_briefly_other_users_revocations_wait_and_succeed(shared_budget, bob):
    certificate = issue(bob)
    shared_budget.pause(1)  # as after another user's call got a 429 with Retry-After: 1

    assert revoke(certificate, bob).status == Certificate.Status.PENDING_REVOCATION


def test_a_long_pause_fails_at_once_with_when_to_try_again(shared_budget, alice):
    certificate = issue(alice)
    shared_budget.pause(30)
    started = time.monotonic()

    with pytest.raises(services.CloudflareUnavailableError, match="nothing changed") as caught:
        revoke(certificate, alice)

    assert time.monotonic() - started < 0.5
    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE
    assert caught.value.status_code == 503


@pytest.mark.parametrize("fault", ["timeout", "server_error"])
def test_a_web_request_never_waits_on_cloudflare_with_a_workers_patience(emulator, alice, monkeypatch, fault):
    """After an ambiguous create, the request looks for the certificate with its own client (the web deadline),
    not a worker's (30 s timeouts, a minute's wait for the budget); the workers look further."""
    from certificates.services import issuance as services_module
    from tests.support.api import token_for

    built: list[bool] = []
    real = services_module.get_cloudflare_client

    def recording(**kwargs):
        built.append(kwargs.get("wait_for_budget", True))
        return real(**kwargs)

    monkeypatch.setattr(services_module, "get_cloudflare_client", recording)
    emulator.faults.create_commits_then_fails(mode=fault)
    body = {"csr": policy_csr(alice), "validity_days": 365, "name": "ci"}

    Client().post(
        "/api/v1/certificates",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token_for(alice)}"},
    )

    assert built == [False]
