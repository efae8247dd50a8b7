"""/metrics: who may scrape it, and that each metric says what the portal's records say."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
import responses as responses_lib
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from certificates import cloudflare_client, telemetry
from certificates.cloudflare_client import get_cloudflare_client, get_zone_id
from certificates.models import Certificate, CertificateAuthority, FirewallState, TaskRun
from cloudflare.budget import LocalBudget
from cloudflare.client import CloudflareClient, path_template
from tests.conftest import ZONE_ID, make_user

TOKEN = "metrics-token-for-tests"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.fixture(autouse=True)
def call_store(monkeypatch):
    """Each test counts its own Cloudflare calls (with REDIS_URL set, the real store is Redis, shared by the suite)."""
    store = telemetry.LocalCallStore()
    monkeypatch.setattr(telemetry, "get_call_store", lambda: store)
    return store


def scrape(client, token: str | None = TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.get(reverse("metrics"), **headers)


def samples(client) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape: (name, labels) -> value."""
    response = scrape(client)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped[(name, frozenset(labels.items()))]


# -- access ---------------------------------------------------------------------------------------------------------


def test_without_a_token_configured_there_is_no_metrics_page(client, settings):
    settings.METRICS_TOKEN = ""

    assert scrape(client, token="").status_code == 404
    assert scrape(client, token="anything").status_code == 404


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
def test_a_missing_or_wrong_token_is_refused(client, token):
    response = scrape(client, token)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"portal_" not in response.content


def test_the_right_token_gets_prometheus_text(client):
    response = scrape(client)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"]


def test_the_token_is_compared_in_constant_time(client):
    with mock.patch("portal.views.hmac.compare_digest", return_value=False) as compare:
        assert scrape(client).status_code == 401
    compare.assert_called_once()


def test_the_token_may_come_from_a_file(tmp_path):
    from tests.test_production import run_portal

    secret = tmp_path / "metrics-token"
    secret.write_text("from-a-file\n")
    code = "import django; django.setup(); from django.conf import settings; print(settings.METRICS_TOKEN)"

    result = run_portal(tmp_path, ["-c", code], METRICS_TOKEN_FILE=str(secret))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "from-a-file"


# -- what the metrics say -------------------------------------------------------------------------------------------


def certificate(owner, status: str, *, authority=None, n: int = 0) -> Certificate:
    return Certificate.objects.create(
        owner=owner,
        name=f"c{n}",
        zone_id=get_zone_id(),
        status=status,
        authority=authority,
        csr="",
        public_key_sha256=f"{n:064x}",
        key_type="ec-p256",
        common_name="portal-user-1",
        validity_days=30,
    )


def portal_ca() -> CertificateAuthority:
    now = timezone.now()
    return CertificateAuthority.objects.create(
        name="ca",
        key_algorithm="ec-p256",
        certificate_pem="",
        encrypted_key="",
        subject_key_identifier="AB" * 20,
        subject="CN=ca",
        not_before=now,
        not_after=now + timedelta(days=365),
    )


def test_certificates_by_status_and_issuer_and_the_zones_capacity(client, settings):
    alice = make_user("alice")
    ca = portal_ca()
    statuses = [Certificate.Status.ACTIVE] * 3 + [Certificate.Status.REVOKED, Certificate.Status.PENDING_REACTIVATION]
    for n, status in enumerate(statuses):
        certificate(alice, status, n=n)
    certificate(alice, Certificate.Status.ACTIVE, authority=ca, n=99)
    settings.CLOUDFLARE_ZONE_CAPACITY = 7

    scraped = samples(client)

    assert value(scraped, "portal_certificates", status="active", issuer="managed") == 3
    assert value(scraped, "portal_certificates", status="revoked", issuer="managed") == 1
    assert value(scraped, "portal_certificates", status="active", issuer=f"portal_ca_{ca.pk}") == 1
    # The managed CA's slots: active and pending reactivation hold one, revoked and a portal CA's do not.
    assert value(scraped, "portal_zone_capacity_used", zone=get_zone_id()) == 4
    assert value(scraped, "portal_zone_capacity", zone=get_zone_id()) == 7


def test_the_firewall_sync_its_lag_its_result_and_the_rules_against_the_limit(client, settings):
    now = timezone.now()
    FirewallState.objects.create(
        zone_id=ZONE_ID,
        last_synced_at=now - timedelta(minutes=20),
        last_error="APIError: 500 internal error",
        sync_requested_at=now - timedelta(seconds=90),
        last_plan={"unchanged": 2, "add": [{}], "update": [{}, {}], "delete": [{}], "foreign_rules": 4},
    )
    FirewallState.objects.create(zone_id="f" * 32)  # never synced
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 20

    scraped = samples(client)

    assert value(scraped, "portal_firewall_last_sync_timestamp_seconds", zone=ZONE_ID) == pytest.approx(
        (now - timedelta(minutes=20)).timestamp()
    )
    assert value(scraped, "portal_firewall_last_sync_timestamp_seconds", zone="f" * 32) == 0
    assert value(scraped, "portal_firewall_sync_failing", zone=ZONE_ID) == 1
    assert value(scraped, "portal_firewall_sync_failing", zone="f" * 32) == 0
    assert value(scraped, "portal_firewall_sync_pending_seconds", zone=ZONE_ID) == pytest.approx(90, abs=5)
    assert value(scraped, "portal_firewall_sync_pending_seconds", zone="f" * 32) == 0
    assert value(scraped, "portal_firewall_rules", zone=ZONE_ID, owner="portal") == 5  # unchanged, added, updated
    assert value(scraped, "portal_firewall_rules", zone=ZONE_ID, owner="other") == 4
    assert value(scraped, "portal_firewall_rules_limit") == 20


def test_task_runs_and_failures_by_task(client):
    now = timezone.now()
    TaskRun.objects.create(
        task="certificates.tasks.poll_certificates",
        last_queued_at=now,
        last_started_at=now - timedelta(seconds=5),
        last_succeeded_at=now - timedelta(seconds=4),
        succeeded=120,
        failed=3,
        retried=0,
    )
    TaskRun.objects.create(task="certificates.tasks.sync_firewall", failed=2, retried=7)

    scraped = samples(client)

    poll = "certificates.tasks.poll_certificates"
    assert value(scraped, "portal_task_runs_total", task=poll, outcome="succeeded") == 120
    assert value(scraped, "portal_task_runs_total", task=poll, outcome="failed") == 3
    assert value(scraped, "portal_task_runs_total", task="certificates.tasks.sync_firewall", outcome="retried") == 7
    assert value(scraped, "portal_task_last_success_timestamp_seconds", task=poll) == pytest.approx(
        (now - timedelta(seconds=4)).timestamp()
    )
    assert value(scraped, "portal_task_last_queued_timestamp_seconds", task=poll) == pytest.approx(now.timestamp())
    # Never: 0, so that an alert on `time() - metric` fires for what never happened too.
    assert value(scraped, "portal_task_last_success_timestamp_seconds", task="certificates.tasks.sync_firewall") == 0


def test_cloudflare_calls_by_endpoint_and_status_with_their_latency_and_the_budget(client, emulator, monkeypatch):
    budget = LocalBudget(limit=40)
    monkeypatch.setattr(cloudflare_client, "get_call_budget", lambda: budget)
    cloudflare = get_cloudflare_client()
    cloudflare.get_entrypoint(get_zone_id())  # 404: none yet
    list(cloudflare.iter_client_certificates(get_zone_id(), status="pending_revocation"))
    list(cloudflare.iter_client_certificates(get_zone_id(), status="pending_revocation"))

    scraped = samples(client)

    entrypoint = "/zones/{zone_id}/rulesets/phases/http_request_firewall_custom/entrypoint"
    listing = "/zones/{zone_id}/client_certificates"
    assert value(scraped, "portal_cloudflare_calls_total", method="GET", endpoint=entrypoint, status="404") == 1
    assert value(scraped, "portal_cloudflare_calls_total", method="GET", endpoint=listing, status="200") == 2
    assert value(scraped, "portal_cloudflare_call_duration_seconds_count", method="GET", endpoint=listing) == 2
    assert (
        value(scraped, "portal_cloudflare_call_duration_seconds_bucket", method="GET", endpoint=listing, le="+Inf") == 2
    )
    assert value(scraped, "portal_cloudflare_call_duration_seconds_sum", method="GET", endpoint=listing) > 0
    assert value(scraped, "portal_cloudflare_budget_used") == 3
    assert value(scraped, "portal_cloudflare_budget_limit") == 40
    # No id in any endpoint: the series stay few whatever the zone holds.
    endpoints = {dict(labels)["endpoint"] for name, labels in scraped if name == "portal_cloudflare_calls_total"}
    assert endpoints == {entrypoint, listing}


def test_a_call_with_no_answer_is_counted_under_status_none(call_store):
    import requests

    with responses_lib.RequestsMock() as http:
        http.get(
            f"https://api.cloudflare.test/client/v4/zones/{ZONE_ID}/client_certificates/{'a' * 32}",
            body=requests.exceptions.ConnectTimeout("slow"),
        )
        client = CloudflareClient(
            api_token="t", base_url="https://api.cloudflare.test/client/v4", on_call=telemetry.record_cloudflare_call
        )
        client.retry = client.retry.__class__(max_attempts=1)
        with pytest.raises(Exception, match="could not connect"):
            client.get_client_certificate(ZONE_ID, "a" * 32)

    assert call_store.read().calls == {("GET", "/zones/{zone_id}/client_certificates/{id}", "none"): 1}


def test_an_observer_that_fails_changes_nothing_in_the_call(caplog):
    with responses_lib.RequestsMock() as http:
        http.get(
            f"https://api.cloudflare.test/client/v4/zones/{ZONE_ID}/client_certificates",
            json={"success": True, "errors": [], "messages": [], "result": []},
        )
        client = CloudflareClient(
            api_token="t",
            base_url="https://api.cloudflare.test/client/v4",
            on_call=mock.Mock(side_effect=ConnectionError("redis is gone")),
        )

        page = client.list_client_certificates_page(ZONE_ID)

    assert page.items == ()
    assert "the call observer failed" in caplog.text


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (f"/zones/{ZONE_ID}/client_certificates", "/zones/{zone_id}/client_certificates"),
        (
            f"/zones/{ZONE_ID}/client_certificates/4a1d2c3e-0000-4000-8000-000000000000",
            "/zones/{zone_id}/client_certificates/{id}",
        ),
        (f"/zones/{ZONE_ID}/rulesets/{'b' * 32}/rules/{'c' * 32}", "/zones/{zone_id}/rulesets/{id}/rules/{id}"),
        (f"/accounts/{'d' * 32}/mtls_certificates", "/accounts/{account_id}/mtls_certificates"),
    ],
)
def test_endpoints_are_named_without_their_ids(path, template):
    assert path_template(path) == template


def test_calls_counted_in_redis_are_seen_by_every_process(redis_url):
    import redis

    connection = redis.Redis.from_url(redis_url)
    connection.delete(telemetry.CALLS_KEY, telemetry.LATENCY_KEY)
    worker, web = telemetry.RedisCallStore(connection), telemetry.RedisCallStore(redis.Redis.from_url(redis_url))
    try:
        worker.record("GET", "/zones/{zone_id}/client_certificates", 200, 0.2)
        worker.record("GET", "/zones/{zone_id}/client_certificates", 200, 3.0)
        worker.record("DELETE", "/zones/{zone_id}/client_certificates/{id}", None, 30.5)

        stats = web.read()
    finally:
        connection.delete(telemetry.CALLS_KEY, telemetry.LATENCY_KEY)

    assert stats.calls == {
        ("GET", "/zones/{zone_id}/client_certificates", "200"): 2,
        ("DELETE", "/zones/{zone_id}/client_certificates/{id}", "none"): 1,
    }
    listing = stats.latency[("GET", "/zones/{zone_id}/client_certificates")]
    assert (listing.count, listing.total_seconds) == (2, pytest.approx(3.2))
    assert listing.buckets[telemetry.bucket_of(0.2)] == listing.buckets[telemetry.bucket_of(3.0)] == 1
    assert stats.latency[("DELETE", "/zones/{zone_id}/client_certificates/{id}")].buckets[-1] == 1  # above 30 s


def test_the_redis_budget_reports_the_calls_of_its_window(redis_url):
    import redis

    from cloudflare.budget import RedisBudget

    budget = RedisBudget(redis.Redis.from_url(redis_url), key="test:metrics-budget", limit=10, window=60)
    budget.clear()
    try:
        for _ in range(3):
            assert budget.try_acquire() == 0
        assert budget.used() == 3
    finally:
        budget.clear()
