"""The emulator: a WSGI app serving Cloudflare's v4 API under /client/v4, with state, faults and a log."""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.http import HTTP_STATUS_CODES, http_date
from werkzeug.routing import Map, RequestRedirect
from werkzeug.wrappers import Request, Response

from cloudflare_emulator.wsgi_transport import EmulatedConnectError, EmulatedReadTimeout

from . import codes, edge, ratelimit
from .context import Context, Settings, ensure_ca
from .edge import EdgeRequest, Evaluation, Verdict
from .envelope import ApiError, failure, failure_from, success
from .faults import Fault, Faults
from .routes import ADMIN_HANDLERS, ADMIN_URL_MAP, HANDLERS, URL_MAP, Handler
from .state import StateStore, empty_state

logger = logging.getLogger("cloudflare_emulator")

API_PREFIX = "/client/v4"
ADMIN_PREFIX = "/__emulator__"
READ_TIMEOUT_KEY = "cloudflare_emulator.read_timeout"
OUTCOME_FAULTS = ("rate_limit", "server_error", "create_commits_then_fails")
EDGE_ERROR_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)

# Enterprise's number (FACTS.md §7), so an emulator nobody configured refuses nothing the smaller plans would
# allow; the portal passes its own CLOUDFLARE_CUSTOM_RULES_LIMIT (certificates/cloudflare_client.py).
DEFAULT_CUSTOM_RULES_LIMIT = 1000

T = TypeVar("T")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class LoggedRequest:
    at: float
    method: str
    path: str
    status: int


class Emulator:
    def __init__(
        self,
        token: str | None = None,
        state_path: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        revocation_delay: float = 30.0,
        reactivation_delay: float = 30.0,
        zone_capacity: int = 100,
        rate_limit: int = 1200,
        rate_window: float = 300.0,
        custom_rules_limit: int = DEFAULT_CUSTOM_RULES_LIMIT,
    ) -> None:
        if custom_rules_limit < 1:
            raise ValueError("custom_rules_limit must be at least 1")
        self._token = token
        self.clock = clock
        self.settings = Settings(
            revocation_delay=revocation_delay,
            reactivation_delay=reactivation_delay,
            zone_capacity=zone_capacity,
            rate_limit=rate_limit,
            rate_window=rate_window,
            custom_rules_limit=custom_rules_limit,
        )
        self.faults = Faults()
        self.request_log: list[LoggedRequest] = []
        self._log_lock = threading.Lock()
        self._store = StateStore(state_path)

    # --- public API ------------------------------------------------------------------------------------

    @property
    def wsgi_app(self) -> WSGIApp:
        return self._wsgi

    @property
    def ca_certificate_pem(self) -> str:
        with self._store.transaction() as state:
            pem: str = ensure_ca(state, self._store, self.clock())["certificate_pem"]
            return pem

    def evaluate(self, zone_id: str, request: EdgeRequest) -> Verdict:
        """What the zone's custom rules do with `request`; raises ApiError for a rule the evaluator cannot read."""
        return self._in_zone(zone_id, "evaluate", lambda context: edge.evaluate(context, request))

    def inspect(self, zone_id: str, request: EdgeRequest) -> Evaluation:
        """The verdict and the fields the rules saw; raises ApiError like `evaluate`."""
        return self._in_zone(zone_id, "evaluate", lambda context: edge.inspect(context, request))

    def create_dashboard_certificate(
        self,
        zone_id: str,
        *,
        common_name: str = "dashboard-certificate",
        validity_days: int = edge.DASHBOARD_VALIDITY_DAYS,
        key_type: str = "ecdsa",
    ) -> dict[str, Any]:
        """A certificate made in the dashboard: listed in the zone; the record plus `private_key` (PEM)."""
        return self._in_zone(
            zone_id,
            "dashboard_certificates",
            lambda context: edge.issue_dashboard_certificate(
                context, common_name=common_name, validity_days=validity_days, key_type=key_type
            ),
        )

    def create_foreign_certificate(
        self,
        *,
        common_name: str = "another-account",
        validity_days: int = edge.FOREIGN_VALIDITY_DAYS,
        key_type: str = "ecdsa",
    ) -> dict[str, Any]:
        """A certificate the shared managed CA signed for another account: in no zone, yet verified."""
        with self._store.transaction() as state:
            context = self._context(state, {}, "/__emulator__/foreign_certificates")
            return edge.issue_foreign_certificate(
                context, common_name=common_name, validity_days=validity_days, key_type=key_type
            )

    def _in_zone(self, zone_id: str, action: str, work: Callable[[Context], T]) -> T:
        path = f"/__emulator__/zones/{zone_id}/{action}"
        with self._store.transaction() as state:
            return work(self._context(state, {"zone_id": zone_id}, path))

    def _context(self, state: dict[str, Any], args: dict[str, str], path: str) -> Context:
        """A handler context for a Python call: the same state, clock and settings, an empty request."""
        return Context(Request.from_values(path=path), state, self._store, self.clock(), self.settings, args, path)

    def reset(self) -> None:
        """Forget everything: certificates, rulesets, rate-limit windows, the CA, faults and the log."""
        with self._store.transaction():
            self._store.replace(empty_state())
        self.faults.clear()
        with self._log_lock:
            self.request_log.clear()

    # --- WSGI ------------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._route(request)
        except (EmulatedReadTimeout, EmulatedConnectError):
            raise
        except Exception:
            # Never a stack trace to the client; the detail goes to the server log.
            logger.exception("Unexpected emulator error on %s %s", request.method, request.path)
            response = failure(500, codes.INTERNAL_ERROR, "Internal error in the Cloudflare API emulator")
        return response(environ, start_response)

    def _route(self, request: Request) -> Response:
        path = request.path
        for admin_root in (ADMIN_PREFIX, API_PREFIX + ADMIN_PREFIX):
            if path == admin_root or path.startswith(admin_root + "/"):
                return self._admin(request, path[len(admin_root) :])
        if not path.startswith(API_PREFIX + "/"):
            return failure(404, codes.NO_ROUTE, "No route for the URI")
        api_path = path[len(API_PREFIX) :]
        if self.faults.take(("connect_error",), request.method, api_path) is not None:
            # Nothing reached Cloudflare: not logged, not counted against the rate limit.
            raise EmulatedConnectError(f"emulated connection failure for {request.method} {api_path}")
        return self._serve_api(request, api_path)

    def _serve_api(self, request: Request, api_path: str) -> Response:
        method = request.method
        auth_error, token = self._authenticate(request)
        if auth_error is not None:
            return self._logged(method, api_path, auth_error)
        verdict = self._admit(token)
        if not verdict.allowed:
            return self._logged(method, api_path, self._rate_limited(verdict))
        latency = self.faults.take(("latency",), method, api_path)
        outcome = self.faults.take(OUTCOME_FAULTS, method, api_path)
        if outcome is not None and outcome.kind != "create_commits_then_fails":
            response = self._injected(outcome)
        else:
            response = self._dispatch(request, api_path)
        self._add_rate_headers(response, verdict)
        self._logged(method, api_path, response)
        if latency is not None:
            self._delay(request, float(latency.params["seconds"]))
        if outcome is not None and outcome.kind == "create_commits_then_fails" and response.status_code == 200:
            return self._lose_answer(request, outcome, response)
        return response

    def _dispatch(
        self, request: Request, api_path: str, url_map: Map = URL_MAP, handlers: dict[str, Handler] = HANDLERS
    ) -> Response:
        adapter = url_map.bind("api.cloudflare.com")
        try:
            endpoint, args = adapter.match(api_path, method=request.method)
        except MethodNotAllowed as exc:
            response = failure(405, codes.METHOD_NOT_ALLOWED, f"Method {request.method} not allowed for this URI")
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods or []))
            return response
        except (NotFound, RequestRedirect):
            return failure(404, codes.NO_ROUTE, "No route for the URI")
        with self._store.transaction() as state:
            context = Context(request, state, self._store, self.clock(), self.settings, dict(args), api_path)
            try:
                return handlers[str(endpoint)](context)
            except ApiError as error:
                return failure_from(error)

    # --- auth and rate limit ---------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> tuple[Response | None, str]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return failure(400, codes.MISSING_AUTH, "Missing X-Auth-Key, X-Auth-Email or Authorization headers"), ""
        if self._token is not None and not hmac.compare_digest(token.encode(), self._token.encode()):
            return failure(403, codes.INVALID_TOKEN, "Invalid access token"), ""
        return None, token

    def _admit(self, token: str) -> ratelimit.Verdict:
        with self._store.transaction() as state:
            verdict = ratelimit.admit(
                state["rate_limits"],
                ratelimit.bucket_key(token),
                self.clock(),
                self.settings.rate_limit,
                self.settings.rate_window,
            )
            self._store.mark_dirty()  # the window is shared by every process using the state file
            return verdict

    def _rate_limited(self, verdict: ratelimit.Verdict) -> Response:
        # FACTS.md §9: 429, code 10100, Retry-After in whole seconds rounded up, X-RateLimit-Reset a date.
        limit, window = self.settings.rate_limit, self.settings.rate_window
        response = failure(
            429,
            codes.RATE_LIMITED,
            f"More than {limit} requests per {window:g} seconds reached. "
            "Please wait and consider throttling your request speed",
        )
        response.headers["Retry-After"] = str(verdict.retry_after)
        response.headers["X-RateLimit-Reset"] = http_date(verdict.reset_at)
        self._add_rate_headers(response, verdict)
        return response

    def _add_rate_headers(self, response: Response, verdict: ratelimit.Verdict) -> None:
        response.headers["X-RateLimit-Limit"] = str(self.settings.rate_limit)
        response.headers["X-RateLimit-Remaining"] = str(verdict.remaining)

    # --- faults ----------------------------------------------------------------------------------------

    def _injected(self, fault: Fault) -> Response:
        if fault.kind == "rate_limit":
            retry_after = int(fault.params["retry_after"])
            response = failure(
                429,
                codes.RATE_LIMITED,
                f"More than {self.settings.rate_limit} requests per {self.settings.rate_window:g} seconds "
                "reached. Please wait and consider throttling your request speed",
            )
            response.headers["Retry-After"] = str(retry_after)
            response.headers["X-RateLimit-Reset"] = http_date(self.clock() + retry_after)
            return response
        status = int(fault.params["status"])
        if fault.params.get("empty"):
            return Response(b"", status=status, content_type="text/plain")
        if fault.params.get("html"):
            reason = HTTP_STATUS_CODES.get(status, "Server Error")
            page = EDGE_ERROR_PAGE.format(status=status, reason=reason)
            return Response(page, status=status, content_type="text/html")
        return failure(status, codes.INTERNAL_ERROR, "Internal server error (injected by the emulator)")

    def _delay(self, request: Request, seconds: float) -> None:
        read_timeout = request.environ.get(READ_TIMEOUT_KEY)
        if READ_TIMEOUT_KEY in request.environ and read_timeout is not None and seconds >= read_timeout:
            # In-process there is no socket to time out: wait as long as the client would, then say so.
            time.sleep(read_timeout)
            raise EmulatedReadTimeout(f"no answer within {read_timeout} s (emulated latency {seconds} s)")
        time.sleep(seconds)

    def _lose_answer(self, request: Request, fault: Fault, response: Response) -> Response:
        """The create is committed; the client never sees the success (FACTS.md design: no idempotency key)."""
        if fault.params["mode"] == "server_error":
            return failure(500, codes.INTERNAL_ERROR, "Internal server error (injected after the commit)")
        if READ_TIMEOUT_KEY in request.environ:
            raise EmulatedReadTimeout("the certificate was created but the answer was lost (emulated)")
        # Over real HTTP: answer late, so the client's read timeout fires first.
        time.sleep(float(fault.params["sleep"]))
        return response

    # --- log and admin ---------------------------------------------------------------------------------

    def _logged(self, method: str, api_path: str, response: Response) -> Response:
        with self._log_lock:
            self.request_log.append(LoggedRequest(self.clock(), method, api_path, response.status_code))
        return response

    def _admin(self, request: Request, sub_path: str) -> Response:
        """Emulator controls for out-of-process use; not Cloudflare's API, but the same bearer token."""
        auth_error, _ = self._authenticate(request)
        if auth_error is not None:
            return auth_error
        route = (request.method, sub_path.rstrip("/"))
        try:
            if route == ("POST", "/faults"):
                return self._admin_add_fault(request)
            if route == ("GET", "/faults"):
                return success(self.faults.pending())
            if route == ("DELETE", "/faults"):
                self.faults.clear()
                return success(self.faults.pending())
            if route == ("GET", "/log"):
                with self._log_lock:
                    return success([asdict(entry) for entry in self.request_log])
            if route == ("POST", "/reset"):
                self.reset()
                return success({"reset": True})
        except ApiError as error:
            return failure_from(error)
        # The edge and the certificates made outside the portal (edge.py); not logged, not rate limited.
        return self._dispatch(request, sub_path, ADMIN_URL_MAP, ADMIN_HANDLERS)

    def _admin_add_fault(self, request: Request) -> Response:
        with self._store.transaction() as state:
            context = Context(request, state, self._store, self.clock(), self.settings, {}, "/__emulator__/faults")
            body = context.json_object()
        try:
            self.faults.add_from_json(body)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, codes.MALFORMED_JSON, f"Invalid fault: {exc}") from exc
        return success(self.faults.pending())
