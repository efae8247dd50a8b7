"""deploy/prometheus-alerts.yml against the portal's own /metrics: the alerts fire on a stopped worker, a stopped beat
and a sync that keeps failing, and stay quiet on a healthy portal.

The single-scrape expressions (`m > x`, `m == x`, `time() - m > x`, `a / b > x`) are evaluated by the small
evaluator below, which reads the scrape with prometheus-client's own parser; the others (rates over a window, sums)
need a series over time, so for them the test checks that every metric they name is in the scrape. Where `promtool`
is installed (Debian's `prometheus` package) it also checks the file's syntax; it is not needed for the rest.
"""

from __future__ import annotations

import operator
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from certificates.cloudflare_client import get_zone_id
from certificates.models import FirewallState, TaskRun
from tests.test_health import POLL, record_poll

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus-alerts.yml"
TOKEN = "alerts-test-token"

pytestmark = pytest.mark.django_db

Sample = tuple[str, dict[str, str], float]


def rules() -> dict[str, dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def scrape(client, settings) -> list[Sample]:
    settings.METRICS_TOKEN = TOKEN
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    ]


# -- the evaluator ---------------------------------------------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SELECTOR = rf"({NAME})(?:\{{([^}}]*)\}})?"
COMPARE = {">": operator.gt, "<": operator.lt, "==": operator.eq, ">=": operator.ge}
SIMPLE = re.compile(
    rf"^\s*(?P<time>time\(\)\s*-\s*)?{SELECTOR}(?:\s*/\s*{SELECTOR})?\s*(?P<op>>=|==|>|<)\s*(?P<bound>[0-9.]+)\s*$"
)


def matchers(text: str | None) -> dict[str, str]:
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', text or ""))


def select(scraped: list[Sample], name: str, wanted: dict[str, str]) -> dict[frozenset, float]:
    return {
        frozenset(labels.items()): value
        for sample_name, labels, value in scraped
        if sample_name == name and all(labels.get(key) == expected for key, expected in wanted.items())
    }


def firing(expression: str, scraped: list[Sample], now: datetime) -> list[dict[str, str]] | None:
    """The label sets for which a single-scrape expression holds; None when it is not one this evaluator reads."""
    match = SIMPLE.match(expression)
    if match is None:
        return None
    name, labels, divisor, divisor_labels = match.group(2, 3, 4, 5)
    series = select(scraped, name, matchers(labels))
    if divisor:
        # Division matches series with the same labels, as PromQL's one-to-one matching does.
        below = select(scraped, divisor, matchers(divisor_labels))
        series = {key: value / below[key] for key, value in series.items() if below.get(key)}
    if match["time"]:
        series = {key: now.timestamp() - value for key, value in series.items()}
    holds = COMPARE[match["op"]]
    return [dict(key) for key, value in series.items() if holds(value, float(match["bound"]))]


def fired(scraped: list[Sample], now: datetime) -> dict[str, list[dict[str, str]]]:
    """Every single-scrape alert that fires, with the label sets it fires for."""
    answer = {}
    for alert, rule in rules().items():
        result = firing(rule["expr"], scraped, now)
        if result:
            answer[alert] = result
    return answer


def test_the_evaluator_reads_what_it_claims_to():
    now = timezone.now()
    scraped = [
        ("up_since", {"job": "a"}, now.timestamp() - 100),
        ("up_since", {"job": "b"}, now.timestamp() - 10),
        ("used", {"zone": "z"}, 95.0),
        ("limit", {"zone": "z"}, 100.0),
    ]

    assert firing('time() - up_since{job="a"} > 50', scraped, now) == [{"job": "a"}]
    assert firing("time() - up_since > 50", scraped, now) == [{"job": "a"}]
    assert firing("used / limit > 0.9", scraped, now) == [{"zone": "z"}]
    assert firing("used / limit > 0.96", scraped, now) == []
    assert firing("used == 95", scraped, now) == [{"zone": "z"}]
    assert firing("sum by (zone) (used) > 1", scraped, now) is None


# -- the portal's states ---------------------------------------------------------------------------------------------


def healthy_portal() -> datetime:
    now = record_poll()
    FirewallState.objects.create(zone_id=get_zone_id(), last_synced_at=now, last_plan={"unchanged": 1})
    return now


def test_a_healthy_portal_fires_nothing(client, settings):
    now = healthy_portal()

    assert fired(scrape(client, settings), now) == {}


def test_a_stopped_worker_fires_the_worker_and_poll_alerts(client, settings):
    healthy_portal()
    # Ten minutes on: beat still queues the poll every 30 s, no worker starts it, nothing succeeds, the sync's last
    # success (ten minutes ago) is not stale yet.
    later = timezone.now() + timedelta(minutes=10, seconds=30)
    TaskRun.objects.filter(task=POLL).update(last_queued_at=later - timedelta(seconds=10))

    alerts = fired(scrape(client, settings), later)

    assert set(alerts) == {"PortalWorkerStopped", "PortalPollFailing"}
    assert alerts["PortalWorkerStopped"] == [{"task": POLL}]


def test_a_stopped_beat_fires_the_beat_alert(client, settings):
    healthy_portal()
    later = timezone.now() + timedelta(minutes=6)  # nothing queued, so nothing started: the worker is idle

    alerts = fired(scrape(client, settings), later)

    assert "PortalBeatStopped" in alerts
    assert "PortalFirewallSyncFailing" not in alerts


def test_a_sync_that_keeps_failing_fires_the_sync_alerts(client, settings):
    now = record_poll()
    FirewallState.objects.create(
        zone_id=get_zone_id(),
        last_synced_at=now - timedelta(hours=2),
        last_error="APIError: 500",
        sync_requested_at=now - timedelta(minutes=40),
    )

    alerts = fired(scrape(client, settings), now)

    zone = [{"zone": get_zone_id()}]
    assert alerts == {
        "PortalFirewallSyncFailing": zone,
        "PortalFirewallSyncStale": zone,
        "PortalFirewallChangeWaiting": zone,
    }


def test_a_zone_near_its_capacity_fires_its_alert(client, settings, alice):
    from tests.test_metrics import certificate

    settings.CLOUDFLARE_ZONE_CAPACITY = 10
    for n in range(10):
        certificate(alice, "active", n=n)

    assert "PortalZoneCapacityNearLimit" in fired(scrape(client, settings), healthy_portal())


def test_every_metric_an_alert_names_is_in_the_scrape(client, settings, emulator):
    from certificates.cloudflare_client import get_cloudflare_client

    healthy_portal()
    get_cloudflare_client().get_entrypoint(get_zone_id())  # a Cloudflare call, so its series exist
    TaskRun.objects.filter(task=POLL).update(failed=1)
    exposed = {name.removesuffix("_total") for name, _, _ in scrape(client, settings)}
    exposed |= {f"{name}_total" for name in exposed}

    for alert, rule in rules().items():
        named = {name for name in re.findall(NAME, rule["expr"]) if name.startswith("portal_")}
        assert named, alert
        assert named <= exposed, f"{alert} names {named - exposed}"


def test_every_alert_says_how_bad_and_what_happened():
    for alert, rule in rules().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), alert
        assert rule["annotations"]["summary"], alert


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_accepts_the_rules():
    result = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


# -- the sample Grafana dashboard -------------------------------------------------------------------------------------

DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"


def dashboard_expressions() -> list[str]:
    import json

    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", ())]


def test_the_dashboard_charts_only_metrics_the_portal_exposes(client, settings, emulator, alice):
    from certificates.cloudflare_client import get_cloudflare_client
    from tests.test_metrics import certificate

    healthy_portal()
    certificate(alice, "active")
    get_cloudflare_client().get_entrypoint(get_zone_id())
    exposed = {name for name, _, _ in scrape(client, settings)}
    expressions = dashboard_expressions()

    assert len(expressions) >= 10
    named = {name for expression in expressions for name in re.findall(NAME, expression) if name.startswith("portal_")}
    assert named <= exposed, named - exposed
    # Every family the portal exports is on the dashboard somewhere.
    families = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in exposed}
    charted = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in named}
    assert families - charted <= {
        "portal_task_last_start_timestamp_seconds",
        "portal_task_last_failure_timestamp_seconds",
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_parses_every_dashboard_query(tmp_path):
    # promtool has no command that parses a lone query; as recording rules, `check rules` parses each one.
    records = [{"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(dashboard_expressions())]
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))

    result = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
