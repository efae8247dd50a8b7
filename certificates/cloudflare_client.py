"""Builds the Cloudflare client from settings: against Cloudflare, or the built-in emulator when no token is set.

The emulator is never a silent stand-in: settings use it only with DEBUG or CLOUDFLARE_EMULATOR=true, and
then every page says so in a banner (templates/base.html), every answer in a header and each process in its
log (portal/stand_ins.py).

It lives in the domain app, beside its callers, so that certificates/ never reaches into the project package.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import requests
from django.conf import settings

from certificates.telemetry import record_cloudflare_call
from cloudflare.budget import CallBudget, LocalBudget, RedisBudget
from cloudflare.client import CloudflareClient
from cloudflare.retry import RetryPolicy

if TYPE_CHECKING:
    from cloudflare_emulator import Emulator

EMULATOR_BASE_URL = "http://cloudflare-emulator.invalid/client/v4"
EMULATOR_TOKEN = "emulator-token"  # noqa: S105 - the in-process emulator accepts any bearer token
CONNECT_TIMEOUT = 5.0
# A worker waits this long for a slot of the call budget before the task fails (and retries later).
WORKER_MAX_BUDGET_WAIT = 60.0


@functools.cache
def get_call_budget() -> CallBudget:
    """The budget every process shares: in Redis when REDIS_URL is set, else per process."""
    if settings.REDIS_URL:
        import redis

        return RedisBudget(
            redis.Redis.from_url(settings.REDIS_URL, **settings.REDIS_SOCKET_OPTIONS),
            key=f"cloudflare:budget:{settings.CLOUDFLARE_ACCOUNT_ID or get_zone_id()}",
            limit=settings.CLOUDFLARE_CALL_BUDGET,
            window=settings.CLOUDFLARE_CALL_BUDGET_WINDOW,
        )
    return LocalBudget(settings.CLOUDFLARE_CALL_BUDGET, settings.CLOUDFLARE_CALL_BUDGET_WINDOW)


@functools.cache
def get_emulator() -> Emulator:
    # Imported here, not at the top: a portal with a real token never loads the emulator.
    from cloudflare_emulator import Emulator

    settings.CLOUDFLARE_EMULATOR_STATE.parent.mkdir(parents=True, exist_ok=True)
    return Emulator(
        state_path=settings.CLOUDFLARE_EMULATOR_STATE,
        revocation_delay=settings.CLOUDFLARE_EMULATOR_TRANSITION_DELAY,
        reactivation_delay=settings.CLOUDFLARE_EMULATOR_TRANSITION_DELAY,
        # The emulated zone refuses rules beyond the limit the portal believes its plan has.
        custom_rules_limit=settings.CLOUDFLARE_CUSTOM_RULES_LIMIT,
    )


@functools.cache
def get_http_session() -> requests.Session:
    """One Session per process: its connection pool keeps TLS connections to Cloudflare open between calls.

    Shared by the threads of a process (urllib3's pool is thread-safe); the adapters are mounted once, here.
    """
    return requests.Session()


@functools.lru_cache(maxsize=1)
def get_emulator_session(emulator: Emulator) -> requests.Session:
    """The same, routed to the emulator; mounted once for each emulator (tests make one each)."""
    from cloudflare_emulator.wsgi_transport import mount_wsgi_app

    session = requests.Session()
    mount_wsgi_app(session, EMULATOR_BASE_URL, emulator.wsgi_app)
    return session


def get_cloudflare_client(*, wait_for_budget: bool = True, low_priority: bool = False) -> CloudflareClient:
    """A client for the configured zone. `wait_for_budget=False` is a web request's client: it must answer within
    CLOUDFLARE_WEB_DEADLINE, so it waits only briefly (CLOUDFLARE_WEB_MAX_WAIT) for the budget or a Retry-After
    and each attempt's read timeout is CLOUDFLARE_WEB_TIMEOUT. Workers (the default) wait and time out longer.
    Build one client per web request: the deadline counts from its creation.

    `low_priority` (interactive issuance) leaves CLOUDFLARE_BUDGET_RESERVED calls of each window to everything
    else, so that revocation and the firewall sync always get through.
    """
    if settings.CLOUDFLARE_EMULATED:
        base_url, token = EMULATOR_BASE_URL, EMULATOR_TOKEN
        session = get_emulator_session(get_emulator())
    else:
        session = get_http_session()
        base_url, token = settings.CLOUDFLARE_API_BASE_URL, settings.CLOUDFLARE_API_TOKEN
    web = not wait_for_budget
    retry = RetryPolicy(
        max_attempts=settings.CLOUDFLARE_RETRY_ATTEMPTS, base_delay=settings.CLOUDFLARE_RETRY_BASE_DELAY
    )
    if web:
        retry = dataclasses.replace(retry, max_retry_after=settings.CLOUDFLARE_WEB_MAX_WAIT)
    read_timeout = settings.CLOUDFLARE_WEB_TIMEOUT if web else settings.CLOUDFLARE_TIMEOUT
    return CloudflareClient(
        api_token=token,
        base_url=base_url,
        session=session,
        timeout=(min(CONNECT_TIMEOUT, read_timeout), read_timeout),
        retry=retry,
        budget=get_call_budget(),
        # A web request waits for a slot too, but only as long as a short Retry-After (one 429 must not fail
        # every concurrent user); the deadline bounds it further.
        wait_for_budget=True,
        max_budget_wait=settings.CLOUDFLARE_WEB_MAX_WAIT if web else WORKER_MAX_BUDGET_WAIT,
        deadline=settings.CLOUDFLARE_WEB_DEADLINE if web else None,
        budget_reserve=settings.CLOUDFLARE_BUDGET_RESERVED if low_priority else 0,
        # Counted for /metrics, in Redis when there is one (certificates/telemetry.py).
        on_call=record_cloudflare_call,
    )


def get_zone_id() -> str:
    """The zone every new certificate and rule goes to (rows store it, so more zones can come later).

    The one reader of CLOUDFLARE_ZONE_ID; portal/settings.py refuses to start without it when a token is set.
    """
    zone_id: str = settings.CLOUDFLARE_ZONE_ID
    return zone_id
