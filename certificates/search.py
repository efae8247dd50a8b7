"""Finding certificates by what people copy from a terminal or a log: a fingerprint, a serial, a Cloudflare id.

Exact keys only, each served by an index (certificates/models.py), so that the admin's search over every
certificate stays fast; the dashboard also matches a user's own certificates by part of their name.
"""

from __future__ import annotations

import re

from django.db.models import Q

HEX = re.compile(r"[0-9a-fA-F]+")
CLOUDFLARE_ID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def certificate_key_match(term: str) -> Q:
    """The certificates whose fingerprint, serial or Cloudflare id is `term`, written any way people copy them:
    upper or lower case, with colons or spaces (openssl's fingerprints), serials with leading zeros."""
    compact = re.sub(r"[\s:]", "", term)
    match = Q(pk__in=[])
    if HEX.fullmatch(compact) and len(compact) <= 64:
        if len(compact) == 64:
            match |= Q(fingerprint_sha256=compact.lower())  # stored as Python's hex(): lowercase
        # Portal CAs store uppercase hex without leading zeros; Cloudflare's API gives its own spelling.
        significant = compact.lstrip("0") or "0"
        spellings = {compact, compact.upper(), compact.lower(), significant.upper(), significant.lower()}
        match |= Q(serial_number__in=sorted(spellings))
    if CLOUDFLARE_ID.fullmatch(term):
        match |= Q(cloudflare_id=term.lower())
    return match
