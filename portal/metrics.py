"""Prometheus metrics, computed when Prometheus scrapes /metrics (portal/views.py), from what every process shares.

Nothing here counts in the web process's memory: gunicorn's workers and the Celery workers are separate processes,
in separate containers, so a counter kept in one of them would show that one only. Instead each value is read at
scrape time from the shared records: the database (certificates, the firewall's state, TaskRun rows with each task's
counts, written by portal/celery.py's receivers) and Redis (the call budget, and the Cloudflare call counts of
certificates/telemetry.py). A scrape costs four queries and two Redis round trips, whatever the zone's size.

Label values are bounded: statuses and task names are the code's own, issuers are the few portal CAs, endpoints
are path templates with their ids replaced (cloudflare.client.path_template).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from certificates import cloudflare_client, telemetry
from certificates.admission import zone_used
from certificates.cloudflare_client import get_zone_id
from certificates.firewall.status import rules_after_last_sync
from certificates.models import Certificate, FirewallState, TaskRun
from certificates.telemetry import LATENCY_BUCKETS, Latency

MANAGED_CA = "managed"  # the issuer label of Cloudflare's managed CA; a portal CA's is portal_ca_<id>


def _timestamp(at: datetime | None) -> float:
    """Seconds since the epoch; 0 for never, so that `time() - metric > x` alerts on what never happened too."""
    return at.timestamp() if at else 0.0


class PortalCollector:
    """Each scrape reads the current values (prometheus-client calls collect() then)."""

    def collect(self) -> Iterator[Metric]:
        yield from self.certificates()
        yield from self.firewall()
        yield from self.budget()
        yield from self.cloudflare_calls()
        yield from self.task_runs()

    def certificates(self) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "portal_certificates", "Certificates the portal holds, by status and issuer.", labels=["status", "issuer"]
        )
        rows = Certificate.objects.values_list("status", "authority_id").annotate(count=Count("id")).order_by()
        for status, authority_id, count in rows:
            by_status.add_metric([status, f"portal_ca_{authority_id}" if authority_id else MANAGED_CA], count)
        yield by_status
        zone_id = get_zone_id()
        used = GaugeMetricFamily(
            "portal_zone_capacity_used",
            "Certificates of Cloudflare's managed CA that hold one of the zone's slots.",
            labels=["zone"],
        )
        used.add_metric([zone_id], zone_used(zone_id))
        yield used
        capacity = GaugeMetricFamily(
            "portal_zone_capacity", "Certificates the zone may hold (CLOUDFLARE_ZONE_CAPACITY).", labels=["zone"]
        )
        capacity.add_metric([zone_id], settings.CLOUDFLARE_ZONE_CAPACITY)
        yield capacity

    def firewall(self) -> Iterator[Metric]:
        now = timezone.now()
        last_sync = GaugeMetricFamily(
            "portal_firewall_last_sync_timestamp_seconds",
            "When the zone's rules were last synced successfully (0: never).",
            labels=["zone"],
        )
        failing = GaugeMetricFamily(
            "portal_firewall_sync_failing", "1 when the zone's latest sync failed, else 0.", labels=["zone"]
        )
        pending = GaugeMetricFamily(
            "portal_firewall_sync_pending_seconds",
            "How long a committed change has waited for a sync to push it (0: none waits).",
            labels=["zone"],
        )
        rules = GaugeMetricFamily(
            "portal_firewall_rules",
            "Custom rules in the zone after the last sync: the portal's and other teams'.",
            labels=["zone", "owner"],
        )
        for state in FirewallState.objects.all():
            zone = [state.zone_id]
            last_sync.add_metric(zone, _timestamp(state.last_synced_at))
            failing.add_metric(zone, 1 if state.last_error else 0)
            waited = (now - state.sync_requested_at).total_seconds() if state.sync_requested_at else 0.0
            pending.add_metric(zone, max(0.0, waited))
            in_zone = rules_after_last_sync(state)
            rules.add_metric([state.zone_id, "portal"], in_zone.portal)
            rules.add_metric([state.zone_id, "other"], in_zone.other)
        yield from (last_sync, failing, pending, rules)
        yield GaugeMetricFamily(
            "portal_firewall_rules_limit",
            "Custom rules the zone's plan allows (CLOUDFLARE_CUSTOM_RULES_LIMIT).",
            value=settings.CLOUDFLARE_CUSTOM_RULES_LIMIT,
        )

    def budget(self) -> Iterator[Metric]:
        budget = cloudflare_client.get_call_budget()
        yield GaugeMetricFamily(
            "portal_cloudflare_budget_used", "Calls of the shared budget taken in the current window.", budget.used()
        )
        yield GaugeMetricFamily(
            "portal_cloudflare_budget_limit",
            "Calls the budget allows per window (CLOUDFLARE_CALL_BUDGET).",
            budget.limit,
        )

    def cloudflare_calls(self) -> Iterator[Metric]:
        stats = telemetry.get_call_store().read()
        calls = CounterMetricFamily(
            "portal_cloudflare_calls",
            "HTTP attempts to Cloudflare's API by endpoint and status (none: no answer came).",
            labels=["method", "endpoint", "status"],
        )
        for (method, endpoint, status), count in sorted(stats.calls.items()):
            calls.add_metric([method, endpoint, status], count)
        yield calls
        durations = HistogramMetricFamily(
            "portal_cloudflare_call_duration_seconds",
            "Time of each HTTP attempt to Cloudflare's API, by endpoint.",
            labels=["method", "endpoint"],
        )
        for (method, endpoint), latency in sorted(stats.latency.items()):
            durations.add_metric([method, endpoint], _cumulative(latency), latency.total_seconds)
        yield durations

    def task_runs(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "portal_task_runs", "Celery task runs by task and outcome.", labels=["task", "outcome"]
        )
        times = {
            "queued": GaugeMetricFamily(
                "portal_task_last_queued_timestamp_seconds",
                "When beat last queued the task (0: never).",
                labels=["task"],
            ),
            "started": GaugeMetricFamily(
                "portal_task_last_start_timestamp_seconds", "When a worker last started the task.", labels=["task"]
            ),
            "succeeded": GaugeMetricFamily(
                "portal_task_last_success_timestamp_seconds", "When the task last succeeded.", labels=["task"]
            ),
            "failed": GaugeMetricFamily(
                "portal_task_last_failure_timestamp_seconds", "When the task last failed.", labels=["task"]
            ),
        }
        for run in TaskRun.objects.order_by("task"):
            for outcome in ("succeeded", "failed", "retried"):
                runs.add_metric([run.task, outcome], getattr(run, outcome))
            times["queued"].add_metric([run.task], _timestamp(run.last_queued_at))
            times["started"].add_metric([run.task], _timestamp(run.last_started_at))
            times["succeeded"].add_metric([run.task], _timestamp(run.last_succeeded_at))
            times["failed"].add_metric([run.task], _timestamp(run.last_failed_at))
        yield runs
        yield from times.values()


def _cumulative(latency: Latency) -> list[tuple[str, float]]:
    """Prometheus buckets count every observation up to their bound; the store keeps one count per bucket."""
    bounds = [*(str(bound) for bound in LATENCY_BUCKETS), "+Inf"]
    total = 0
    buckets = []
    for bound, count in zip(bounds, latency.buckets, strict=True):
        total += count
        buckets.append((bound, float(total)))
    return buckets


def exposition() -> bytes:
    """The text Prometheus scrapes. A registry of its own: the default one would add this gunicorn worker's process
    and garbage-collector metrics, which say nothing of the portal."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    return generate_latest(registry)
