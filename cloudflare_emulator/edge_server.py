"""`python -m cloudflare_emulator edge`: the zone's edge as an HTTPS endpoint, for curl and real clients.

Each request runs through the zone's custom rules in order (edge.py) with the fields Cloudflare would see:
`http.host` the Host header as sent (port included), `ip.src` the TCP peer, and the cf.tls_client_auth fields of
the certificate presented in the handshake, verified against the CAs the hostname trusts (trust.py). Blocked:
403 "error code: 1020" naming the rule. Allowed: the request goes to the origin (method, path, query, headers,
body) with the headers Cloudflare adds, and the origin's answer comes back.

The state is the file the portal's in-process emulator writes (state.py reloads it when it changes), so rules
the portal pushes and certificates it issues or revokes count at the next request.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from . import pki
from .app import Emulator
from .edge import EdgeRequest, MatchedRule
from .edge_tls import CLIENT_CERTIFICATE_KEY, EdgeCA, EdgeTLSServer, ServerContexts, load_or_create_edge_ca
from .envelope import ApiError

logger = logging.getLogger("cloudflare_emulator.edge")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Not forwarded in either direction (RFC 9110 §7.6.1); Content-Length is recomputed for the body as relayed.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
    | {"proxy-authenticate", "proxy-authorization", "content-length"}
)
POLL_INTERVAL = 0.1  # seconds a shutdown waits at most for the serving loop to notice
ORIGIN_TIMEOUT = (5.0, 100.0)  # connect, read: Cloudflare waits 100 s for an origin's answer (then 524)
# The Managed Transform "Add TLS client auth headers" (a subset): header -> rule field.
CLIENT_CERTIFICATE_HEADERS = {
    "cf-cert-presented": "cf.tls_client_auth.cert_presented",
    "cf-cert-verified": "cf.tls_client_auth.cert_verified",
    "cf-cert-revoked": "cf.tls_client_auth.cert_revoked",
    "cf-cert-fingerprint-sha256": "cf.tls_client_auth.cert_fingerprint_sha256",
    "cf-cert-serial": "cf.tls_client_auth.cert_serial",
    "cf-cert-issuer-ski": "cf.tls_client_auth.cert_issuer_ski",
}
SUBJECT_HEADER = "cf-cert-subject-dn"


def plain(status: int, text: str) -> Response:
    return Response(text, status=status, content_type="text/plain; charset=utf-8")


def blocked_page(rule: MatchedRule) -> Response:
    """Cloudflare answers an API client a custom rule blocked with 403 "error code: 1020"; the emulator names the
    rule too, for the developer."""
    return plain(403, f"error code: 1020\nblocked by custom rule {rule.ref!r} (id {rule.id}, action {rule.action})\n")


class EdgeApp:
    """The WSGI application behind the TLS server: evaluate, then block or forward."""

    def __init__(self, emulator: Emulator, zone_id: str, origin: str) -> None:
        self.emulator = emulator
        self.zone_id = zone_id
        self.origin = origin.rstrip("/")
        self.session = requests.Session()
        self.session.headers.clear()  # forward the client's headers, not requests' defaults
        self.session.trust_env = False  # the origin is local: no proxy from the environment

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        host = request.headers.get("Host")
        if not host:
            return plain(400, "error code: 400\nthe request has no Host header\n")
        certificate = request.environ.get(CLIENT_CERTIFICATE_KEY)
        edge_request = EdgeRequest(host=host, ip=request.remote_addr or "", certificate=certificate)
        try:
            evaluation = self.emulator.inspect(self.zone_id, edge_request)
        except ApiError as exc:
            logger.error("The zone's custom rules cannot be evaluated: %s", exc.message)
            return plain(500, f"error: the emulator cannot evaluate the zone's custom rules: {exc.message}\n")
        rule = evaluation.verdict.rule
        if evaluation.verdict.blocked and rule is not None:
            logger.info("Blocked %s %s from %s: rule %s", request.method, request.path, edge_request.ip, rule.ref)
            return blocked_page(rule)
        return self.forward(request, origin_headers(request, evaluation.fields, certificate))

    def forward(self, request: Request, headers: dict[str, str]) -> Response:
        url = self.origin + origin_target(request)
        try:
            answer = self.session.request(
                request.method,
                url,
                data=request.get_data(),
                headers=headers,
                timeout=ORIGIN_TIMEOUT,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            status = origin_error_status(exc)
            logger.warning("The origin %s failed (%s): answering %s", self.origin, type(exc).__name__, status)
            return plain(status, f"error code: {status}\n")
        with answer:
            body = answer.raw.read(decode_content=False)  # as the origin sent it (compressed or not)
            # urllib3's headers keep repeated fields (Set-Cookie) apart, where requests' dict joins them.
            relayed = [(name, value) for name, value in answer.raw.headers.items() if name.lower() not in HOP_BY_HOP]
        return Response(body, status=answer.status_code, headers=relayed)


def origin_error_status(error: requests.RequestException) -> int:
    """Cloudflare's own codes: 522 the connection timed out, 521 the origin refused it, 524 no answer in time."""
    if isinstance(error, requests.ConnectTimeout):  # checked first: it is a ConnectionError too
        return 522
    if isinstance(error, requests.ReadTimeout):
        return 524
    if isinstance(error, requests.ConnectionError):
        return 521
    return 502


def origin_target(request: Request) -> str:
    """The path and query as the client sent them (percent-encoding untouched)."""
    target = str(request.environ.get("REQUEST_URI") or "")
    if target.startswith("/") and not target.startswith("//"):
        return target
    parts = urlsplit(target)  # absolute-form, as a client talking to a proxy sends it
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def origin_headers(request: Request, fields: dict[str, Any], certificate: str | None) -> dict[str, str]:
    """The client's headers as Cloudflare passes them on: the Host header unchanged, X-Forwarded-For extended,
    CF-Connecting-IP and the client certificate headers set. Headers the client sent whose names start with cf-
    are dropped: the origin can trust every cf- header it gets."""
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() not in HOP_BY_HOP and not name.lower().startswith("cf-")
    }
    ip = str(fields["ip.src"])
    forwarded_for = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{forwarded_for}, {ip}" if forwarded_for else ip
    headers["X-Forwarded-Proto"] = "https"
    headers["CF-Connecting-IP"] = ip
    for header, field in CLIENT_CERTIFICATE_HEADERS.items():
        value = fields[field]
        headers[header] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    headers[SUBJECT_HEADER] = subject_dn(certificate)
    return headers


def subject_dn(certificate: str | None) -> str:
    if certificate is None:
        return ""
    dn = pki.parse_certificate(certificate).subject.rfc4514_string()
    return dn.encode("ascii", "backslashreplace").decode("ascii")  # a header value is ASCII


# --- the built-in origin -----------------------------------------------------------------------------------


def echo_origin(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """200 with what arrived: method, path, query, headers, body, and the client certificate headers."""
    request = Request(environ)
    names = [*CLIENT_CERTIFICATE_HEADERS, SUBJECT_HEADER]
    echoed = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string.decode("latin-1"),
        "headers": dict(request.headers.items()),
        "body": request.get_data(as_text=True),
        "client_certificate": {name.removeprefix("cf-cert-"): request.headers.get(name, "") for name in names},
    }
    response = Response(json.dumps(echoed, indent=1, sort_keys=True) + "\n", content_type="application/json")
    return response(environ, start_response)


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The edge logs each request already."""


def start_echo_origin() -> BaseWSGIServer:
    server = make_server("127.0.0.1", 0, echo_origin, threaded=True, request_handler=QuietHandler)
    serve = functools.partial(server.serve_forever, poll_interval=POLL_INTERVAL)
    threading.Thread(target=serve, name="echo-origin", daemon=True).start()
    return server


# --- the whole edge -------------------------------------------------------------------------------------------


class Edge:
    """The edge, bound and ready to serve: `serve_forever()` in the foreground (the command) or a thread (tests)."""

    def __init__(
        self, *, emulator: Emulator, zone_id: str, host: str, port: int, ca_path: Path, origin: str | None = None
    ) -> None:
        self.ca: EdgeCA = load_or_create_edge_ca(ca_path, datetime.datetime.now(datetime.UTC))
        self._echo: BaseWSGIServer | None = None
        if origin is None:
            self._echo = start_echo_origin()
            origin = f"http://127.0.0.1:{self._echo.port}"
        self.origin = origin
        self.server = EdgeTLSServer(host, port, EdgeApp(emulator, zone_id, self.origin), ServerContexts(self.ca))

    @property
    def url(self) -> str:
        host = self.server.host
        return f"https://[{host}]:{self.server.port}" if ":" in host else f"https://{host}:{self.server.port}"

    def serve_forever(self) -> None:
        """Until Ctrl-C (werkzeug's serve_forever ends on KeyboardInterrupt) or `shutdown()` from another thread."""
        self.server.serve_forever(poll_interval=POLL_INTERVAL)

    def shutdown(self) -> None:
        self.server.shutdown()

    def close(self) -> None:
        self.server.server_close()
        if self._echo is not None:
            self._echo.shutdown()
            self._echo.server_close()
