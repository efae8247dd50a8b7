"""Checking the networks a user's certificates may be used from."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowlistError(ValueError):
    """The list cannot be saved; the message names the entry and the problem."""


@dataclass(frozen=True)
class CheckedAllowlist:
    networks: tuple[str, ...]
    warnings: tuple[str, ...]


def check_networks(raw: list[str], *, max_networks: int) -> CheckedAllowlist:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise AllowlistError('networks must be a list of addresses or CIDRs, e.g. ["192.0.2.0/24"].')
    networks: dict[str, IPNetwork] = {}
    for item in raw:
        text = item.strip()
        if not text:
            continue
        network = _parse(text)
        networks.setdefault(str(network), network)
    if len(networks) > max_networks:
        raise AllowlistError(f"An allowlist holds at most {max_networks} networks; this one has {len(networks)}.")
    ordered = sorted(networks.values(), key=lambda n: (n.version, n.network_address, n.prefixlen))
    return CheckedAllowlist(
        networks=tuple(str(n) for n in ordered),
        warnings=tuple(warning for n in ordered if (warning := _warning(n))),
    )


def _parse(text: str) -> IPNetwork:
    if "%" in text:
        # Python accepts an IPv6 zone index ("fe80::1%eth0"); it names a local interface, not an address.
        raise AllowlistError(f"{text!r} has an IPv6 zone index (%...); give the address alone.")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise AllowlistError(f"{text!r} is not an IPv4 or IPv6 address or CIDR.") from None
        raise AllowlistError(f"{text} has host bits set; did you mean {loose}?") from None
    if network.prefixlen == 0:
        raise AllowlistError(f"{text} is every address; leave the allowlist empty to allow any address.")
    return network


def _warning(network: IPNetwork) -> str | None:
    if network.is_loopback or network.is_link_local or network.is_multicast or network.is_unspecified:
        return f"{network} is not a public address range; Cloudflare will never see requests from it."
    if network.is_private or network.is_reserved:
        return (
            f"{network} is a private or reserved range; Cloudflare sees your public address, "
            "so requests will not match it."
        )
    return None
