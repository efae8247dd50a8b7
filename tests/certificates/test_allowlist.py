"""The networks checker (certificates/allowlist.py) and the service that stores its result.

The page (test_allowlist_views.py) and the API (test_allowlist_api.py) call the same service.
"""

from __future__ import annotations

import pytest

from certificates import services
from certificates.allowlist import (
    MAX_PROBLEMS_REPORTED,
    AllowlistError,
    UnreachableAllowlistError,
    address_offer,
    check_networks,
    lines_of,
    never_a_client,
)
from certificates.models import AllowlistEntry, AuditEvent

# Public networks, as Cloudflare may see them.
OFFICE = "93.184.216.0/24"
VPN = "8.8.8.0/24"
V6 = "2606:4700::/32"


def lines(text: str, **options):
    return check_networks(lines_of(text), max_networks=options.pop("max_networks", 50), counted_as="line", **options)


def problems(text: str, **options) -> list[str]:
    with pytest.raises(AllowlistError) as refused:
        lines(text, **options)
    return [str(problem) for problem in refused.value.problems]


# -- reading the list ---------------------------------------------------------------------------------------------


def test_it_normalizes_and_sorts_v4_before_v6_in_address_order():
    checked = check_networks(["2606:4700:0:0::/32", " 93.184.216.0/24", "8.8.8.8", "100.0.0.0/8"], max_networks=10)

    assert checked.networks == ("8.8.8.8/32", "93.184.216.0/24", "100.0.0.0/8", "2606:4700::/32")
    assert (checked.warnings, checked.notices, checked.admits_nothing) == ((), (), False)


def test_comments_blank_lines_commas_and_spaces_are_read_as_a_person_writes_them():
    checked = lines(f"# office\n\n{OFFICE}   # Berlin\r\n{VPN}, 2606:4700::/32 ;1.1.1.1\n#{'9.9.9.9'}\n")

    assert checked.networks == ("1.1.1.1/32", VPN, OFFICE, V6)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# office\n\n10.0.0.300/8", "line 3: `10.0.0.300/8` is not an IPv4 or IPv6 address or network."),
        (f"{OFFICE}\n93.184.216.1/24", "line 2: `93.184.216.1/24` has host bits set; did you mean 93.184.216.0/24?"),
        ("2606:4700::1/32", "line 1: `2606:4700::1/32` has host bits set; did you mean 2606:4700::/32?"),
        ("example.com", "line 1: `example.com` is not an IPv4 or IPv6 address or network."),
        ("0.0.0.0/0", "line 1: `0.0.0.0/0` is every address; leave the list empty to allow any address."),
        ("\n::/0", "line 2: `::/0` is every address; leave the list empty to allow any address."),
        ("fe80::1%eth0", "line 1: `fe80::1%eth0` has an IPv6 zone index (%...); give the address alone."),
        (
            "::ffff:93.184.216.34",
            "line 1: `::ffff:93.184.216.34` is IPv4 written as IPv6; write 93.184.216.34 instead.",
        ),
        (
            "::ffff:93.184.216.0/120",
            "line 1: `::ffff:93.184.216.0/120` is IPv4 written as IPv6; write 93.184.216.0/24 instead.",
        ),
    ],
)
def test_a_bad_entry_is_named_by_the_line_the_user_sees(text, problem):
    assert problems(text) == [problem]


def test_every_bad_line_is_reported_at_once_with_its_number():
    refused = problems(f"{OFFICE}\n300.1.1.1\n\n{VPN}, nonsense # comment\n8.8.4.4/16")

    assert refused == [
        "line 2: `300.1.1.1` is not an IPv4 or IPv6 address or network.",
        "line 4: `nonsense` is not an IPv4 or IPv6 address or network.",
        "line 5: `8.8.4.4/16` has host bits set; did you mean 8.8.0.0/16?",
    ]


def test_the_api_counts_entries_rather_than_lines():
    with pytest.raises(AllowlistError, match=r"^entry 2: `10\.0\.0\.300/8` is not"):
        check_networks([OFFICE, "10.0.0.300/8"], max_networks=10)


def test_a_flood_of_bad_lines_is_reported_in_part_and_a_long_entry_shortened():
    refused = problems("\n".join(["x" * 500] * (MAX_PROBLEMS_REPORTED + 5)))

    assert len(refused) == MAX_PROBLEMS_REPORTED + 1
    assert refused[-1] == "And 5 more."
    assert len(refused[0]) < 120


def test_it_bounds_the_count_after_merging():
    assert lines("8.8.8.1\n8.8.8.2\n8.8.8.1", max_networks=2).networks == ("8.8.8.1/32", "8.8.8.2/32")
    assert problems("8.8.8.1\n8.8.8.2\n8.8.8.3", max_networks=2) == ["A list holds at most 2 networks; this one has 3."]


def test_a_list_that_is_not_a_list_of_strings_is_refused():
    with pytest.raises(AllowlistError, match="must be a list of addresses"):
        check_networks("93.184.216.0/24", max_networks=10)  # type: ignore[arg-type]
    with pytest.raises(AllowlistError, match="must be a list of addresses"):
        check_networks([OFFICE, 7], max_networks=10)  # type: ignore[list-item]


# -- duplicates and overlaps: merged, with a notice naming both lines -------------------------------------------


def test_a_repeated_network_is_kept_once_with_a_notice_naming_both_lines():
    checked = lines(f"{OFFICE}\n# vpn\n{VPN}\n93.184.216.0/24\n8.8.8.0/24, 8.8.8.0/24")

    assert checked.networks == (VPN, OFFICE)
    assert checked.notices == (
        f"line 4: {OFFICE} repeats line 1; kept once.",
        f"line 5: {VPN} repeats line 3; kept once.",
        f"line 5: {VPN} repeats line 3; kept once.",
    )
    assert lines(f"{VPN}, {VPN}").notices == (f"line 1: {VPN} is written twice; kept once.",)


def test_a_network_inside_another_is_dropped_with_a_notice_whichever_comes_first():
    checked = lines(f"93.184.216.34\n{OFFICE}\n93.184.216.128/25\n2606:4700:10::/48\n{V6}")

    assert checked.networks == (OFFICE, V6)
    assert checked.notices == (
        f"line 1: 93.184.216.34/32 is inside line 2's {OFFICE}; only {OFFICE} is kept.",
        f"line 3: 93.184.216.128/25 is inside line 2's {OFFICE}; only {OFFICE} is kept.",
        f"line 4: 2606:4700:10::/48 is inside line 5's {V6}; only {V6} is kept.",
    )


def test_nested_networks_merge_into_the_outermost_and_neighbours_stay_apart():
    checked = lines("8.8.8.0/25\n8.8.8.128/25\n8.8.0.0/16\n8.8.8.8\n9.0.0.0/8\n8.0.0.0/8")

    assert checked.networks == ("8.0.0.0/8", "9.0.0.0/8")  # adjacent networks are not joined: that is not a merge
    assert len(checked.notices) == 4


# -- networks Cloudflare never sees ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "why"),
    [
        ("10.0.0.0/8", "a private range (RFC 1918)"),
        ("172.16.5.0/24", "a private range (RFC 1918)"),
        ("192.168.1.10/32", "a private range (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT space (RFC 6598)"),
        ("127.0.0.1/32", "loopback"),
        ("::1/128", "the unspecified or loopback address"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/64", "link-local"),
        ("fd12:3456::/32", "a unique local (private) range (RFC 4193)"),
        ("192.0.2.0/24", "a documentation range (RFC 5737)"),
        ("198.51.100.7/32", "a documentation range (RFC 5737)"),
        ("203.0.113.0/24", "a documentation range (RFC 5737)"),
        ("2001:db8::/32", "a documentation range (RFC 3849)"),
        ("2001:db8:4f2a::/48", "a documentation range (RFC 3849)"),
        ("224.0.0.0/4", "multicast"),
        ("198.18.0.0/15", "a benchmarking range (RFC 2544)"),
    ],
)
def test_it_knows_the_ranges_cloudflare_never_sees_as_a_client(network, why):
    import ipaddress

    assert never_a_client(ipaddress.ip_network(network)) == why


@pytest.mark.parametrize("network", ["8.8.8.0/24", "100.0.0.0/8", "11.0.0.0/8", "2606:4700::/32", "10.0.0.0/7"])
def test_public_networks_and_networks_only_partly_special_are_seen(network):
    import ipaddress

    assert never_a_client(ipaddress.ip_network(network)) is None  # 10.0.0.0/7 holds 11.0.0.0/8, which is public


def test_a_list_only_of_networks_cloudflare_never_sees_is_refused_naming_each():
    with pytest.raises(UnreachableAllowlistError) as refused:
        lines("# home\n10.0.0.0/8\n\n2001:db8::/32")

    assert [str(p) for p in refused.value.problems] == [
        "line 2: 10.0.0.0/8 is a private range (RFC 1918).",
        "line 4: 2001:db8::/32 is a documentation range (RFC 3849).",
    ]
    assert [p.number for p in refused.value.problems] == [2, 4]
    assert "every request with your certificates would be blocked" in str(refused.value)


def test_confirmed_it_is_saved_and_said_to_admit_nothing():
    checked = lines("10.0.0.0/8", confirm_unreachable=True)

    assert checked.networks == ("10.0.0.0/8",)
    assert checked.admits_nothing


def test_beside_a_public_network_they_are_kept_with_a_warning():
    checked = lines(f"10.0.0.0/8\n{OFFICE}")

    assert checked.networks == ("10.0.0.0/8", OFFICE)
    assert not checked.admits_nothing
    assert checked.warnings == (
        "line 1: 10.0.0.0/8 is a private range (RFC 1918); Cloudflare never sees it as a request's address, "
        "so it admits nothing.",
    )


def test_an_empty_list_needs_no_confirmation():
    checked = lines("\n# nothing yet\n")

    assert (checked.networks, checked.admits_nothing) == ((), False)


def test_bad_lines_are_reported_before_the_question_of_reach():
    assert problems("10.0.0.0/8\n10.0.0.300") == ["line 2: `10.0.0.300` is not an IPv4 or IPv6 address or network."]


# -- the address offered by "add my current address" -------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "network", "wider", "never_seen"),
    [
        ("93.184.216.34", "93.184.216.34/32", "", ""),
        ("2606:4700:10:20:a:b:c:d", "2606:4700:10:20:a:b:c:d/128", "2606:4700:10:20::/64", ""),
        ("::ffff:93.184.216.34", "93.184.216.34/32", "", ""),
        ("127.0.0.1", "127.0.0.1/32", "", "loopback"),
        ("10.1.2.3", "10.1.2.3/32", "", "a private range (RFC 1918)"),
    ],
)
def test_the_offered_address_is_one_network_and_says_when_cloudflare_never_sees_it(address, network, wider, never_seen):
    offer = address_offer(address)

    assert offer is not None
    assert (offer.network, offer.wider, offer.never_seen) == (network, wider, never_seen)


@pytest.mark.parametrize("address", [None, "", "unknown", "93.184.216.34, 8.8.8.8"])
def test_no_address_is_offered_when_there_is_none_to_trust(address):
    assert address_offer(address) is None


# -- storing it ----------------------------------------------------------------------------------------------------


def test_the_service_stores_the_merged_list_and_audits_the_change(alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        checked = services.allowlist_set(
            user=alice, networks=[OFFICE, "93.184.216.34", V6], origin=services.Origin(actor=alice)
        )

    assert services.allowlist_get(user=alice) == [OFFICE, V6] == list(checked.networks)
    event = AuditEvent.objects.get(action=AuditEvent.Action.ALLOWLIST_CHANGED)
    assert event.detail == {"user_id": alice.pk, "old": [], "new": [OFFICE, V6]}
    assert len(callbacks) == 1, "a firewall sync is queued after the commit"


def test_the_service_refuses_a_list_that_admits_nothing_and_changes_nothing(alice):
    AllowlistEntry.objects.create(owner=alice, network=OFFICE)

    with pytest.raises(services.AllowlistRefusedError) as refused:
        services.allowlist_set(user=alice, networks=["10.0.0.0/8"], origin=services.Origin(actor=alice))

    assert refused.value.confirmable
    assert refused.value.status_code == 400
    assert services.allowlist_get(user=alice) == [OFFICE]
    assert not AuditEvent.objects.exists()


def test_the_service_saves_it_when_confirmed_and_the_audit_log_says_so(alice):
    services.allowlist_set(
        user=alice, networks=["10.0.0.0/8"], origin=services.Origin(actor=alice), confirm_unreachable=True
    )

    assert services.allowlist_get(user=alice) == ["10.0.0.0/8"]
    event = AuditEvent.objects.get(action=AuditEvent.Action.ALLOWLIST_CHANGED)
    assert event.detail["confirmed_unreachable"] is True


def test_a_bad_line_is_not_confirmable(alice):
    with pytest.raises(services.AllowlistRefusedError) as refused:
        services.allowlist_set(
            user=alice, networks=["10.0.0.300"], origin=services.Origin(actor=alice), confirm_unreachable=True
        )

    assert not refused.value.confirmable
    assert not AllowlistEntry.objects.exists()


def test_the_same_networks_in_another_order_change_nothing(alice):
    services.allowlist_set(user=alice, networks=[V6, VPN, OFFICE], origin=services.Origin(actor=alice))
    services.allowlist_set(user=alice, networks=[OFFICE, V6, "8.8.8.0/24"], origin=services.Origin(actor=alice))

    assert AuditEvent.objects.filter(action=AuditEvent.Action.ALLOWLIST_CHANGED).count() == 1


def test_an_allowlist_too_long_for_one_rule_is_refused(alice, settings):
    settings.ALLOWLIST_MAX_NETWORKS = 500
    scattered = [f"2606:4700:{n:x}:{n:x}::/64" for n in range(200)]  # about 5,000 characters of networks

    with pytest.raises(services.PolicyError, match="too long to write into one firewall rule"):
        services.allowlist_set(user=alice, networks=scattered, origin=services.Origin(actor=alice))
    assert not AllowlistEntry.objects.exists()


def test_the_saved_list_is_judged_again_and_an_entry_written_elsewhere_does_not_break_the_page(alice):
    AllowlistEntry.objects.create(owner=alice, network="10.0.0.0/8")
    assert services.allowlist_standing(user=alice).admits_nothing

    AllowlistEntry.objects.create(owner=alice, network="not a network")  # the admin does not check
    assert services.allowlist_standing(user=alice).networks == ("10.0.0.0/8", "not a network")
