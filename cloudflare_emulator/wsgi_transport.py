"""A `requests` transport adapter that serves requests from a WSGI application in-process.

It lets the API client talk to the emulator with no socket: the same `requests.Session`, headers,
timeouts and response parsing as against Cloudflare, only the transport differs. It is how the portal's
embedded default and the test suite mount the emulator (the way Miniflare stands in for Workers).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class EmulatedReadTimeout(Exception):
    """Raised by an in-process app to stand for "the server got the request but the answer never came"."""


class EmulatedConnectError(Exception):
    """Raised by an in-process app to stand for "the connection could not be made" (nothing was sent)."""


class WSGITransport(BaseAdapter):
    def __init__(self, app: WSGIApp) -> None:
        super().__init__()
        self.app = app

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        environ = self._environ(request, timeout)
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"] = status
            captured["headers"] = headers

        try:
            chunks = self.app(environ, start_response)
        except EmulatedReadTimeout as exc:
            raise requests.exceptions.ReadTimeout(str(exc), request=request) from exc
        except EmulatedConnectError as exc:
            raise requests.exceptions.ConnectTimeout(str(exc), request=request) from exc
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return self._response(request, captured["status"], captured["headers"], body)

    def close(self) -> None:
        pass

    @staticmethod
    def _environ(request: requests.PreparedRequest, timeout: Any) -> dict[str, Any]:
        url = urlsplit(request.url or "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method or "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "SERVER_NAME": url.hostname or "localhost",
            "SERVER_PORT": str(url.port or (443 if url.scheme == "https" else 80)),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url.scheme or "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            # The emulator reads this to simulate a read timeout the way a socket would raise it.
            "cloudflare_emulator.read_timeout": _read_timeout(timeout),
        }
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                environ[f"HTTP_{key}"] = value
        return environ

    @staticmethod
    def _response(
        request: requests.PreparedRequest, status: str, headers: list[tuple[str, str]], body: bytes
    ) -> requests.Response:
        response = requests.Response()
        response.status_code = int(status.split(" ", 1)[0])
        response.reason = status.split(" ", 1)[1] if " " in status else ""
        response.headers = CaseInsensitiveDict(headers)
        response._content = body
        response.encoding = response.apparent_encoding if not response.headers.get("Content-Type") else None
        response.url = request.url or ""
        response.request = request
        return response


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        timeout = timeout[1]
    return float(timeout) if timeout is not None else None


def mount_wsgi_app(session: requests.Session, base_url: str, app: WSGIApp) -> None:
    """Route every request under `base_url` on `session` to `app`."""
    session.mount(base_url.rstrip("/") + "/", WSGITransport(app))
