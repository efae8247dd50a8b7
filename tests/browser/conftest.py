"""Browser tests: the real pages in a real Chromium (Playwright, sync API) against pytest-django's live_server.

One Chromium per module, a fresh browser context (cookies, storage, downloads) per test. Every test runs
against its own in-process Cloudflare emulator (the `emulator` fixture of tests/conftest.py), which the
live_server thread uses too.

Chromium comes from the system (Debian: `apt-get install chromium`), not from `playwright install`:
set BROWSER_EXECUTABLE to use another binary. Without it the tests are skipped, except in CI
(REQUIRE_SERVICES=1), where they fail.

On failure, a full-page screenshot and the HTML of every page the test had open are written to
BROWSER_ARTIFACTS_DIR (default: test-results/browser/ in the checkout, which git ignores), named after the test
and its parameters (page and width); the paths are printed in the test's captured output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import services_required

BROWSER_EXECUTABLE = os.environ.get("BROWSER_EXECUTABLE", "/usr/bin/chromium")
# The network is closed: anything Chromium would fetch by itself (updates, sync, field trials) must be off.
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000  # RSA key generation and PBKDF2 (600,000 rounds) are slow on a busy CI machine
ARTIFACTS_DIR = Path(
    os.environ.get("BROWSER_ARTIFACTS_DIR") or Path(__file__).resolve().parents[2] / "test-results" / "browser"
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    item.stash.setdefault(_reports_key, {})[report.when] = report
    return report


_reports_key = pytest.StashKey[dict]()


def _browser_problem() -> str | None:
    if not (os.path.isfile(BROWSER_EXECUTABLE) and os.access(BROWSER_EXECUTABLE, os.X_OK)):
        return f"no Chromium at {BROWSER_EXECUTABLE} (Debian: apt-get install chromium; or set BROWSER_EXECUTABLE)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"Playwright for Python is not installed ({exc})"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    problem = _browser_problem()
    if problem:
        if services_required():
            pytest.fail(f"the browser tests must run in CI (REQUIRE_SERVICES=1), but {problem}")
        pytest.skip(problem)

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread, so Django's ORM would refuse to run here
    # (SynchronousOnlyOperation) although nothing is async. Django documents this variable for exactly that;
    # it is set only while this module's browser runs, not for the rest of the suite.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        instance = playwright.chromium.launch(executable_path=BROWSER_EXECUTABLE, args=BROWSER_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class SentRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        import json

        return json.loads(self.body)


@dataclass
class Traffic:
    """Everything the browser sent (all pages of the context), and what went wrong in the pages."""

    requests: list[SentRequest] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def to(self, method: str, path: str) -> list[SentRequest]:
        return [r for r in self.requests if r.method == method and _path_of(r.url) == path]


def _path_of(url: str) -> str:
    match = re.match(r"^[a-z]+://[^/]+(/[^?#]*)", url)
    return match.group(1) if match else url


# Runs before the page's own scripts (Playwright injects it, outside the page's CSP) and reports every
# Content-Security-Policy violation to the console, where the `page` fixture collects it.
CSP_VIOLATION_PREFIX = "CSP violation:"
REPORT_CSP_VIOLATIONS = (
    "document.addEventListener('securitypolicyviolation', (event) => console.error("
    f"'{CSP_VIOLATION_PREFIX} ' + event.effectiveDirective + ' blocked ' + (event.blockedURI || 'inline') "
    "+ ' on ' + event.documentURI));"
)


def _record_console(traffic: Traffic, message) -> None:
    if message.type != "error":
        return
    traffic.console_errors.append(message.text)
    # Chromium's own report ("Refused to ... because it violates the following Content Security Policy
    # directive") covers what the event cannot, e.g. a violation before the listener exists.
    if message.text.startswith(CSP_VIOLATION_PREFIX) or "Content Security Policy" in message.text:
        traffic.csp_violations.append(message.text)


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def context(browser, live_server, emulator, traffic: Traffic, request: pytest.FixtureRequest):
    """A fresh browser context on the live portal, which talks to this test's emulator."""
    ctx = browser.new_context(base_url=live_server.url, accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT_MS)

    def on_request(req) -> None:
        traffic.requests.append(
            SentRequest(method=req.method, url=req.url, headers=dict(req.headers), body=req.post_data_buffer or b"")
        )

    ctx.on("request", on_request)
    ctx.add_init_script(REPORT_CSP_VIOLATIONS)
    yield ctx
    _save_artifacts_on_failure(ctx, request)
    ctx.close()


@pytest.fixture
def page(context, traffic: Traffic):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    page.on("console", lambda msg: _record_console(traffic, msg))
    page.on("pageerror", lambda exc: traffic.page_errors.append(str(exc)))
    yield page
    if not page.is_closed():
        page.wait_for_timeout(100)  # lets the last console messages arrive
    # Every browser test fails on a CSP violation, so an inline script or style added later is caught here.
    assert traffic.csp_violations == [], traffic.csp_violations


def _save_artifacts_on_failure(ctx, request: pytest.FixtureRequest) -> None:
    report = request.node.stash.get(_reports_key, {}).get("call")
    if report is None or not report.failed:
        return
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    for index, open_page in enumerate(ctx.pages):
        target = ARTIFACTS_DIR / f"{stem}-{index}"
        try:
            open_page.screenshot(path=f"{target}.png", full_page=True)
            Path(f"{target}.html").write_text(open_page.content(), encoding="utf-8")
            print(f"browser artifacts: {target}.png, {target}.html ({open_page.url})")
        except Exception as exc:  # the page may have crashed; the test's own failure matters more
            print(f"could not save browser artifacts for {open_page.url}: {exc}")


@pytest.fixture
def sign_in(context, live_server):
    """Signs a user in through the portal's sign-in (password, then the TOTP code for staff) with Django's test
    client, and gives the browser that session."""

    def sign_in(user) -> None:
        from django.conf import settings

        from tests.support.accounts import signed_in

        client = signed_in(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}])

    return sign_in
