"""TLS for the emulator's HTTPS edge: a local edge CA, server certificates for the names clients ask for, and a
threaded WSGI server that asks for a client certificate without ever failing the handshake over it.

Cloudflare accepts a client certificate it cannot verify and lets the rules decide (`cert_verified` false, FACTS.md
§6). Python's `ssl` cannot do that (with CERT_OPTIONAL an unknown CA fails the handshake), so the connection is
made with pyOpenSSL and a verify callback that accepts every certificate; the edge verifies it afterwards against
the zone's CAs (trust.py). OpenSSL still checks that the client holds the certificate's key (CertificateVerify).
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import logging
import os
import re
import socket
import struct
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

logger = logging.getLogger("cloudflare_emulator.edge")

CLIENT_CERTIFICATE_KEY = "cloudflare_emulator.client_certificate"  # environ: the presented certificate, PEM or None
EDGE_CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_CERTIFICATE_LIFETIME = datetime.timedelta(days=90)
CONNECTION_TIMEOUT = 30.0  # seconds a client may stay silent, in the handshake or between reads
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")  # the certificate for a client that sends no server name
MAX_CERTIFICATES = 256  # server certificates kept in memory, one per name clients asked for
SERVER_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class EdgeCA:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path  # the certificate, for `curl --cacert`


def key_path_of(certificate_path: Path) -> Path:
    return certificate_path.with_suffix(".key")


def load_or_create_edge_ca(path: Path, now: datetime.datetime) -> EdgeCA:
    """The edge CA kept at `path` (its key beside it, `.key`, readable by the owner only), made on first use, so
    that the file a developer passes to `--cacert` stays valid across restarts."""
    key_path = key_path_of(path)
    if path.exists() and key_path.exists():
        ca = _load_edge_ca(path, key_path)
        if ca.certificate.not_valid_after_utc > now + SERVER_CERTIFICATE_LIFETIME:
            return ca
        logger.info("The edge CA at %s is about to expire: making a new one", path)
    return _create_edge_ca(path, key_path, now)


def _load_edge_ca(path: Path, key_path: Path) -> EdgeCA:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        # Never the key's content in the message: only which files to remove.
        raise SystemExit(
            f"The edge CA at {path} (key {key_path}) cannot be read; remove both to make a new one"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"The edge CA key {key_path} is not an EC key; remove {path} and it to make a new one")
    return EdgeCA(certificate, key, path)


def _create_edge_ca(path: Path, key_path: Path, now: datetime.datetime) -> EdgeCA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cloudflare emulator (development only)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Cloudflare emulator edge CA"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + EDGE_CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_pem)
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return EdgeCA(certificate, key, path)


def _write_private(path: Path, content: bytes) -> None:
    with suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alternative_names(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def server_certificate(
    ca: EdgeCA, names: tuple[str, ...], now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + SERVER_CERTIFICATE_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_subject_alternative_names(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return certificate, key


# --- the server side of the handshake --------------------------------------------------------------------


def _accept_any(connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int) -> bool:
    """Every client certificate passes the handshake; cert_verified is decided after it (trust.py)."""
    return True


def _tls_context(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate(certificate)
    context.use_privatekey(key)
    # VERIFY_PEER without VERIFY_FAIL_IF_NO_PEER_CERT: a certificate is asked for, not required.
    context.set_verify(SSL.VERIFY_PEER, _accept_any)
    # No resumption: every connection presents its certificate again, so the rules always see the current one.
    context.set_options(SSL.OP_NO_TICKET)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return context


class ServerContexts:
    """A TLS context for each server name clients ask for (SNI), its certificate signed by the edge CA: like
    Cloudflare's edge, the emulator answers for any hostname of the zone, with nothing to configure."""

    def __init__(self, ca: EdgeCA) -> None:
        self._ca = ca
        self._lock = threading.Lock()
        self._by_name: dict[str, SSL.Context] = {}
        self.default = self._new(DEFAULT_NAMES)
        self.default.set_tlsext_servername_callback(self._choose)

    def _new(self, names: tuple[str, ...]) -> SSL.Context:
        now = datetime.datetime.now(datetime.UTC)
        return _tls_context(*server_certificate(self._ca, names, now))

    def _choose(self, connection: SSL.Connection) -> None:
        requested = connection.get_servername()
        name = requested.decode("ascii", "replace").lower().rstrip(".") if requested else ""
        if name and name not in DEFAULT_NAMES and SERVER_NAME.match(name):
            connection.set_context(self.for_name(name))

    def for_name(self, name: str) -> SSL.Context:
        with self._lock:
            context = self._by_name.get(name)
            if context is None:
                if len(self._by_name) >= MAX_CERTIFICATES:
                    self._by_name.clear()  # a bound on memory; the names asked for again get new certificates
                context = self._by_name[name] = self._new((name,))
            return context


class TLSStream(io.RawIOBase):
    """A pyOpenSSL connection as the file objects http.server reads requests from and writes answers to."""

    def __init__(self, connection: SSL.Connection) -> None:
        super().__init__()
        self._connection = connection

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._connection.recv_into(buffer)
        except SSL.ZeroReturnError:  # the client closed the TLS session
            return 0
        except SSL.SysCallError as exc:
            if exc.args and exc.args[0] == -1:  # the client closed the connection without closing TLS
                return 0
            raise ConnectionResetError(str(exc)) from exc
        except SSL.WantReadError as exc:  # SO_RCVTIMEO expired (the socket is blocking otherwise)
            raise TimeoutError(f"the client sent nothing for {CONNECTION_TIMEOUT:g} s") from exc

    def write(self, data: Any) -> int:
        try:
            self._connection.sendall(bytes(data))
        except SSL.WantWriteError as exc:
            raise TimeoutError(f"the client read nothing for {CONNECTION_TIMEOUT:g} s") from exc
        except SSL.SysCallError as exc:
            raise ConnectionResetError(str(exc)) from exc
        return len(data)


class EdgeRequestHandler(WSGIRequestHandler):
    """werkzeug's WSGI handler over a pyOpenSSL connection; the presented certificate goes into the environ."""

    server: EdgeTLSServer
    tls: SSL.Connection | None = None

    def setup(self) -> None:
        self.connection = self.request

    def handle(self) -> None:
        try:
            self.tls = self._handshake()
        except (SSL.Error, OSError) as exc:
            logger.info("TLS handshake with %s failed: %s", self.client_address[0], _describe(exc))
            return
        stream = TLSStream(self.tls)
        self.connection = self.tls  # werkzeug waits on it (a selector) for a request body left unread
        self.rfile = io.BufferedReader(stream)
        self.wfile = io.BufferedWriter(stream)
        try:
            super().handle()
        except SSL.Error as exc:
            logger.info("TLS error with %s: %s", self.client_address[0], _describe(exc))

    def _handshake(self) -> SSL.Connection:
        # pyOpenSSL wants a blocking socket; the kernel's timeouts bound each wait for a silent client.
        self.request.settimeout(None)
        timeout = struct.pack("ll", int(CONNECTION_TIMEOUT), 0)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        connection = SSL.Connection(self.server.contexts.default, self.request)
        connection.set_accept_state()
        connection.do_handshake()
        return connection

    def finish(self) -> None:
        if self.tls is not None:
            with suppress(SSL.Error, OSError):
                self.wfile.flush()
                self.tls.shutdown()

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ["wsgi.url_scheme"] = "https"
        environ[CLIENT_CERTIFICATE_KEY] = self._presented_certificate()
        return environ

    def _presented_certificate(self) -> str | None:
        assert self.tls is not None
        certificate = self.tls.get_peer_certificate(as_cryptography=True)
        return None if certificate is None else certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path without its query string: a query may carry a client's secret.
        path = urlsplit(getattr(self, "path", "")).path
        logger.info("%s %s %s -> %s", self.client_address[0], getattr(self, "command", "-"), path, code)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


class EdgeTLSServer(ThreadedWSGIServer):
    """A thread per connection (werkzeug's), TLS by pyOpenSSL in each connection's thread."""

    def __init__(self, host: str, port: int, app: Any, contexts: ServerContexts) -> None:
        self.contexts = contexts
        super().__init__(host, port, app, handler=EdgeRequestHandler)
