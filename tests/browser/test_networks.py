"""The networks page in Chromium at a phone's width and at a desktop's: nothing wider than the screen, "add my
current address" fills the list, a refused line is shown, a list that admits nothing is saved only when confirmed,
and the status changes to "in force" without a reload that would lose what the user is typing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from certificates import services
from certificates.cloudflare_client import get_zone_id
from certificates.models import FirewallState

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOME = "93.184.216.34"  # the public address Cloudflare and the portal's proxy saw
WIDTHS = [pytest.param(390, id="390px"), pytest.param(1280, id="1280px")]


@pytest.fixture
def behind_a_proxy(settings, context):
    """The portal behind one proxy that appends the client's address to X-Forwarded-For; the browser is at HOME."""
    settings.TRUSTED_PROXY_COUNT = 1
    context.set_extra_http_headers({"X-Forwarded-For": HOME})


def open_networks(page: Page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 844})
    page.goto("/allowlist/")


def assert_fits(page: Page) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px viewport"


@pytest.mark.parametrize("width", WIDTHS)
def test_add_my_address_then_save(page, traffic, behind_a_proxy, sign_in, alice, width):
    sign_in(alice)
    open_networks(page, width)
    assert_fits(page)
    expect(page.get_by_test_id("current-address")).to_have_text(HOME)

    page.get_by_test_id("networks").fill("# office\n8.8.8.0/24")
    page.get_by_test_id("add-my-address").click()
    page.get_by_test_id("add-my-address").click()  # a second click does not add it twice

    expect(page.get_by_test_id("networks")).to_have_value(f"# office\n8.8.8.0/24\n{HOME}/32\n")
    expect(page.get_by_test_id("networks-added")).to_have_text(f"{HOME}/32 is already in the list.")
    page.get_by_test_id("save-networks").click()

    expect(page.get_by_text("Networks saved.")).to_be_visible()
    assert services.allowlist_get(user=alice) == ["8.8.8.0/24", f"{HOME}/32"]
    expect(page.get_by_test_id("networks")).to_have_value(f"8.8.8.0/24\n{HOME}/32")
    assert_fits(page)
    assert traffic.page_errors == []


@pytest.mark.parametrize("width", WIDTHS)
def test_a_list_that_admits_nothing_is_refused_then_saved_when_confirmed(page, traffic, sign_in, alice, width):
    sign_in(alice)
    open_networks(page, width)
    typed = "# home network\n\n10.0.0.0/8\nfd00:1234:5678:9abc:def0:1234:5678:9abc/128"
    page.get_by_test_id("networks").fill(typed)
    page.get_by_test_id("save-networks").click()

    problems = page.get_by_test_id("networks-problems")
    expect(problems).to_contain_text("this list would block every request with your certificates")
    expect(problems).to_contain_text("line 3: 10.0.0.0/8 is a private range (RFC 1918).")
    expect(page.get_by_test_id("networks")).to_have_value(typed)  # as typed, comments and blank line included
    assert services.allowlist_get(user=alice) == []
    assert_fits(page)

    problems.get_by_role("button", name="Show line 3").click()
    selected = page.evaluate(
        "() => { const t = document.getElementById('networks'); "
        "return t.value.slice(t.selectionStart, t.selectionEnd); }"
    )
    assert selected == "10.0.0.0/8"

    page.get_by_test_id("confirm-unreachable").check()
    page.get_by_test_id("save-networks").click()

    expect(
        page.get_by_text("Saved as you confirmed: every request with your certificates will be blocked.")
    ).to_be_visible()
    assert services.allowlist_get(user=alice) == ["10.0.0.0/8", "fd00:1234:5678:9abc:def0:1234:5678:9abc/128"]
    assert_fits(page)
    assert traffic.page_errors == []


def test_a_bad_line_is_pointed_at(page, sign_in, alice):
    sign_in(alice)
    open_networks(page, 390)
    page.get_by_test_id("networks").fill("8.8.8.0/24\n" + "2606:4700:" * 12 + "\n8.8.4.4/16")
    page.get_by_test_id("save-networks").click()

    problems = page.get_by_test_id("networks-problems")
    expect(problems).to_contain_text("line 3: `8.8.4.4/16` has host bits set; did you mean 8.8.0.0/16?")
    expect(problems.get_by_role("button", name="Show line 2")).to_be_visible()
    assert_fits(page)  # the long unparseable line wraps


def test_the_status_turns_to_in_force_without_losing_what_is_being_typed(page, sign_in, alice):
    services.allowlist_set(user=alice, networks=["8.8.8.0/24"], origin=services.Origin(actor=alice))
    sign_in(alice)
    open_networks(page, 1280)
    status = page.get_by_test_id("allowlist-status")
    expect(status).to_have_attribute("data-status", "waiting")
    page.get_by_test_id("networks").fill("8.8.8.0/24\n8.8.4.0/24")

    now = timezone.now()
    FirewallState.objects.update_or_create(
        zone_id=get_zone_id(), defaults={"synced_inputs_at": now, "last_synced_at": now + timedelta(seconds=1)}
    )

    expect(status).to_have_attribute("data-status", "applied", timeout=15_000)
    expect(status).to_contain_text("In force since")
    expect(page.get_by_test_id("networks")).to_have_value("8.8.8.0/24\n8.8.4.0/24")
