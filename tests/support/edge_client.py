"""A TLS client for the emulator's HTTPS edge, as `curl --resolve api.example.com:PORT:127.0.0.1 --cacert EDGE_CA
--cert ... --key ...` would call it."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudflare_emulator import Emulator
from cloudflare_emulator.edge_server import Edge
from tests.emulator.certificates import Issued

HOST = "api.example.com"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """`curl --resolve`: the hostname for SNI, the server certificate and the Host header; TCP to 127.0.0.1 from
    the `source` address."""

    def __init__(self, hostname: str, port: int, *, context: ssl.SSLContext, source: str) -> None:
        super().__init__(hostname, port, context=context, timeout=10)
        self.source = source

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout, (self.source, 0))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class Client:
    port: int
    ca_path: Path  # the edge CA, as curl's --cacert
    directory: Path

    def call(
        self,
        path: str = "/",
        *,
        certificate: Issued | None = None,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> Answer:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if certificate is not None:
            certificate_path, key_path = certificate.write(self.directory, f"client-{id(certificate)}")
            context.load_cert_chain(certificate_path, key_path)
        connection = PinnedHTTPSConnection(HOST, self.port, context=context, source=source)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, response.read())
        finally:
            connection.close()


@contextlib.contextmanager
def serving_edge(emulator: Emulator, zone_id: str, directory: Path) -> Iterator[Edge]:
    """The emulator's HTTPS edge for the zone, served in a thread on a free port until the block ends."""
    edge = Edge(emulator=emulator, zone_id=zone_id, host="127.0.0.1", port=0, ca_path=directory / "edge-ca.pem")
    thread = threading.Thread(target=edge.serve_forever, daemon=True)
    thread.start()
    try:
        yield edge
    finally:
        edge.shutdown()
        thread.join(timeout=10)
        edge.close()
