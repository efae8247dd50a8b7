"""An origin that checks client certificates against the portal CA and its CRL, as the README shows: a real TLS
server (Python's `ssl`, VERIFY_CRL_CHECK_LEAF) serving one connection, and the client that calls it."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def server_identity(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost: the origin's own side of TLS, unrelated to the portal."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Origin:
    """Accepts TLS connections requiring a client certificate verified against the CA and the CRL it was given."""

    def __init__(self, identity: tuple[Path, Path], ca_pem: str, crl_pem: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*identity)
        self.context.verify_mode = ssl.CERT_REQUIRED
        # As an origin keeps them: the CA and the CRL it fetches in one file (`cadata` would ignore the CRL).
        trust = identity[0].parent / "portal-ca-and-crl.pem"
        trust.write_text(ca_pem + crl_pem)
        self.context.load_verify_locations(cafile=str(trust))
        self.context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        self.refusal = ""  # why the origin refused the client, in OpenSSL's words
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve_one, daemon=True)
        self.thread.start()

    def serve_one(self) -> None:
        connection, _ = self.listener.accept()
        try:
            with self.context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(16)
                tls.sendall(b"hello " + tls.getpeercert()["subject"][-1][0][1].encode())
        except (ssl.SSLError, OSError) as exc:
            self.refusal = str(exc)
        finally:
            self.listener.close()


def ask(origin: Origin, identity_dir: Path, certificate_pem: str, key) -> bytes:
    cert_path, key_path = identity_dir / "client.pem", identity_dir / "client.key"
    cert_path.write_text(certificate_pem)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(cafile=str(identity_dir / "server.pem"))
    context.load_cert_chain(cert_path, key_path)
    with (
        socket.create_connection(("127.0.0.1", origin.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"ping")
        return tls.recv(64)  # TLS 1.3: a refused client certificate shows here, as an alert
