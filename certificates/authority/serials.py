"""Serial numbers of the certificates a portal CA signs, laid out so that rules can match them compactly.

    serial = zone marker (4 bytes) | owner tag (4 bytes) | random (10 bytes, 80 bits)

Cloudflare's rule field ``cf.tls_client_auth.cert_serial`` shows the serial as uppercase hex (FACTS.md §6). The
marker's first byte is between 0x10 and 0x7F, so the serial is positive in DER without a leading zero byte and its
hex form always has 36 digits with no leading zero: the text the edge compares is exactly ``serial_hex(serial)``.

* The zone marker lets the edge tell the portal's certificates from others a CA's key signed (an imported
  intermediate may have signed certificates outside the portal): one prefix test instead of a list.
* The owner tag puts all of a user's certificates under one prefix: a binding rule ties them to the user's
  networks with one range test, whatever their number (certificates/firewall/compiler.py).
* 80 random bits make serials unpredictable (RFC 5280 and CA/B practice ask for at least 64).
"""

from __future__ import annotations

import re
import secrets

MARKER_BYTES = 4
TAG_BYTES = 4
RANDOM_BYTES = 10
_MARKER = re.compile(r"[1-7][0-9A-F]{7}")
_TAG = re.compile(r"[0-9A-F]{8}")


def new_marker() -> str:
    """A zone's marker: eight uppercase hex digits, the first 1 to 7."""
    first = 0x10 + secrets.randbelow(0x70)
    return f"{first:02X}{secrets.token_hex(MARKER_BYTES - 1).upper()}"


def new_tag() -> str:
    return secrets.token_hex(TAG_BYTES).upper()


def new_serial(marker: str, tag: str) -> int:
    if not _MARKER.fullmatch(marker) or not _TAG.fullmatch(tag):
        raise ValueError("a serial needs a zone marker and an owner tag of eight uppercase hex digits")
    return int(marker + tag + secrets.token_hex(RANDOM_BYTES), 16)


def serial_hex(serial: int) -> str:
    """The serial as Cloudflare's rule field shows it: uppercase hex, no leading zeros, no separators."""
    return format(serial, "X")


def owner_prefix(marker: str, tag: str) -> str:
    """What every serial of this owner's certificates in this zone starts with."""
    return marker + tag
