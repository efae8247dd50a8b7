"""Checking the networks a user's certificates may be used from, as the user wrote them.

Each entry is judged where it was written: "line 3" on the page (blank lines and comments counted, so the
number is the one the user sees), "entry 3" in the API's list. Every bad entry is reported at once, so that one
round trip fixes them all.

Duplicates and overlaps are merged, with a notice naming both lines. A network inside another one admits no
address the larger one does not, so dropping it changes nothing at the edge; refusing it would make the user edit
for no effect, and break scripts that assemble a list from several sources (office, VPN, CI). The notice shows what
was dropped, so a typo that happens to land inside another network is still seen.

Cloudflare's firewall matches `ip.src`, the public address a request comes from. Private, loopback, link-local,
CGNAT, documentation and other special-purpose ranges are never that address, so a network inside one of them
admits nothing; a list made only of such networks blocks every request with the user's certificates. Such a list
is refused unless the caller confirms it (`confirm_unreachable`); in a list with other networks they are kept with
a warning.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# How entries are numbered in messages: lines of the page's text, or the items of the API's list.
CountedAs = Literal["line", "entry"]

# Far above any useful list (ALLOWLIST_MAX_NETWORKS is 50 by default), so that a pasted log file is refused before
# it is parsed rather than after.
MAX_ENTRIES = 1000
# A few problems are enough to fix the list; a thousand bad lines are one mistake (the wrong file).
MAX_PROBLEMS_REPORTED = 20
# How much of an unparseable entry a message repeats.
MAX_TEXT_SHOWN = 60

# Addresses Cloudflare never sees as a request's source (ip.src), from the IANA special-purpose registries
# (RFC 6890 and its updates). Routed special ranges a real client may use (6to4, Teredo) are not here.
_NEVER_A_CLIENT: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), why)
    for network, why in (
        ("0.0.0.0/8", "the 'this network' range"),
        ("10.0.0.0/8", "a private range (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT space (RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "a private range (RFC 1918)"),
        ("192.0.0.0/24", "reserved for IETF protocols (RFC 6890)"),
        ("192.0.2.0/24", "a documentation range (RFC 5737)"),
        ("192.168.0.0/16", "a private range (RFC 1918)"),
        ("198.18.0.0/15", "a benchmarking range (RFC 2544)"),
        ("198.51.100.0/24", "a documentation range (RFC 5737)"),
        ("203.0.113.0/24", "a documentation range (RFC 5737)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (RFC 1112)"),
        ("::/127", "the unspecified or loopback address"),
        ("100::/64", "a discard-only range (RFC 6666)"),
        ("2001:2::/48", "a benchmarking range (RFC 5180)"),
        ("2001:db8::/32", "a documentation range (RFC 3849)"),
        ("3fff::/20", "a documentation range (RFC 9637)"),
        ("fc00::/7", "a unique local (private) range (RFC 4193)"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)

# Entries on one line may be separated by commas or spaces, as lists copied from elsewhere often are.
_SEPARATORS = re.compile(r"[\s,;]+")
# Browsers send a textarea's lines separated by \r\n; static/js/networks.js counts lines the same way.
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Problem:
    """What is wrong, in a sentence that names the entry ("line 3: ..."); `number` is that line, for pointing at it."""

    text: str
    number: int | None = None

    def __str__(self) -> str:
        return self.text


class AllowlistError(ValueError):
    """The list cannot be saved; `problems` name each entry at fault (the first few) and what is wrong with it."""

    lead = ""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = _capped(problems)
        super().__init__(" ".join([self.lead, *map(str, self.problems)]).strip())


class UnreachableAllowlistError(AllowlistError):
    """Every network is one Cloudflare never sees as a client address: saved only if the caller confirms."""

    lead = (
        "Cloudflare never sees any of these networks as a request's address, so every request with your "
        "certificates would be blocked:"
    )


@dataclass(frozen=True)
class CheckedAllowlist:
    networks: tuple[str, ...]  # normalized, IPv4 before IPv6, each in address order
    warnings: tuple[str, ...] = ()  # kept networks that admit nothing
    notices: tuple[str, ...] = ()  # entries merged into others (duplicates, networks inside networks)
    # Every network is one Cloudflare never sees: the list blocks every request (saved only when confirmed).
    admits_nothing: bool = False


@dataclass(frozen=True)
class _Entry:
    number: int  # the line (or list item) it was written on, from 1
    network: IPNetwork


def check_networks(
    raw: Sequence[str], *, max_networks: int, confirm_unreachable: bool = False, counted_as: CountedAs = "entry"
) -> CheckedAllowlist:
    """The list to store, or AllowlistError naming every entry at fault. `raw` is the page's lines or the API's
    items; `#` starts a comment, and one item may hold several networks separated by commas or spaces."""
    if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
        raise AllowlistError([Problem('networks must be a list of addresses or CIDRs, e.g. ["203.0.113.0/24"].')])
    entries = _parsed(raw, counted_as)
    kept, notices = _merged(entries, counted_as)
    if len(kept) > max_networks:
        raise AllowlistError([Problem(f"A list holds at most {max_networks} networks; this one has {len(kept)}.")])
    unseen = [(entry, why) for entry in kept if (why := never_a_client(entry.network))]
    if kept and len(unseen) == len(kept) and not confirm_unreachable:
        raise UnreachableAllowlistError(
            [Problem(f"{counted_as} {e.number}: {e.network} is {why}.", e.number) for e, why in unseen]
        )
    warnings = [_unseen_message(entry, why, counted_as) for entry, why in unseen]
    return CheckedAllowlist(
        networks=tuple(str(entry.network) for entry in kept),
        warnings=tuple(warnings),
        notices=tuple(notices),
        admits_nothing=bool(kept) and len(unseen) == len(kept),
    )


def lines_of(text: str) -> list[str]:
    """The page's text as lines, numbered as the user sees them."""
    return _LINE_BREAKS.split(text)


def never_a_client(network: IPNetwork) -> str | None:
    """Why Cloudflare never sees a request from inside `network` (e.g. "a private range (RFC 1918)"), or None."""
    for special, why in _NEVER_A_CLIENT:
        if network.version == special.version and network.subnet_of(special):  # type: ignore[arg-type]
            return why
    return None


def address_order(network: IPNetwork) -> tuple[int, int, int]:
    """Sort key: IPv4 before IPv6, then by address, a network before the networks inside it."""
    return (network.version, int(network.network_address), network.prefixlen)


def _parsed(raw: Sequence[str], counted_as: CountedAs) -> list[_Entry]:
    entries: list[_Entry] = []
    problems: list[Problem] = []
    for number, line in enumerate(raw, start=1):
        for text in _SEPARATORS.split(line.split("#", 1)[0]):
            if not text:
                continue
            if len(entries) + len(problems) >= MAX_ENTRIES:
                raise AllowlistError([Problem(f"A list holds at most {MAX_ENTRIES} entries; this one has more.")])
            try:
                entries.append(_Entry(number, _parse(text)))
            except ValueError as exc:
                problems.append(Problem(f"{counted_as} {number}: `{_shown(text)}` {exc}", number))
    if problems:
        raise AllowlistError(problems)
    return entries


def _parse(text: str) -> IPNetwork:
    """The network `text` names; ValueError with the rest of a sentence about `text` when it names none."""
    if "%" in text:
        # Python accepts an IPv6 zone index ("fe80::1%eth0"); it names a local interface, not an address.
        raise ValueError("has an IPv6 zone index (%...); give the address alone.")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError("is not an IPv4 or IPv6 address or network.") from None
        raise ValueError(f"has host bits set; did you mean {loose}?") from None
    if network.prefixlen == 0:
        raise ValueError("is every address; leave the list empty to allow any address.")
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        # Cloudflare writes an IPv4 client's address as IPv4; the mapped form never matches it.
        ipv4 = ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
        written = ipv4.network_address if ipv4.prefixlen == 32 else ipv4
        raise ValueError(f"is IPv4 written as IPv6; write {written} instead.")
    return network


def _merged(entries: list[_Entry], counted_as: CountedAs) -> tuple[list[_Entry], list[str]]:
    """The entries no other entry covers, in address order, and a notice for each one dropped.

    CIDR networks either nest or do not meet, and sorted by (address, prefix length) a network comes right
    after the one that holds it or after that one's other members: comparing with the last kept is enough.
    """
    ordered = sorted(entries, key=lambda entry: address_order(entry.network))
    kept: list[_Entry] = []
    dropped: list[tuple[_Entry, _Entry]] = []
    for entry in ordered:
        holder = kept[-1] if kept else None
        if holder and holder.network.version == entry.network.version and entry.network.subnet_of(holder.network):  # type: ignore[arg-type]
            dropped.append((entry, holder))
        else:
            kept.append(entry)
    dropped.sort(key=lambda pair: pair[0].number)
    return kept, [_merge_notice(entry, holder, counted_as) for entry, holder in dropped]


def _merge_notice(entry: _Entry, holder: _Entry, counted_as: CountedAs) -> str:
    if entry.network == holder.network:
        if entry.number == holder.number:
            return f"{counted_as} {entry.number}: {entry.network} is written twice; kept once."
        return f"{counted_as} {entry.number}: {entry.network} repeats {counted_as} {holder.number}; kept once."
    return (
        f"{counted_as} {entry.number}: {entry.network} is inside {counted_as} {holder.number}'s {holder.network}; "
        f"only {holder.network} is kept."
    )


def _unseen_message(entry: _Entry, why: str, counted_as: CountedAs) -> str:
    return (
        f"{counted_as} {entry.number}: {entry.network} is {why}; Cloudflare never sees it as a request's address, "
        "so it admits nothing."
    )


def _shown(text: str) -> str:
    return text if len(text) <= MAX_TEXT_SHOWN else text[: MAX_TEXT_SHOWN - 1] + "…"


def _capped(problems: Sequence[Problem]) -> tuple[Problem, ...]:
    if len(problems) <= MAX_PROBLEMS_REPORTED:
        return tuple(problems)
    return (*problems[:MAX_PROBLEMS_REPORTED], Problem(f"And {len(problems) - MAX_PROBLEMS_REPORTED} more."))


@dataclass(frozen=True)
class AddressOffer:
    """The address a request came from, offered for the list: as a network, and why Cloudflare never sees it."""

    address: str
    network: str  # the address alone: /32 or /128
    # For IPv6, the /64 holding it: privacy addresses change within it, so the address alone may soon be stale.
    wider: str
    never_seen: str  # why Cloudflare never sees a request from it ("" when it does)


def address_offer(address: str | None) -> AddressOffer | None:
    """What to offer for `address` (the client's, as certificates.views_helpers.client_address finds it)."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's form of an IPv4 client
    network = ipaddress.ip_network(ip)
    wider = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else ""
    return AddressOffer(str(ip), str(network), wider, never_a_client(network) or "")
