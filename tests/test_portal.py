"""The portal shell: pages render, the emulator banner tells the truth, the client factory wires the emulator."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from certificates import cloudflare_client
from cloudflare_emulator import Emulator
from tests.support.pki import make_csr


@pytest.mark.django_db
def test_it_shows_the_emulator_banner_when_no_token_is_set(client):
    with override_settings(CLOUDFLARE_EMULATED=True):
        response = client.get(reverse("home"))
    assert response.status_code == 200
    assert b'data-testid="emulator-banner"' in response.content


@pytest.mark.django_db
def test_it_hides_the_banner_against_real_cloudflare(client):
    with override_settings(CLOUDFLARE_EMULATED=False):
        response = client.get(reverse("home"))
    assert b"emulator-banner" not in response.content


def test_healthz_answers(client):
    assert client.get(reverse("healthz")).json() == {"status": "ok"}


def test_pages_refuse_unsafe_methods(client):
    assert client.post(reverse("home")).status_code == 405


@pytest.fixture
def isolated_emulator(monkeypatch, settings, tmp_path):
    settings.CLOUDFLARE_EMULATED = True
    settings.CLOUDFLARE_ZONE_ID = "0" * 32
    emulator = Emulator(state_path=tmp_path / "emulator.json")
    monkeypatch.setattr(cloudflare_client, "get_emulator", lambda: emulator)
    return emulator


def test_the_factory_talks_to_the_in_process_emulator(isolated_emulator, settings):
    client = cloudflare_client.get_cloudflare_client()

    issued = client.create_client_certificate(settings.CLOUDFLARE_ZONE_ID, csr=make_csr("factory"), validity_days=7)

    assert client.get_client_certificate(settings.CLOUDFLARE_ZONE_ID, issued.id).common_name == "factory"
    assert [entry.method for entry in isolated_emulator.request_log] == ["POST", "GET"]


def test_the_factory_uses_the_real_api_when_a_token_is_set(settings):
    settings.CLOUDFLARE_EMULATED = False
    settings.CLOUDFLARE_API_TOKEN = "real-token"
    settings.CLOUDFLARE_API_BASE_URL = "https://api.cloudflare.com/client/v4"

    client = cloudflare_client.get_cloudflare_client()

    assert client.base_url == "https://api.cloudflare.com/client/v4"
    assert not any("emulator" in prefix for prefix in client.session.adapters)


def test_the_in_process_emulator_has_the_portals_rule_limit(settings, tmp_path):
    settings.CLOUDFLARE_EMULATOR_STATE = tmp_path / "emulator.json"
    settings.CLOUDFLARE_CUSTOM_RULES_LIMIT = 7

    emulator = cloudflare_client.get_emulator.__wrapped__()  # past the per-process cache

    assert emulator.settings.custom_rules_limit == 7


def test_a_frozen_redis_fails_the_cache_and_the_budget_within_seconds(settings, redis_url):
    """Without socket timeouts a Redis that stops answering holds a web request until gunicorn kills it."""
    from django.core.cache.backends.redis import RedisCache

    from certificates import cloudflare_client

    settings.REDIS_URL = redis_url
    cloudflare_client.get_call_budget.cache_clear()
    try:
        budget = cloudflare_client.get_call_budget()
        options = budget._redis.connection_pool.connection_kwargs
        assert (options["socket_connect_timeout"], options["socket_timeout"]) == (2.0, 2.0)
    finally:
        cloudflare_client.get_call_budget.cache_clear()
    cache = RedisCache(redis_url, {"OPTIONS": settings.REDIS_SOCKET_OPTIONS})
    pool_options = cache._cache._pool_options
    assert (pool_options["socket_connect_timeout"], pool_options["socket_timeout"]) == (2.0, 2.0)
