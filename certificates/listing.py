"""A user's certificates a page at a time, for the dashboard and `GET /api/v1/certificates` alike.

Keyset pagination: rows are ordered by (sort key, id) and a page starts after the last row of the previous one,
so a page costs the same however deep it is (no OFFSET) and a certificate issued meanwhile neither repeats nor
hides a row. The cursor is that last row's key and id, signed with SECRET_KEY: a client cannot forge a position,
and a cursor that does not verify is a clear error, never a 500.

A certificate in flight has no `expires_on` yet; the expiry sorts count it as expiring on FAR_FUTURE, so it comes
last when the soonest expiry comes first, and first the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import User
from django.core import signing
from django.db.models import DateTimeField, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce

from certificates.models import Certificate, CertificateAuthority
from certificates.search import certificate_key_match

DEFAULT_LIMIT = 50
MAX_SEARCH = 100  # characters: a name is at most 100, a fingerprint with colons 95
MAX_LIMIT = 200
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
CURSOR_SALT = "certificates.listing.cursor"

# Sort name -> the expression it orders by; "-" is newest (or latest expiry) first.
SORT_KEYS = {
    "-created_at": F("created_at"),
    "created_at": F("created_at"),
    "expires_on": Coalesce(F("expires_on"), Value(FAR_FUTURE), output_field=DateTimeField()),
    "-expires_on": Coalesce(F("expires_on"), Value(FAR_FUTURE), output_field=DateTimeField()),
}
DEFAULT_SORT = "-created_at"

# "active" is what a client may still use; "current" adds what is still in progress (issuing, a revocation or
# reactivation pending): everything but the revoked, expired and failed; "all" is every row; any status name is
# that status alone.
ALL = "all"
ACTIVE = "active"
CURRENT = "current"
CURRENT_STATUSES = Certificate.USABLE | Certificate.PENDING | Certificate.IN_FLIGHT
STATUS_FILTERS = (ACTIVE, CURRENT, *(status for status in Certificate.Status.values if status != ACTIVE), ALL)


class ListingError(ValueError):
    """A query parameter the listing cannot use; the message says which and what it accepts."""


@dataclass(frozen=True)
class Page:
    certificates: Sequence[Certificate]
    next_cursor: str | None


def certificates_page(
    *,
    owner: User,
    status: str = ALL,
    sort: str = DEFAULT_SORT,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    search: str = "",
    with_pem: bool = True,
) -> Page:
    """One page of `owner`'s certificates; `next_cursor` is None on the last page. Two queries at most.

    The CSR is never read (a list shows none), nor the PEM unless `with_pem` (the API's items carry it, the dashboard
    does not): together they are most of a row's bytes."""
    rows = _searched(_filtered(Certificate.objects.filter(owner=owner), status), search)
    rows = rows.defer("csr") if with_pem else rows.defer("csr", "certificate_pem")
    rows = rows.annotate(sort_key=SORT_KEYS[_checked_sort(sort)])
    descending = sort.startswith("-")
    if cursor:
        key, last_id = _decoded(cursor, sort)
        after = Q(sort_key__lt=key) | Q(sort_key=key, id__lt=last_id)
        if not descending:
            after = Q(sort_key__gt=key) | Q(sort_key=key, id__gt=last_id)
        rows = rows.filter(after)
    ordering = ("-sort_key", "-id") if descending else ("sort_key", "id")
    limit = _checked_limit(limit)
    # One row more than the page tells whether there is a next page without counting.
    rows = rows.select_related("authority").defer(*(f"authority__{name}" for name in CertificateAuthority.BULK_FIELDS))
    fetched = list(rows.order_by(*ordering)[: limit + 1])
    certificates = fetched[:limit]
    has_more = len(fetched) > limit
    return Page(certificates, _encoded(certificates[-1], sort) if has_more else None)


def parsed_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()):
        raise ListingError(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return _checked_limit(int(raw))


def _checked_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ListingError(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return limit


def _checked_sort(sort: str) -> str:
    if sort not in SORT_KEYS:
        raise ListingError(f"sort must be one of {', '.join(SORT_KEYS)}.")
    return sort


def _searched(rows: QuerySet[Certificate], search: str) -> QuerySet[Certificate]:
    """A user's own certificates whose name contains `search` (any case), or whose fingerprint, serial or Cloudflare
    id it is. "contains" is fine here: the owner's rows come from the (owner, ...) indexes first, hundreds at most."""
    text = search.strip()
    if not text:
        return rows
    if len(text) > MAX_SEARCH:
        raise ListingError(f"q must be at most {MAX_SEARCH} characters.")
    return rows.filter(Q(name__icontains=text) | certificate_key_match(text))


def _filtered(rows: QuerySet[Certificate], status: str) -> QuerySet[Certificate]:
    if status == ALL:
        return rows
    if status == ACTIVE:
        return rows.filter(status__in=Certificate.USABLE)
    if status == CURRENT:
        return rows.filter(status__in=CURRENT_STATUSES)
    if status in STATUS_FILTERS:
        return rows.filter(status=status)
    raise ListingError(f"status must be one of {', '.join(STATUS_FILTERS)}.")


def _encoded(last: Certificate, sort: str) -> str:
    key: datetime = last.sort_key  # type: ignore[attr-defined]  # the annotation above
    return signing.dumps([sort, key.isoformat(), last.pk], salt=CURSOR_SALT, compress=True)


def _decoded(cursor: str, sort: str) -> tuple[datetime, int]:
    """The key and id a cursor holds; a cursor not ours, damaged, or made for another sort is refused."""
    try:
        value: Any = signing.loads(cursor, salt=CURSOR_SALT)
    except signing.BadSignature:
        raise ListingError("cursor is not valid: use the `next` link of the previous page.") from None
    match value:
        case [str(made_for), str(key), int(last_id)] if made_for == sort:
            try:
                return datetime.fromisoformat(key), last_id
            except ValueError:
                pass
        case [str(), str(), int()]:
            raise ListingError("cursor belongs to another sort order: start again without it.")
    raise ListingError("cursor is not valid: use the `next` link of the previous page.")
