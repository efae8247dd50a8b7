"""The load of a chaos run: a few users issuing, revoking and changing their networks through the JSON API.

Bounded in operations and time, and only to the portal on 127.0.0.1. Every answer is counted by status; a 500,
and a 503 that is not JSON with a message, are kept with what the portal said.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CLIENT_TIMEOUT = 45.0  # above gunicorn's 30 s timeout: the server, not the client, decides how long a request takes


@dataclass
class User:
    index: int
    token: str
    subject: x509.Name | None = None
    active: set[int] = field(default_factory=set)  # certificate ids this user believes active


def network_choices(index: int) -> list[list[str]]:
    """Networks a user moves between (198.18.0.0/15, benchmark space); the empty list is "anywhere"."""
    return [[f"198.18.{index}.0/24"], [f"198.18.{index + 100}.0/24", f"2001:db8:{index}::/48"], []]


class Load:
    def __init__(self, web_url: str, users: list[User], *, max_operations: int = 600) -> None:
        self.web_url = web_url
        self.users = users
        self.max_operations = max_operations
        self.statuses: Counter[str] = Counter()
        self.by_action: Counter[str] = Counter()
        self.problems: list[str] = []
        self._operations = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for user in self.users:
            thread = threading.Thread(target=self._run, args=(user,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def signal_stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)

    def _run(self, user: User) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {user.token}"
        while not self._stop.is_set() and self._take_operation():
            action = random.choices(["issue", "revoke", "allowlist"], weights=[4, 3, 3])[0]
            if action == "issue" and len(user.active) >= 4:
                action = "revoke"
            if action == "revoke" and not user.active:
                action = "issue"
            getattr(self, f"_{action}")(session, user)
            self._stop.wait(random.uniform(0.3, 1.0))

    def _take_operation(self) -> bool:
        with self._lock:
            self._operations += 1
            return self._operations <= self.max_operations

    def _issue(self, session: requests.Session, user: User) -> None:
        payload = {"csr": make_csr(user), "validity_days": 30, "name": f"chaos-{time.time():.0f}"}
        answer = self._send(session, "issue", "POST", "/api/v1/certificates", payload)
        if answer is not None and answer.status_code == 201:
            user.active.add(int(answer.json()["id"]))

    def _revoke(self, session: requests.Session, user: User) -> None:
        certificate_id = random.choice(sorted(user.active))
        path = f"/api/v1/certificates/{certificate_id}/revoke"
        answer = self._send(session, "revoke", "POST", path, {"reason": "chaos run"})
        if answer is not None and answer.status_code in (202, 404, 409):
            user.active.discard(certificate_id)

    def _allowlist(self, session: requests.Session, user: User) -> None:
        networks = random.choice(network_choices(user.index))
        # Benchmark and documentation space is never a real client's address, so the API wants the confirmation.
        body = {"networks": networks, "confirm_unreachable": True}
        self._send(session, "allowlist", "PUT", "/api/v1/allowlist", body)

    def _send(
        self, session: requests.Session, action: str, method: str, path: str, payload: dict[str, Any]
    ) -> requests.Response | None:
        try:
            answer = session.request(method, self.web_url + path, json=payload, timeout=CLIENT_TIMEOUT)
        except requests.RequestException as exc:
            self._record(action, "no answer", f"{method} {path}: {type(exc).__name__}")
            return None
        status = str(answer.status_code)
        problem = None
        if answer.status_code >= 500:
            problem = describe_error(method, path, answer)
        self._record(action, status, problem)
        return answer

    def _record(self, action: str, status: str, problem: str | None) -> None:
        with self._lock:
            self.statuses[status] += 1
            self.by_action[f"{action} {status}"] += 1
            if status == "503" and problem is not None and problem.startswith("503 JSON"):
                self.statuses["503 JSON with a message"] += 1
            elif problem is not None:
                self.problems.append(problem)


def describe_error(method: str, path: str, answer: requests.Response) -> str:
    """`503 JSON: <detail>` for a well-formed refusal, else the status, content type and the body's start."""
    detail = None
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = None
    if answer.status_code == 503 and isinstance(detail, str) and detail:
        return f"503 JSON: {detail}"
    body = answer.text[:160].replace("\n", " ")
    return f"{answer.status_code} {answer.headers.get('Content-Type', '')} on {method} {path}: {body}"


def fetch_subject(web_url: str, user: User) -> None:
    answer = requests.get(f"{web_url}/api/v1/csr-policy", headers={"Authorization": f"Bearer {user.token}"}, timeout=30)
    answer.raise_for_status()
    subject = answer.json()["subject"]
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, subject["common_name"])]
    if subject.get("organization"):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    if subject.get("organizational_unit"):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, subject["organizational_unit"]))
    user.subject = x509.Name(attributes)


def make_csr(user: User) -> str:
    assert user.subject is not None
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(user.subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()
