from __future__ import annotations

import os
import time

import pytest
import responses as responses_lib

from tests.support.api import api  # noqa: F401 (a fixture, used by name: the JSON API as a user's script calls it)
from tests.support.contract import ContractValidator, Exchange

ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"
ACCOUNT_ID = "01a7362d577a6c3019a474fd6f485823"
BASE_URL = "https://api.cloudflare.test/client/v4"


def services_required() -> bool:
    """CI sets REQUIRE_SERVICES=1: a test that needs PostgreSQL or Redis must run there, not skip."""
    return os.environ.get("REQUIRE_SERVICES", "") == "1"


@pytest.fixture
def redis_url() -> str:
    import redis

    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if services_required():
            pytest.fail(f"Redis is required (REQUIRE_SERVICES=1) but {url} is unreachable: {exc}")
        pytest.skip(f"no Redis at {url}")
    return url


@pytest.fixture
def contract() -> ContractValidator:
    return ContractValidator()


@pytest.fixture
def cf_http(contract: ContractValidator):
    """`responses` for the client's HTTP layer; every exchange is checked against the official schema."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
        for call in mock.calls:
            check_call(contract, call)


def check_call(contract: ContractValidator, call) -> None:
    request, response = call.request, call.response
    if not isinstance(getattr(response, "status_code", None), int):
        contract.check_request(request)  # a transport error: there is no response to check
        return
    if response.status_code >= 500 or not is_envelope(response):
        # Server errors and broken bodies (an HTML 502, an empty body) are faults we inject on purpose; the
        # schema describes neither, so only the request is checked.
        contract.check_request(request)
        return
    body = request.body.encode() if isinstance(request.body, str) else request.body
    contract.check(Exchange(request.method, request.url, body, response.status_code, response.content))


def is_envelope(response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return False
    # A 200 with success:false is another injected fault: the schema's 200 answers all succeed.
    return isinstance(data, dict) and "success" in data and (data["success"] or response.status_code >= 400)


# -- the portal against an isolated in-process emulator --------------------------------------------------------


@pytest.fixture
def emulator(settings, monkeypatch):
    """Each test gets its own in-memory emulator and its own call budget."""
    from certificates import cloudflare_client
    from cloudflare.budget import LocalBudget
    from cloudflare_emulator import Emulator

    settings.CLOUDFLARE_EMULATED = True
    settings.CLOUDFLARE_ZONE_ID = "0" * 32
    settings.CLOUDFLARE_RETRY_BASE_DELAY = 0.001
    from tests.emulator.conftest import FakeClock

    # The clock starts at the real time (certificates get real dates) and moves only when a test says so.
    instance = Emulator(clock=FakeClock(time.time()), revocation_delay=30, reactivation_delay=30)
    monkeypatch.setattr(cloudflare_client, "get_emulator", lambda: instance)
    monkeypatch.setattr(cloudflare_client, "get_call_budget", lambda: LocalBudget())
    return instance


def make_user(username: str, *, staff: bool = False):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password="correct horse battery staple"
    )
    if staff:
        user.is_staff = user.is_superuser = True
        user.save()
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def charlie(db):
    """Staff, with TOTP set up (staff must have two-factor authentication)."""
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    user = make_user("charlie", staff=True)
    TOTP.activate(user, generate_totp_secret())
    return user


@pytest.fixture(autouse=True)
def empty_cache():
    """allauth keeps failed-login counts and used TOTP codes in the cache: no test inherits another's."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is slow by design; the tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def celery_runs_tasks_inline(settings):
    """Tasks run in the test's process when enqueued (after commit), instead of going to a broker."""
    from portal.celery import app

    # In Django's settings too: with Celery 5.6.3 the flag set on app.conf alone was lost once a test changed a
    # setting (Celery took its configuration from Django's settings again).
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
