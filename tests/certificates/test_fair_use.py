"""Fair use of Cloudflare (issue 7, point 2): one user cannot take the call budget from everyone else.

The finding: looping issue + revoke through the API spent the whole portal's Cloudflare budget; every other
user then got 503, including one revoking a compromised certificate. Now issuance is limited per user, and
issuance only ever uses the budget down to a reserve that revocation and the firewall sync can always take.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.urls import reverse
from django.utils import timezone

from certificates import cloudflare_client, services
from certificates.cloudflare_client import get_cloudflare_client
from certificates.firewall.sync import firewall_sync
from certificates.models import AuditEvent, Certificate
from cloudflare.budget import CallBudget, LocalBudget, RedisBudget
from portal.env import Rate
from tests.certificates.test_views import logged_in
from tests.support.api import issue_via_api
from tests.support.pki import policy_csr

ZONE = "0" * 32
BUDGET, RESERVED = 40, 10


@pytest.fixture(params=["local", "redis"])
def small_budget(request, emulator, settings, monkeypatch) -> Iterator[CallBudget]:
    """One budget of 40 calls shared by every client of the test, 10 of them reserved: per process or in Redis."""
    budget: CallBudget
    if request.param == "local":
        budget = LocalBudget(limit=BUDGET, window=300)
    else:
        connection = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        budget = RedisBudget(connection, key=f"test:fair-use:{uuid.uuid4().hex}", limit=BUDGET, window=300)
    monkeypatch.setattr(cloudflare_client, "get_call_budget", lambda: budget)
    settings.CLOUDFLARE_BUDGET_RESERVED = RESERVED
    yield budget
    if isinstance(budget, RedisBudget):
        budget.clear()


def revoke_via_api(api, user, certificate_id):
    return api.as_user(user).post(f"/certificates/{certificate_id}/revoke", {"reason": "compromised"})


def loop_issue_and_revoke(api, user, *, at_most: int = 100):
    """What the finding did: issue and revoke, again and again, until the portal refuses.

    Returns the refusal and how many rounds succeeded before it.
    """
    for rounds in range(at_most):
        issued = issue_via_api(api, user, name="loop")
        if issued.status_code != 201:
            return issued, rounds
        assert revoke_via_api(api, user, issued.json()["id"]).status_code == 202
    pytest.fail(f"the portal never refused {user} in {at_most} rounds")


def admitted_after_sync() -> set[str]:
    """Sync, then read the zone: the fingerprints its allow rules admit (only those pass on the API hostnames)."""
    firewall_sync(zone_id=ZONE)
    allow_rules = [rule for rule in get_cloudflare_client().get_entrypoint(ZONE).rules if "_allow_" in rule.ref]
    assert allow_rules, "the sync reached Cloudflare and pushed the allow rules"
    return {fp for rule in allow_rules for fp in re.findall(r"[0-9a-f]{64}", rule.expression)}


# -- the finding, reproduced --------------------------------------------------------------------------------


def test_a_user_looping_issue_and_revoke_is_stopped_by_the_per_user_limit_with_429(small_budget, api, alice, bob):
    compromised = issue_via_api(api, bob, name="bob's server").json()

    refusal, rounds = loop_issue_and_revoke(api, alice)

    assert refusal.status_code == 429, refusal.content
    assert rounds == 10, "the default limit is 10 certificates per hour"
    assert 0 < int(refusal["Retry-After"]) <= 3600
    assert "try again in" in refusal.json()["detail"]
    assert Certificate.objects.filter(owner=alice).count() == 10, "the refused request made no row"
    # Everyone else is unaffected: bob revokes his compromised certificate and the edge denies it.
    assert revoke_via_api(api, bob, compromised["id"]).status_code == 202
    assert compromised["fingerprint_sha256"] not in admitted_after_sync()


def test_issuance_never_takes_the_reserve_that_revocation_and_the_firewall_sync_need(
    small_budget, api, alice, bob, settings
):
    # Limits high enough not to stop anyone: this is many users' issuance together, or one with a generous limit.
    settings.CERTIFICATE_ISSUE_RATE_LIMIT = Rate(count=1000, period=3600)
    alices = issue_via_api(api, alice, name="alice's laptop").json()
    bobs = issue_via_api(api, bob, name="bob's server").json()

    refusal, _rounds = loop_issue_and_revoke(api, alice)

    assert refusal.status_code == 503, refusal.content
    # Both owners can still revoke a compromised certificate, and the sync still reaches Cloudflare.
    assert revoke_via_api(api, bob, bobs["id"]).status_code == 202
    assert revoke_via_api(api, alice, alices["id"]).status_code == 202
    admitted = admitted_after_sync()
    assert bobs["fingerprint_sha256"] not in admitted
    assert alices["fingerprint_sha256"] not in admitted
    # The refused user was told that nothing happened and when to come back.
    assert "nothing was issued" in refusal.json()["detail"]
    assert 0 < int(refusal["Retry-After"]) <= 300


# -- the issuance limit ---------------------------------------------------------------------------------------


def issue(user, name="laptop"):
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


def test_the_wait_is_until_the_oldest_counted_request_leaves_the_window(emulator, alice, settings):
    settings.CERTIFICATE_ISSUE_RATE_LIMIT = Rate(count=2, period=3600)
    older, newer = issue(alice, "first"), issue(alice, "second")
    now = timezone.now()
    Certificate.objects.filter(pk=older.pk).update(created_at=now - timedelta(minutes=50))
    Certificate.objects.filter(pk=newer.pk).update(created_at=now - timedelta(minutes=10))

    with pytest.raises(services.RateLimitedError) as caught:
        issue(alice, "third")

    assert caught.value.status_code == 429
    assert 590 <= caught.value.retry_after <= 600
    assert "in the last hour" in caught.value.message
    assert "try again in 10 minutes" in caught.value.message
    Certificate.objects.filter(pk=older.pk).update(created_at=now - timedelta(minutes=61))
    assert issue(alice, "third").status == Certificate.Status.ACTIVE, "the oldest left the window"


def test_failed_requests_count_too_because_each_was_a_create_attempt(emulator, alice, settings):
    settings.CERTIFICATE_ISSUE_RATE_LIMIT = Rate(count=1, period=3600)
    emulator.faults.connect_error(times=10, method="POST")
    with pytest.raises(services.CloudflareUnavailableError):
        issue(alice)

    with pytest.raises(services.RateLimitedError):
        issue(alice)


def test_the_issuance_limit_is_per_user(emulator, alice, bob, settings):
    settings.CERTIFICATE_ISSUE_RATE_LIMIT = Rate(count=1, period=3600)
    issue(alice)

    with pytest.raises(services.RateLimitedError):
        issue(alice)
    assert issue(bob).status == Certificate.Status.ACTIVE


# -- the revocation limit -------------------------------------------------------------------------------------


def test_revocations_beyond_the_limit_are_a_429_and_change_nothing(emulator, api, alice, settings):
    settings.CERTIFICATE_REVOKE_RATE_LIMIT = Rate(count=2, period=900)
    first, second, third = (issue(alice, name) for name in ("a", "b", "c"))
    assert revoke_via_api(api, alice, first.pk).status_code == 202
    assert revoke_via_api(api, alice, second.pk).status_code == 202
    emulator.request_log.clear()

    response = revoke_via_api(api, alice, third.pk)

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 900
    assert "try again in 15 minutes" in response.json()["detail"]
    assert [entry.method for entry in emulator.request_log] == [], "no call reached Cloudflare"
    third.refresh_from_db()
    assert third.status == Certificate.Status.ACTIVE


def test_the_revoke_page_shows_the_limit_message(emulator, alice, settings):
    settings.CERTIFICATE_REVOKE_RATE_LIMIT = Rate(count=1, period=3600)
    first, second = issue(alice, "a"), issue(alice, "b")
    client = logged_in(alice)
    client.post(reverse("certificates:revoke", args=[first.pk]))

    response = client.post(reverse("certificates:revoke", args=[second.pk]), follow=True)

    assert b"You have revoked 1 certificate in the last hour" in response.content
    assert b"ask an administrator" in response.content
    second.refresh_from_db()
    assert second.status == Certificate.Status.ACTIVE


def test_staff_revoking_someone_elses_certificates_is_not_limited(emulator, alice, charlie, settings):
    settings.CERTIFICATE_REVOKE_RATE_LIMIT = Rate(count=1, period=3600)
    first, second = issue(alice, "a"), issue(alice, "b")

    for certificate in (first, second):
        services.certificate_revoke(certificate=certificate, origin=services.Origin(actor=charlie), reason="abuse")

    assert AuditEvent.objects.filter(action=AuditEvent.Action.REVOCATION_REQUESTED, actor=charlie).count() == 2


def test_the_default_revocation_limit_lets_an_owner_revoke_everything_they_can_hold(emulator, api, alice, settings):
    # The most a user can hold within one issuance period: their maximum from before, plus a full period's issuance.
    held_before = [issue(alice, f"old {n}") for n in range(settings.CERTIFICATE_MAX_ACTIVE_PER_USER)]
    Certificate.objects.update(created_at=timezone.now() - timedelta(hours=2))
    for certificate in held_before:
        assert revoke_via_api(api, alice, certificate.pk).status_code == 202
    issued_now = [issue(alice, f"new {n}") for n in range(settings.CERTIFICATE_ISSUE_RATE_LIMIT.count // 2)]
    for certificate in issued_now:
        assert revoke_via_api(api, alice, certificate.pk).status_code == 202
    issued_now = [issue(alice, f"more {n}") for n in range(settings.CERTIFICATE_ISSUE_RATE_LIMIT.count // 2)]

    assert all(revoke_via_api(api, alice, c.pk).status_code == 202 for c in issued_now)


# -- what the API tells clients -------------------------------------------------------------------------------


def test_the_csr_policy_states_the_limits(emulator, api, alice, settings):
    settings.CERTIFICATE_ISSUE_RATE_LIMIT = Rate(count=3, period=900)
    settings.CERTIFICATE_REVOKE_RATE_LIMIT = Rate(count=8, period=900)

    policy = api.as_user(alice).get("/csr-policy").json()

    assert policy["issue_rate_limit"] == {"count": 3, "period_seconds": 900}
    assert policy["revoke_rate_limit"] == {"count": 8, "period_seconds": 900}


def test_the_openapi_document_lists_the_429(db):
    from django.test import Client

    paths = Client().get("/api/v1/openapi.json").json()["paths"]

    assert "429" in paths["/api/v1/certificates"]["post"]["responses"]
    assert "429" in paths["/api/v1/certificates/{certificate_id}/revoke"]["post"]["responses"]


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(1, "1 second"), (45, "45 seconds"), (60, "1 minute"), (150, "3 minutes"), (3600, "1 hour"), (5400, "90 minutes")],
)
def test_waits_are_said_in_words_rounded_up(seconds, words):
    assert services.in_words(seconds) == words
