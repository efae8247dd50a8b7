"""The client against the in-process emulator: the paths the portal relies on, faults included."""

from __future__ import annotations

import pytest
import requests

from cloudflare import errors
from cloudflare.client import CloudflareClient
from cloudflare.emulator import Emulator
from cloudflare.models import CertificateStatus
from cloudflare.retry import RetryPolicy
from cloudflare.wsgi_transport import mount_wsgi_app
from tests.emulator.conftest import FakeClock
from tests.support.pki import make_csr

ZONE = "7c5dae5552338874e5053f2534d2767a"
BASE = "http://emulator.test/client/v4"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock) -> Emulator:
    return Emulator(clock=clock, revocation_delay=30, reactivation_delay=30, zone_capacity=3)


@pytest.fixture
def client(emulator) -> CloudflareClient:
    session = requests.Session()
    mount_wsgi_app(session, BASE, emulator.wsgi_app)
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01)
    return CloudflareClient(api_token="t", base_url=BASE, session=session, retry=policy, sleep=lambda _s: None)


def test_a_timed_out_create_leaves_a_certificate_that_listing_finds(client, emulator):
    csr = make_csr("ambiguous")
    emulator.faults.create_commits_then_fails(mode="timeout")

    with pytest.raises(errors.AmbiguousRequestError):
        client.create_client_certificate(ZONE, csr=csr, validity_days=30)

    matches = [c for c in client.iter_client_certificates(ZONE) if c.csr.strip() == csr.strip()]
    assert len(matches) == 1, "the create reached Cloudflare; reconciliation adopts it instead of issuing again"
    assert [entry.method for entry in emulator.request_log].count("POST") == 1


def test_a_create_answered_with_a_500_is_not_repeated(client, emulator):
    emulator.faults.create_commits_then_fails(mode="server_error")

    with pytest.raises(errors.AmbiguousRequestError):
        client.create_client_certificate(ZONE, csr=make_csr("five-hundred"), validity_days=30)

    assert len(list(client.iter_client_certificates(ZONE))) == 1


def test_reads_converge_through_injected_429_and_5xx(client, emulator):
    emulator.faults.rate_limit(times=1, retry_after=1, method="GET")
    emulator.faults.server_error(times=1, status=502, html=True, method="GET")

    assert client.get_entrypoint(ZONE) is None
    assert [entry.status for entry in emulator.request_log] == [429, 502, 404]


def test_the_zone_quota_becomes_a_quota_error_and_revoking_frees_a_slot(client):
    issued = [client.create_client_certificate(ZONE, csr=make_csr(f"q{n}"), validity_days=30) for n in range(3)]

    with pytest.raises(errors.QuotaExceededError):
        client.create_client_certificate(ZONE, csr=make_csr("one-too-many"), validity_days=30)
    client.revoke_client_certificate(ZONE, issued[0].id)

    assert client.create_client_certificate(ZONE, csr=make_csr("fits-again"), validity_days=30).status == "active"


def test_revocation_completes_asynchronously_and_shows_in_the_status_filter(client, clock):
    certificate = client.create_client_certificate(ZONE, csr=make_csr("async"), validity_days=30)
    client.revoke_client_certificate(ZONE, certificate.id)

    pending = list(client.iter_client_certificates(ZONE, status=CertificateStatus.PENDING_REVOCATION))
    clock.advance(31)
    revoked = list(client.iter_client_certificates(ZONE, status=CertificateStatus.REVOKED))

    assert [c.id for c in pending] == [certificate.id]
    assert [c.id for c in revoked] == [certificate.id]
