"""Redis (the call budget, the cache and Celery's broker) failing during a web request: a 503 that says so.

Every web path that touches Redis does so before it changes anything (the budget is asked before the Cloudflare
call, a throttle before the sign-in) or after its commit in a way that cannot fail the request (queueing a task,
certificates.enqueue._enqueue_quietly). So when Redis fails, nothing was done and the honest answer is "try again":
the API answers it in JSON (certificates/api.py), the pages with this middleware, instead of a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# A Redis command that failed, and a task that could not be handed to the broker.
OUTAGE_ERRORS = (RedisError, OperationalError)
OUTAGE_MESSAGE = (
    "The portal cannot reach its Redis service (call budget and task queue) right now, so nothing was done. "
    "Try again in a minute."
)
RETRY_AFTER_SECONDS = 30


class RedisOutageMiddleware:
    """Turns a Redis or broker error raised by a page's view into a 503 page with the message."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OUTAGE_ERRORS):
            return None
        logger.warning("Redis unavailable on %s %s: %r", request.method, request.path, exception)
        response = render(request, "service_unavailable.html", {"message": OUTAGE_MESSAGE}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
