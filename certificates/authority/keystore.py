"""A portal CA's private key at rest: encrypted with the operator's PORTAL_CA_ENCRYPTION_KEY (Fernet, which
authenticates as well as encrypts, so a tampered key is refused rather than misused).

The key is never shown again after it is stored, never logged, and exists in clear only in the memory of the
process that signs with it.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TypeAlias

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings

SigningKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

MISSING_KEY = (
    "The portal CA's private key is stored encrypted, and PORTAL_CA_ENCRYPTION_KEY (or PORTAL_CA_ENCRYPTION_KEY_FILE) "
    "is not set. Set it to the key the CA was created with; to make a new one, run "
    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
)
WRONG_KEY = (
    "The portal CA's private key cannot be decrypted with PORTAL_CA_ENCRYPTION_KEY: it was encrypted with another "
    "key. Put the key it was created with in the setting (one key per line; all of them are tried)."
)


class KeystoreError(Exception):
    """The CA's key cannot be stored or unlocked; the message says which setting to fix, never the key."""


def _fernet() -> MultiFernet:
    text = settings.PORTAL_CA_ENCRYPTION_KEY
    keys = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not keys:
        raise KeystoreError(MISSING_KEY)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise KeystoreError(
            "PORTAL_CA_ENCRYPTION_KEY must hold Fernet keys (32 bytes, url-safe base64), one per line."
        ) from None


def encrypt_key(key: SigningKey) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return _fernet().encrypt(pem).decode("ascii")


# Unlocked keys by their encrypted form and the setting that unlocked them: decrypting and parsing an RSA key costs
# milliseconds, and issuance signs many certificates with one CA. A re-encrypted key, or a changed or removed
# setting, is a new cache key, so it is checked afresh.
_UNLOCKED: dict[tuple[str, str], SigningKey] = {}
_UNLOCKED_LOCK = threading.Lock()


def decrypt_key(token: str) -> SigningKey:
    cache_key = (token, hashlib.sha256((settings.PORTAL_CA_ENCRYPTION_KEY or "").encode()).hexdigest())
    with _UNLOCKED_LOCK:
        cached = _UNLOCKED.get(cache_key)
    if cached is not None:
        return cached
    try:
        pem = _fernet().decrypt(token.encode("ascii"))
    except InvalidToken:
        raise KeystoreError(WRONG_KEY) from None
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeystoreError("The stored CA key is neither an EC nor an RSA key.")
    with _UNLOCKED_LOCK:
        if len(_UNLOCKED) > 32:  # a handful of CAs at most; never grows without bound
            _UNLOCKED.clear()
        _UNLOCKED[cache_key] = key
    return key
