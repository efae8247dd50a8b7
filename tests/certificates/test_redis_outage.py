"""Redis failing during a web request (issue 9): a 503 with a message, never a 500, and nothing left half done.

Redis holds the Cloudflare call budget, the cache and Celery's queue. Here its client raises as redis-py does when
the server is gone; the database keeps what makes the work happen once Redis is back.
"""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
import redis
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from certificates import cloudflare_client, enqueue, services, tasks
from certificates.admission import held_by
from certificates.cloudflare_client import get_cloudflare_client
from certificates.firewall import sync
from certificates.models import AllowlistEntry, Certificate, FirewallState
from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient
from portal.outages import OUTAGE_MESSAGE
from tests.support.accounts import signed_in
from tests.support.pki import policy_csr

ZONE = "0" * 32


class RedisDown:
    """A call budget whose Redis is gone: every command raises, as redis-py's client does."""

    limit, window = 1000, 300.0

    def try_acquire(self, reserve: int = 0, **grant: object) -> float:
        raise redis.ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    def settle(self, grant_id: str) -> None:
        raise redis.ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    def pause(self, seconds: float) -> None:
        raise redis.ConnectionError("Error 111 connecting to redis:6379. Connection refused.")


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()


@pytest.fixture
def redis_down(monkeypatch):
    monkeypatch.setattr(cloudflare_client, "get_call_budget", RedisDown)


def issue(user, name="laptop") -> Certificate:
    return services.certificate_issue(
        user=user, csr=policy_csr(user), validity_days=365, name=name, origin=services.Origin(actor=user)
    )


def api_client(user) -> tuple[Client, dict[str, str]]:
    secret = services.api_token_create(user=user, name="t", origin=services.Origin(actor=user))[1]
    return Client(), {"Authorization": f"Bearer {secret}"}


def assert_503_json(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": OUTAGE_MESSAGE}
    assert int(response["Retry-After"]) > 0


# -- issuance -----------------------------------------------------------------------------------------------


def test_an_issuance_whose_budget_redis_is_down_answers_503_and_leaves_no_row_issuing(emulator, alice, monkeypatch):
    issue(alice, name="the one she has")
    client, headers = api_client(alice)
    monkeypatch.setattr(cloudflare_client, "get_call_budget", RedisDown)

    body = {"csr": policy_csr(alice), "validity_days": 365, "name": "second"}
    response = client.post("/api/v1/certificates", json.dumps(body), content_type="application/json", headers=headers)

    assert_503_json(response)
    assert not Certificate.objects.filter(status=Certificate.Status.ISSUING).exists()
    assert Certificate.objects.get(name="second").status == Certificate.Status.FAILED
    assert held_by(alice) == 1
    creates = [
        entry for entry in emulator.request_log if entry.method == "POST" and "client_certificates" in entry.path
    ]
    assert len(creates) == 1, "only the first certificate reached Cloudflare"


def test_a_failed_issuance_does_not_count_against_the_users_maximum(emulator, alice, settings, monkeypatch):
    settings.CERTIFICATE_MAX_ACTIVE_PER_USER = 1
    monkeypatch.setattr(cloudflare_client, "get_call_budget", RedisDown)
    with pytest.raises(redis.ConnectionError):
        issue(alice, name="during the outage")
    monkeypatch.setattr(cloudflare_client, "get_call_budget", LocalBudget)

    assert issue(alice, name="after the outage").status == Certificate.Status.ACTIVE


def test_any_other_error_after_the_reservation_leaves_the_row_to_reconciliation(
    emulator, alice, monkeypatch, django_capture_on_commit_callbacks
):
    # It may come after Cloudflare made the certificate, so it is neither failed (an orphan) nor left issuing.
    def broken_create(*args, **kwargs):
        raise RuntimeError("a bug after the reservation")

    monkeypatch.setattr(CloudflareClient, "create_client_certificate", broken_create)
    with (
        mock.patch.object(tasks.reconcile_certificate, "apply_async") as reconcile,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
    ):
        issue(alice)

    certificate = Certificate.objects.get(owner=alice)
    assert certificate.status == Certificate.Status.UNCONFIRMED
    assert "a bug after the reservation" in certificate.last_error
    reconcile.assert_called_once_with(args=(certificate.pk,), countdown=10)


# -- revocation ---------------------------------------------------------------------------------------------


def test_a_revocation_through_the_api_whose_budget_redis_is_down_answers_503(emulator, alice, monkeypatch):
    certificate = issue(alice)
    client, headers = api_client(alice)
    monkeypatch.setattr(cloudflare_client, "get_call_budget", RedisDown)

    response = client.post(
        f"/api/v1/certificates/{certificate.pk}/revoke", "{}", content_type="application/json", headers=headers
    )

    assert_503_json(response)
    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE


def test_a_revocation_on_the_page_whose_budget_redis_is_down_shows_a_message_not_a_500(emulator, alice, monkeypatch):
    certificate = issue(alice)
    client = signed_in(alice)
    monkeypatch.setattr(cloudflare_client, "get_call_budget", RedisDown)

    response = client.post(reverse("certificates:revoke", args=[certificate.pk]))

    assert response.status_code == 503
    assert OUTAGE_MESSAGE in response.content.decode()
    certificate.refresh_from_db()
    assert certificate.status == Certificate.Status.ACTIVE


def test_a_broker_error_in_an_api_request_answers_503(alice, monkeypatch):
    client, headers = api_client(alice)
    monkeypatch.setattr(services, "allowlist_standing", mock.Mock(side_effect=OperationalError("broker gone")))

    assert_503_json(client.get("/api/v1/allowlist", headers=headers))


# -- allowlists and the firewall sync they need ---------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"apply_async": OperationalError("Error 111 connecting to redis")}, id="broker"),
        pytest.param({"cache_add": redis.ConnectionError("Connection refused")}, id="cache"),
    ],
)
def test_an_allowlist_save_with_redis_down_succeeds_and_its_sync_is_marked(
    alice, failure, django_capture_on_commit_callbacks
):
    client = signed_in(alice)
    with (
        mock.patch.object(tasks.sync_firewall, "apply_async", side_effect=failure.get("apply_async")),
        mock.patch.object(enqueue.cache, "add", side_effect=failure.get("cache_add"), return_value=True),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(reverse("certificates:allowlist"), {"networks": "93.184.216.0/24"})

    assert response.status_code == 302
    assert list(AllowlistEntry.objects.filter(owner=alice).values_list("network", flat=True)) == ["93.184.216.0/24"]
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None


def test_the_mark_commits_and_rolls_back_with_the_change(alice):
    def save_then_fail() -> None:
        with transaction.atomic():
            services.allowlist_set(user=alice, networks=["93.184.216.0/24"], origin=services.Origin(actor=alice))
            raise RuntimeError("the request failed after the save")

    with pytest.raises(RuntimeError):
        save_then_fail()
    assert not FirewallState.objects.filter(zone_id=ZONE, sync_requested_at__isnull=False).exists()

    services.allowlist_set(user=alice, networks=["93.184.216.0/24"], origin=services.Origin(actor=alice))
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None


def unmarked(certificate: Certificate) -> Certificate:
    FirewallState.objects.filter(zone_id=ZONE).update(sync_requested_at=None)
    return certificate


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda user: issue(user), id="issuance"),
        pytest.param(
            lambda user: services.certificate_revoke(
                certificate=unmarked(issue(user)), origin=services.Origin(actor=user)
            ),
            id="revocation",
        ),
    ],
)
def test_every_change_the_rules_follow_marks_the_zone(emulator, alice, change):
    change(alice)
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None


def test_deactivating_a_user_marks_the_zone(emulator, alice):
    issue(alice)
    FirewallState.objects.filter(zone_id=ZONE).update(sync_requested_at=None)
    alice.is_active = False
    alice.save()
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None


def test_a_sync_clears_the_mark_it_read(emulator, alice, settings):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    services.allowlist_set(user=alice, networks=["93.184.216.0/24"], origin=services.Origin(actor=alice))

    sync.firewall_sync(zone_id=ZONE)

    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is None


def test_a_change_requested_during_a_sync_keeps_its_mark(emulator, alice, settings, monkeypatch):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    services.allowlist_set(user=alice, networks=["93.184.216.0/24"], origin=services.Origin(actor=alice))
    plan_and_apply = sync._plan_and_apply

    def with_a_change_meanwhile(*args, **kwargs):
        result = plan_and_apply(*args, **kwargs)
        enqueue.request_firewall_sync(ZONE)  # committed after the sync read the database
        return result

    monkeypatch.setattr(sync, "_plan_and_apply", with_a_change_meanwhile)
    sync.firewall_sync(zone_id=ZONE)

    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is not None


def test_beat_queues_the_zones_whose_sync_was_lost_and_only_those(db, settings):
    settings.FIREWALL_SYNC_DEBOUNCE_SECONDS = 5
    now = timezone.now()
    lost, fresh, running, synced = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
    FirewallState.objects.create(zone_id=lost, sync_requested_at=now - timedelta(seconds=60))
    FirewallState.objects.create(zone_id=fresh, sync_requested_at=now)  # its own queued sync is about to run
    FirewallState.objects.create(
        zone_id=running, sync_requested_at=now - timedelta(seconds=60), lease_until=now + timedelta(minutes=1)
    )
    FirewallState.objects.create(zone_id=synced, sync_requested_at=None, last_synced_at=now)
    settings.CLOUDFLARE_ZONE_ID = synced

    with mock.patch.object(tasks.sync_firewall, "delay") as delay:
        queued = tasks.sync_all_firewalls.apply(kwargs={"requested_only": True}).get()

    assert queued == [lost]
    delay.assert_called_once_with(lost)


def test_a_new_deployment_gets_its_base_rule_from_beats_first_pass_not_ten_minutes_later(db, settings):
    """No sync has pushed the zone yet, so nothing requires a certificate at the edge: the frequent pass syncs it."""
    settings.CLOUDFLARE_ZONE_ID = "e" * 32

    with mock.patch.object(tasks.sync_firewall, "delay") as delay:
        queued = tasks.sync_all_firewalls.apply(kwargs={"requested_only": True}).get()

    assert queued == ["e" * 32]
    delay.assert_called_once_with("e" * 32)


def test_beat_looks_for_lost_syncs_often(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sync-requested-firewalls"]
    assert entry["task"] == "certificates.tasks.sync_all_firewalls"
    assert entry["kwargs"] == {"requested_only": True}
    assert entry["schedule"] == settings.FIREWALL_SYNC_REQUESTED_SECONDS <= 60


def edge_expressions() -> str:
    return " ".join(rule.expression for rule in get_cloudflare_client().get_entrypoint(ZONE).rules)


def test_a_change_saved_while_redis_was_down_reaches_the_edge_through_beat(
    emulator, alice, settings, django_capture_on_commit_callbacks
):
    settings.PORTAL_API_HOSTNAMES = ["api.example.com"]
    issue(alice)
    sync.firewall_sync(zone_id=ZONE)
    with (
        mock.patch.object(tasks.sync_firewall, "apply_async", side_effect=OperationalError("broker gone")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.allowlist_set(user=alice, networks=["93.184.216.0/24"], origin=services.Origin(actor=alice))
    assert "93.184.216.0/24" not in edge_expressions()

    # Redis is back; the next pass of beat after the debounce and the grace finds the zone.
    FirewallState.objects.filter(zone_id=ZONE).update(sync_requested_at=timezone.now() - timedelta(minutes=1))
    with mock.patch.object(tasks.sync_firewall, "delay", lambda zone_id: tasks.sync_firewall.apply(args=[zone_id])):
        assert tasks.sync_all_firewalls.apply(kwargs={"requested_only": True}).get() == [ZONE]

    assert "93.184.216.0/24" in edge_expressions()
    assert FirewallState.objects.get(zone_id=ZONE).sync_requested_at is None


def test_an_unexpected_answer_from_cloudflare_during_issuance_is_a_503_and_the_row_is_checked(
    emulator, alice, monkeypatch
):
    """Not a 500: an error the code did not foresee may come after Cloudflare made the certificate."""
    from cloudflare import errors as cf_errors
    from tests.support.api import token_for

    def unforeseen(*args, **kwargs):
        raise cf_errors.CloudflareError("an error the issuance code has no branch for")

    monkeypatch.setattr(CloudflareClient, "create_client_certificate", unforeseen)
    body = {"csr": policy_csr(alice), "validity_days": 365, "name": "ci"}

    response = Client().post(
        "/api/v1/certificates",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token_for(alice)}"},
    )

    assert response.status_code == 503
    assert "did not confirm the certificate" in response.json()["detail"]
    assert Certificate.objects.get().status == Certificate.Status.UNCONFIRMED


class BudgetLostAfterTheCall(LocalBudget):
    """Redis answers when the slot is taken, then goes away while the call is on its way (the chaos run's case)."""

    def settle(self, grant_id: str) -> None:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def test_redis_going_away_during_a_create_does_not_lose_the_certificate_cloudflare_made(emulator, alice, monkeypatch):
    monkeypatch.setattr(cloudflare_client, "get_call_budget", lambda: BudgetLostAfterTheCall())

    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice), validity_days=365, name="ci", origin=services.Origin(actor=alice)
    )

    assert certificate.status == Certificate.Status.ACTIVE
    assert [item.id for item in get_cloudflare_client().iter_client_certificates(ZONE)] == [certificate.cloudflare_id]
