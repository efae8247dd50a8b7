"""The README's Python origin (section "Origins: verifying portal-CA certificates and the CRL"), run as written: its
code is read from README.md, fetches the CA and the CRL from the portal's URLs, and serves a real TLS client."""

from __future__ import annotations

import io
import socket
import ssl
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from certificates import services
from tests.support.origin import ask, server_identity
from tests.support.pki import make_key, policy_csr
from tests.support.portal_ca import trusted_portal_ca

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Origins: verifying portal-CA certificates and the CRL"


def readme_python() -> str:
    """The section's Python block."""
    text = README.read_text()
    section = text[text.index(SECTION) :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def readme_origin(client, monkeypatch) -> dict[str, Any]:
    """The README's code, its PORTAL answered by this portal (Django's test client) instead of the network."""
    namespace: dict[str, Any] = {}
    exec(compile(readme_python(), str(README), "exec"), namespace)  # noqa: S102 - the README's own code, as written
    portal = namespace["PORTAL"]

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        assert url.startswith(f"{portal}/")
        answer = client.get(url.removeprefix(portal))
        assert answer.status_code == 200, url
        return io.BytesIO(answer.content)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return namespace


class ServedOnce:
    """Accepts one TLS connection with the given context; `refusal` is OpenSSL's reason if it refused the client."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.refusal = ""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, args=(context,), daemon=True)
        self.thread.start()

    def serve(self, context: ssl.SSLContext) -> None:
        connection, _ = self.listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(16)
                tls.sendall(b"accepted")
        except (ssl.SSLError, OSError) as exc:
            self.refusal = str(exc)
        finally:
            self.listener.close()


def revoke(certificate, owner) -> None:
    services.certificate_revoke(certificate=certificate, origin=services.Origin(owner))


def deactivate(certificate, owner) -> None:
    owner.is_active = False  # the CRL holds the owner's certificates (certificateHold): OpenSSL refuses them too
    owner.save()


@pytest.mark.parametrize("withdraw", [revoke, deactivate])
def test_the_readmes_python_origin_accepts_a_portal_certificate_and_refuses_it_after_a_refresh(
    emulator, alice, readme_origin, tmp_path, withdraw
):
    authority = trusted_portal_ca()
    readme_origin["CA_ID"] = authority.pk
    key = make_key()
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice, key=key), validity_days=30, name="laptop", origin=services.Origin(alice)
    )
    server_certificate, server_key = (str(path) for path in server_identity(tmp_path))
    trust = str(tmp_path / "portal-ca-and-crl.pem")

    readme_origin["fetch_ca_and_crl"](trust)
    before = readme_origin["origin_context"](server_certificate, server_key, trust)
    assert ask(ServedOnce(before), tmp_path, certificate.certificate_pem, key) == b"accepted"

    withdraw(certificate, alice)
    readme_origin["fetch_ca_and_crl"](trust)  # the periodic refresh
    after = readme_origin["origin_context"](server_certificate, server_key, trust)
    refused = ServedOnce(after)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ask(refused, tmp_path, certificate.certificate_pem, key)
    refused.thread.join(5)
    assert "certificate revoked" in refused.refusal
    # As the README says, a context keeps the CRL it loaded: only the rebuilt one knows of the revocation.
    assert ask(ServedOnce(before), tmp_path, certificate.certificate_pem, key) == b"accepted"


def test_the_readme_is_right_that_cadata_would_ignore_the_crl(emulator, alice, client, tmp_path):
    """Why the README puts the CA and the CRL in a file: the same PEM given as `cadata` refuses every client, the
    CRL it needs never having been loaded."""
    authority = trusted_portal_ca()
    key = make_key()
    certificate = services.certificate_issue(
        user=alice, csr=policy_csr(alice, key=key), validity_days=30, name="laptop", origin=services.Origin(alice)
    )
    crl = client.get(f"/pki/ca-{authority.pk}.crl.pem").content.decode()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*server_identity(tmp_path))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=authority.certificate_pem + crl)
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    origin = ServedOnce(context)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ask(origin, tmp_path, certificate.certificate_pem, key)
    origin.thread.join(5)
    assert "unable to get certificate CRL" in origin.refusal
