"""Per-user rate limits (fair use of Cloudflare) and how their waits read in messages."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TypeVar

from django.db.models import Model, QuerySet
from django.utils import timezone

from portal.env import Rate

_Event = TypeVar("_Event", bound=Model)


def seconds_until_allowed(rate: Rate, events: QuerySet[_Event]) -> int:
    """Seconds until one more event fits `rate`, given the past events (rows with created_at); 0 if it fits now."""
    now = timezone.now()
    window = timedelta(seconds=rate.period)
    recent = events.filter(created_at__gt=now - window).order_by("created_at").values_list("created_at", flat=True)
    excess = recent.count() - rate.count
    if excess < 0:
        return 0
    # One more fits once the oldest `excess + 1` events have left the window.
    frees_up_at: datetime = recent[excess] + window
    return max(1, math.ceil((frees_up_at - now).total_seconds()))


def count_of(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def in_words(seconds: int) -> str:
    """`45 seconds`, `12 minutes`, `1 hour`, `2 days`: rounded up, so that trying again then succeeds."""
    count, unit = seconds, "second"
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 or seconds >= 2 * size:
            count, unit = math.ceil(seconds / size), name
            break
    return count_of(count, unit)


def period_in_words(seconds: int) -> str:
    """`hour`, `15 minutes`: the period of a rate, as in "10 per hour"."""
    return in_words(seconds).removeprefix("1 ")
