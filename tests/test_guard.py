"""Tests for the egress guard: address rules, URL checks, the guarded resolver, real sessions."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from callout._guard_syntax import _PLAIN_URL, _screen_characters, _screen_structure
from callout.errors import EgressDenied, NetworkError
from callout.guard import (
    BLOCKED_NETWORKS,
    CLOUD_METADATA,
    EgressPolicy,
    GuardDecision,
    GuardedResolver,
    StaticResolver,
    check,
    check_addresses,
    check_url,
    classify_address,
    parse_resolve_overrides,
)
from callout.testing import Upstream, serve_app

EMPTY = EgressPolicy()
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def denied(url: str, policy: EgressPolicy = EMPTY) -> EgressDenied:
    with pytest.raises(EgressDenied) as info:
        check_url(url, policy)
    return info.value


def url_host(address: Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


# --- address classification -------------------------------------------------------------------

IPV4_SPECIAL = [
    ("0.0.0.0", "unspecified"),
    ("0.0.0.1", "this_network"),
    ("0.255.255.255", "this_network"),
    ("10.0.0.0", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.0", "cgnat"),
    ("100.127.255.255", "cgnat"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.255", "loopback"),
    ("169.254.0.0", "link_local"),
    ("169.254.255.255", "link_local"),
    ("172.16.0.0", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.0", "ietf_protocol"),
    ("192.0.0.9", "ietf_protocol"),
    ("192.0.0.255", "ietf_protocol"),
    ("192.0.2.0", "documentation"),
    ("192.0.2.255", "documentation"),
    ("192.88.99.1", "6to4_relay"),
    ("192.168.0.0", "private"),
    ("192.168.255.255", "private"),
    ("198.18.0.0", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.255", "documentation"),
    ("224.0.0.0", "multicast"),
    ("239.255.255.255", "multicast"),
    ("240.0.0.0", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
]

IPV6_SPECIAL = [
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::7f00:1", "ipv4_compatible"),
    ("::8.8.8.8", "ipv4_compatible"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:100.64.0.1", "cgnat"),
    ("::ffff:0:8.8.8.8", "ipv4_translated"),
    ("64:ff9b::7f00:1", "nat64"),
    ("64:ff9b::808:808", "nat64"),
    ("64:ff9b:1::1", "nat64"),
    ("100::1", "discard_only"),
    ("2001::1", "teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
    ("2001:1::1", "ietf_protocol"),
    ("2001:1ff:ffff::1", "ietf_protocol"),
    ("2001:2::1", "benchmarking"),
    ("2001:db8::1", "documentation"),
    ("2002:7f00:1::1", "6to4"),
    ("2002:808:808::1", "6to4"),
    ("3fff::1", "documentation"),
    ("3fff:fff::1", "documentation"),
    ("5f00::1", "srv6_sid"),
    ("fc00::1", "unique_local"),
    ("fdff:ffff::1", "unique_local"),
    ("fe80::1", "link_local"),
    ("febf:ffff::1", "link_local"),
    ("fec0::1", "site_local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("1::1", "reserved"),
    ("4000::1", "reserved"),
    ("e000::1", "reserved"),
]

GLOBAL = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.0",
    "192.0.3.0",
    "192.88.98.255",
    "192.88.100.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "2001:200::1",
    "3fff:1000::1",
    "::ffff:8.8.8.8",
]

METADATA = [
    "169.254.169.254",
    "169.254.170.2",
    "fd00:ec2::254",
    "100.100.100.200",
    "168.63.129.16",
    "192.0.0.192",
]


@pytest.mark.parametrize(("address", "rule"), IPV4_SPECIAL + IPV6_SPECIAL)
def test_special_purpose_addresses_are_classified(address: str, rule: str) -> None:
    """Every IANA special-purpose range, at its edges, is blocked by its named rule."""
    assert classify_address(ipaddress.ip_address(address)) == rule


@pytest.mark.parametrize("address", GLOBAL)
def test_global_unicast_is_not_classified(address: str) -> None:
    """Globally routable unicast addresses, including just outside each range, pass."""
    assert classify_address(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", [*METADATA, "::ffff:169.254.169.254", "fd00:ec2::254%eth0"])
def test_cloud_metadata_addresses_are_named(address: str) -> None:
    """Cloud metadata endpoints get their own rule, whatever range they sit in."""
    assert classify_address(ipaddress.ip_address(address)) == "cloud_metadata"


def test_cloud_metadata_table_matches_spec() -> None:
    """CLOUD_METADATA holds exactly the SPEC section 5 addresses."""
    assert {str(a) for a in CLOUD_METADATA} == set(METADATA)


@pytest.mark.parametrize("address", METADATA)
def test_cloud_metadata_urls_are_blocked(address: str) -> None:
    """A URL naming a metadata endpoint is refused with rule cloud_metadata."""
    assert denied(f"http://{url_host(ipaddress.ip_address(address))}/latest").rule == (
        "cloud_metadata"
    )


# --- URL checks -------------------------------------------------------------------------------

IP_LITERAL_URLS = [
    ("http://127.0.0.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0X7F.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://0177.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "loopback"),
    ("http://0/", "unspecified"),
    ("http://0x/", "unspecified"),
    ("http://0.0.0.0:8080/", "unspecified"),
    ("http://167772161/", "private"),
    ("http://012.0.0.1/", "private"),
    ("http://0xa9fea9fe/", "cloud_metadata"),
    ("http://169.254.43518/", "cloud_metadata"),
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]:8080/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/", "cloud_metadata"),
    ("http://[::127.0.0.1]/", "ipv4_compatible"),
    ("http://[64:ff9b::127.0.0.1]/", "nat64"),
    ("http://[2002:7f00:1::]/", "6to4"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "teredo"),
    ("http://[fe80::1%25eth0]/", "link_local"),
    ("http://[fe80::1%eth0]:8080/", "link_local"),
    ("http://[::1%25lo]/", "loopback"),
    ("http://[fd00:ec2::254%25eth0]/", "cloud_metadata"),
    ("http://[fc00::1]/", "unique_local"),
]


@pytest.mark.parametrize(("url", "rule"), IP_LITERAL_URLS)
def test_ip_literals_in_any_spelling_are_judged(url: str, rule: str) -> None:
    """Decimal, octal, hex, short, full-width, mapped and zoned IP literals are judged."""
    exc = denied(url)
    assert exc.rule == rule
    assert exc.address is not None
    assert f"(rule {rule})" in exc.message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://0x5db8d822/", "http://93.184.216.34/"),
        ("http://1572395042:8080/x?y=1", "http://93.184.216.34:8080/x?y=1"),
        ("http://93.184.216.34/", "http://93.184.216.34/"),
        ("https://[2606:4700:4700::1111]/dns", "https://[2606:4700:4700::1111]/dns"),
    ],
)
def test_public_ip_literals_pass_as_dotted_quads(url: str, expected: str) -> None:
    """A public IP literal passes; a legacy spelling comes back as the dotted quad judged."""
    assert str(check_url(url, EMPTY)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://1.2.3.4.5/",
        "http://08.0.0.1/",
        "http://256.0.0.1/",
        "http://1.2.3.256/",
        "http://1.16777216/",
        "http://4294967296/",
        "http://0xg.1/",
        "http://foo.123/",
        "http://1..1/",
        "http://127.0.0.%31/",
        "http://exa%6dple.com/",
        "http://[fe80::1%25%0a]/",
        "http://[fe80::1%25eth0%5D]/",
    ],
)
def test_invalid_hosts_are_refused(url: str) -> None:
    """Hosts that look numeric but are no IPv4 address, and percent-encoded hosts, are refused."""
    assert denied(url).rule == "invalid_host"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://example.com\\@127.0.0.1/", "bad_character"),
        ("http://example.com\\.127.0.0.1/", "bad_character"),
        ("http://user:pw@example.com/", "userinfo"),
        ("http://user@example.com/", "userinfo"),
        ("http://@example.com/", "userinfo"),
        ("http://example.com:80@127.0.0.1/", "userinfo"),
        ("http://a%40b@example.com/", "userinfo"),
        ("http://[v1.x]/", "malformed"),
        ("http://[::1/", "malformed"),
        ("http://a]b/", "malformed"),
        ("http://[::1]x/", "malformed"),
    ],
)
def test_authority_tricks_are_refused(url: str, rule: str) -> None:
    """Userinfo, backslashes and stray brackets in the authority are refused."""
    assert denied(url).rule == rule


def test_userinfo_never_appears_in_the_refusal() -> None:
    """The refusal of a URL with a password names neither the user nor the password."""
    exc = denied("http://admin:s3cr3t-pw@example.com/")
    assert "s3cr3t" not in str(exc)
    assert "admin" not in str(exc)
    assert exc.host is None or "s3cr3t" not in exc.host


@pytest.mark.parametrize(
    "url", ["http://example.com#@127.0.0.1/", "http://example.com?@127.0.0.1/"]
)
def test_at_sign_after_the_authority_is_not_userinfo(url: str) -> None:
    """An '@' in the query or fragment leaves the host as written before it."""
    assert check_url(url, EMPTY).raw_host == "example.com"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_SET%20x",
        "ftp://example.com/",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "dict://127.0.0.1:11211/",
        "ws://example.com/",
        "//example.com/",
        "example.com/path",
    ],
)
def test_non_http_schemes_are_refused(url: str) -> None:
    """Only http and https are allowed."""
    assert denied(url).rule == "scheme"


@pytest.mark.parametrize("url", ["http:example.com", "http:///path", "https:/example.com"])
def test_urls_without_host_are_refused(url: str) -> None:
    """A URL must carry a host after '//'."""
    assert denied(url).rule == "no_host"


@pytest.mark.parametrize(
    "char", ["\r", "\n", "\0", " ", "\t", "\x7f", "\x85", "\x1b", "\u00a0", "\u2028", "\u200b"]
)
@pytest.mark.parametrize(
    "template", ["http://example.com/a{c}b", "http://exam{c}ple.com/", "{c}http://example.com/"]
)
def test_control_and_whitespace_characters_are_refused(template: str, char: str) -> None:
    """CR, LF, NUL, whitespace and other control characters anywhere in a URL are refused."""
    exc = denied(template.format(c=char))
    assert exc.rule == "bad_character"
    assert f"U+{ord(char):04X}" in exc.message


def test_header_injection_is_refused() -> None:
    """A URL smuggling a header line through CR LF is refused."""
    assert denied("http://example.com/\r\nX-Injected: 1").rule == "bad_character"


@pytest.mark.parametrize(
    ("url", "extra_ports", "allowed"),
    [
        ("http://example.com/", (), True),
        ("https://example.com/", (), True),
        ("http://example.com:443/", (), True),
        ("https://example.com:80/", (), True),
        ("http://example.com:1024/", (), True),
        ("http://example.com:6379/", (), True),
        ("http://example.com:8443/", (), True),
        ("http://example.com:65535/", (), True),
        ("http://example.com:0/", (), False),
        ("http://example.com:22/", (), False),
        ("http://example.com:25/", (), False),
        ("http://example.com:1023/", (), False),
        ("http://example.com:22/", (22,), True),
        ("http://example.com:25/", (22, 25), True),
        ("http://example.com:21/", (22, 25), False),
    ],
)
def test_port_policy(url: str, extra_ports: tuple[int, ...], allowed: bool) -> None:
    """Ports 80, 443 and 1024-65535 pass; others only when an admin adds them."""
    policy = EgressPolicy.from_entries([], extra_ports=extra_ports)
    if allowed:
        check_url(url, policy)
    else:
        exc = denied(url, policy)
        assert exc.rule == "port"
        assert exc.host == "example.com"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:+80/",
        "http://example.com:\uff18\uff10/",
        "http://example.com:99999/",
        "http://example.com:80x/",
        "http://a:b:80/",
    ],
)
def test_malformed_ports_are_refused(url: str) -> None:
    """A port that is not plain ASCII digits in range is refused."""
    assert denied(url).rule == "malformed"


def test_names_pass_the_syntactic_check_unchanged() -> None:
    """A host name passes check_url as parsed; its addresses are judged at resolution."""
    url = check_url("HTTPS://API.Example.com/v1/calls?from=%2B1555#x", EMPTY)
    assert str(url) == "https://api.example.com/v1/calls?from=%2B1555#x"


def test_allow_networks_admit_ip_literals() -> None:
    """An IP literal inside an allow-listed network passes check_url."""
    policy = EgressPolicy.from_entries(["127.0.0.0/8", "fe80::/10"])
    assert check_url("http://127.0.0.1:8080/", policy).port == 8080
    assert check_url("http://0x7f.1/", policy).raw_host == "127.0.0.1"
    check_url("http://[fe80::1%25eth0]/", policy)
    assert denied("http://10.0.0.1/", policy).rule == "private"


def test_block_message_says_what_and_how_to_fix() -> None:
    """A refusal names the address, the rule and the allow-list to fix it."""
    exc = denied("http://10.0.0.5/")
    assert exc.message == (
        "blocked: 10.0.0.5 is a private address (rule private); to reach your own internal "
        "systems on purpose, add it to CALLOUT_EGRESS_ALLOW"
    )
    assert exc.code == "egress_denied"
    assert exc.outcome == "blocked"


# --- resolved answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "rule", "offender"),
    [
        (["93.184.216.34", "10.0.0.5"], "private", "10.0.0.5"),
        (["10.0.0.5", "93.184.216.34"], "private", "10.0.0.5"),
        (["2606:4700:4700::1111", "::1"], "loopback", "::1"),
        (["93.184.216.34", "::ffff:10.0.0.5"], "private", "::ffff:10.0.0.5"),
        (["93.184.216.34", "169.254.169.254"], "cloud_metadata", "169.254.169.254"),
        (["127.0.0.1", "10.0.0.1"], "loopback", "127.0.0.1"),
    ],
)
def test_any_blocked_answer_blocks_the_name(addresses: list[str], rule: str, offender: str) -> None:
    """A DNS answer mixing public and blocked addresses is blocked, naming the first offender."""
    with pytest.raises(EgressDenied) as info:
        check_addresses("api.example.com", addresses, EMPTY)
    assert (info.value.rule, info.value.address, info.value.host) == (
        rule,
        offender,
        "api.example.com",
    )
    assert offender.removeprefix("::ffff:") in info.value.message
    assert info.value.message.startswith("blocked: api.example.com resolves to ")


def test_public_answers_pass() -> None:
    """A name whose every answer is globally routable passes."""
    check_addresses("api.example.com", ["93.184.216.34", "2606:2800:220:1::1"], EMPTY)


@pytest.mark.parametrize(
    ("addresses", "rule"), [([], "dns_failure"), (["not-an-ip"], "invalid_address")]
)
def test_empty_or_junk_answers_fail_closed(addresses: list[str], rule: str) -> None:
    """No answers, or an answer that is not an IP address, is refused."""
    with pytest.raises(EgressDenied) as info:
        check_addresses("api.example.com", addresses, EMPTY)
    assert info.value.rule == rule


@pytest.mark.parametrize(
    ("entries", "host", "addresses", "allowed"),
    [
        (["10.0.0.0/8"], "crm.internal", ["10.0.0.5"], True),
        (["10.0.0.0/8"], "crm.internal", ["10.0.0.5", "192.168.1.1"], False),
        (["10.0.0.0/8"], "crm.internal", ["::ffff:10.0.0.5"], True),
        (["10.0.0.5"], "crm.internal", ["10.0.0.6"], False),
        (["fd00::/8"], "crm.internal", ["fd12::1"], True),
        (["crm.internal"], "crm.internal", ["10.0.0.5", "fd00::1"], True),
        (["crm.internal"], "CRM.Internal.", ["10.0.0.5"], True),
        (["crm.internal"], "other.internal", ["10.0.0.5"], False),
        (["crm.internal"], "api.crm.internal", ["10.0.0.5"], False),
        (["*.corp.example"], "a.corp.example", ["10.0.0.5"], True),
        (["*.corp.example"], "x.y.corp.example", ["10.0.0.5"], True),
        (["*.corp.example"], "corp.example", ["10.0.0.5"], False),
        (["*.corp.example"], "evilcorp.example", ["10.0.0.5"], False),
    ],
)
def test_allow_list_by_network_and_by_name(
    entries: list[str], host: str, addresses: list[str], allowed: bool
) -> None:
    """Allowed networks admit addresses; an allowed name admits its own answers, for it only."""
    policy = EgressPolicy.from_entries(entries)
    if allowed:
        check_addresses(host, addresses, policy)
    else:
        with pytest.raises(EgressDenied):
            check_addresses(host, addresses, policy)


@pytest.mark.parametrize(
    ("entries", "allowed"),
    [
        (["169.254.0.0/16"], False),
        (["0.0.0.0/0"], False),
        (["metadata.internal"], False),
        (["169.254.169.254"], True),
        (["169.254.169.254/32"], True),
    ],
)
def test_metadata_needs_an_exact_allow_entry(entries: list[str], allowed: bool) -> None:
    """Broad CIDRs and allowed names never open a metadata endpoint; its exact address does."""
    policy = EgressPolicy.from_entries(entries)
    if allowed:
        check_addresses("metadata.internal", ["169.254.169.254"], policy)
    else:
        with pytest.raises(EgressDenied) as info:
            check_addresses("metadata.internal", ["169.254.169.254"], policy)
        assert info.value.rule == "cloud_metadata"
    check_addresses("metadata.internal", ["169.254.1.1"], EgressPolicy.from_entries(["0.0.0.0/0"]))


# --- policy parsing ---------------------------------------------------------------------------


def test_from_entries_sorts_networks_and_hosts() -> None:
    """CIDRs, bare IPs and bracketed IPv6 become networks; names are lower-cased hosts."""
    policy = EgressPolicy.from_entries(
        [
            *("10.0.0.0/8", "::1/128", "127.0.0.1", "[fd00::1]", "", "  fd00::/8 ", "10.0.0.0/8"),
            *("crm.internal", "*.corp.example", "CRM.Example.COM."),
        ],
        extra_ports=[22, 25],
    )
    assert [str(n) for n in policy.allow_networks] == [
        "10.0.0.0/8",
        "::1/128",
        "127.0.0.1/32",
        "fd00::1/128",
        "fd00::/8",
    ]
    assert policy.allow_hosts == {"crm.internal", "*.corp.example", "crm.example.com"}
    assert policy.extra_ports == {22, 25}


def test_from_env_value_splits_on_commas_and_whitespace() -> None:
    """CALLOUT_EGRESS_ALLOW accepts commas, spaces and newlines between entries."""
    policy = EgressPolicy.from_env_value(" 10.0.0.0/8, crm.internal\n*.corp.example  127.0.0.1,")
    assert [str(n) for n in policy.allow_networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert policy.allow_hosts == {"crm.internal", "*.corp.example"}
    assert EgressPolicy.from_env_value("") == EMPTY


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.0/33",
        "not a host!",
        "*",
        "*.",
        "**.x",
        "http://crm.internal",
        "crm.internal:8080",
        "fe80::1%eth0",
        "1.2.3.4.5",
        "127.1",
        "h\u00e9llo.example",
        "a..b",
        "300.1.1.1",
        "::g",
    ],
)
def test_from_entries_rejects_bad_entries(entry: str) -> None:
    """A bad entry raises ValueError naming it and the accepted forms."""
    with pytest.raises(ValueError, match="invalid egress allow-list entry") as info:
        EgressPolicy.from_entries([entry])
    assert repr(entry) in str(info.value)
    assert "zone ids" in str(info.value) or "CIDR" in str(info.value)


def test_from_entries_suggests_the_network_when_host_bits_are_set() -> None:
    """A CIDR with host bits set is refused with the network it probably meant."""
    with pytest.raises(ValueError, match=r"did you mean 10\.0\.0\.0/8"):
        EgressPolicy.from_entries(["10.0.0.5/8"])


@pytest.mark.parametrize("port", [0, 70000, -1, True])
def test_from_entries_rejects_bad_ports(port: int) -> None:
    """Extra ports must be integers 1-65535."""
    with pytest.raises(ValueError, match="invalid extra port"):
        EgressPolicy.from_entries([], extra_ports=[port])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["h:::1"], {"h": ["::1"]}),
        (["h:[::1]"], {"h": ["::1"]}),
        (["h:127.0.0.1"], {"h": ["127.0.0.1"]}),
        (
            ["api.example.com:1.2.3.4", "API.example.com.:[2001:DB8::1]", "b.test:5.6.7.8"],
            {"api.example.com": ["1.2.3.4", "2001:db8::1"], "b.test": ["5.6.7.8"]},
        ),
    ],
)
def test_parse_resolve_overrides(values: list[str], expected: dict[str, list[str]]) -> None:
    """HOST:IP values split at the first colon, bracketed IPv6 accepted, repeatable per host."""
    assert parse_resolve_overrides(values) == expected


@pytest.mark.parametrize(
    "value", ["nohost", ":1.2.3.4", "h:", "h:443:1.2.3.4", "h:not-an-ip", "bad host:1.2.3.4"]
)
def test_parse_resolve_overrides_rejects_bad_values(value: str) -> None:
    """A value that is not HOST:IP raises ValueError naming it."""
    with pytest.raises(ValueError, match="invalid --resolve value") as info:
        parse_resolve_overrides([value])
    assert repr(value) in str(info.value)


# --- resolvers --------------------------------------------------------------------------------


class CountingResolver(AbstractResolver):
    """Wraps a resolver, counting lookups and closes."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner
        self.lookups: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return await self.inner.resolve(host, port, family)

    async def close(self) -> None:
        self.closed = True


class FixedResolver(AbstractResolver):
    """Returns fixed results verbatim, whatever the host."""

    def __init__(self, results: list[ResolveResult]) -> None:
        self.results = results

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return self.results

    async def close(self) -> None:
        pass


async def test_static_resolver_answers_by_family() -> None:
    """StaticResolver answers case-insensitively, filtered by address family."""
    resolver = StaticResolver({"Dual.Test": ["93.184.216.34", "2606:2800:220:1::1"]})
    both = await resolver.resolve("dual.test.", 443, socket.AF_UNSPEC)
    assert [(r["host"], r["port"], r["hostname"]) for r in both] == [
        ("93.184.216.34", 443, "dual.test."),
        ("2606:2800:220:1::1", 443, "dual.test."),
    ]
    assert [r["host"] for r in await resolver.resolve("dual.test")] == ["93.184.216.34"]
    v6 = await resolver.resolve("dual.test", 0, socket.AF_INET6)
    assert [r["family"] for r in v6] == [socket.AF_INET6]


async def test_static_resolver_fails_like_a_lookup() -> None:
    """An unknown host, or one without answers of the family, raises OSError."""
    resolver = StaticResolver({"v4.test": ["93.184.216.34"]})
    with pytest.raises(OSError, match="not known"):
        await resolver.resolve("missing.test")
    with pytest.raises(OSError, match="not known"):
        await resolver.resolve("v4.test", 0, socket.AF_INET6)


def test_static_resolver_rejects_bad_answers() -> None:
    """StaticResolver refuses answers that are not IP addresses."""
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        StaticResolver({"h": ["nope"]})
    with pytest.raises(TypeError, match="not a string"):
        StaticResolver({"h": "1.2.3.4"})


def test_guarded_resolver_can_be_built_outside_a_loop() -> None:
    """GuardedResolver creates its default ThreadedResolver lazily, inside the running loop."""
    assert GuardedResolver(EMPTY).policy is EMPTY


async def test_guarded_resolver_resolves_once_and_returns_checked_answers() -> None:
    """One lookup; the answers come back as canonical IPs with the host name kept for TLS."""
    base = CountingResolver(StaticResolver({"api.test": ["93.184.216.34", "2606:2800:220:1::1"]}))
    resolver = GuardedResolver(EMPTY, base=base)
    results = await resolver.resolve("api.test", 443, socket.AF_UNSPEC)
    assert base.lookups == ["api.test"]
    assert [(r["hostname"], r["host"], r["port"]) for r in results] == [
        ("api.test", "93.184.216.34", 443),
        ("api.test", "2606:2800:220:1::1", 443),
    ]
    assert all(r["flags"] & socket.AI_NUMERICHOST for r in results)
    await resolver.close()
    assert base.closed


async def test_guarded_resolver_canonicalises_answers() -> None:
    """An answer is handed to aiohttp as the canonical form of the address that was checked."""
    raw = ResolveResult(
        hostname="crm.internal",
        host="FD00:0:0::1",
        port=80,
        family=socket.AF_INET6,
        proto=socket.IPPROTO_TCP,
        flags=0,
    )
    policy = EgressPolicy.from_entries(["fd00::/8"])
    results = await GuardedResolver(policy, base=FixedResolver([raw])).resolve("crm.internal", 80)
    assert results[0]["host"] == "fd00::1"


async def test_guarded_resolver_blocks_mixed_answers() -> None:
    """A name with one private answer among public ones is refused."""
    base = StaticResolver({"rebind.test": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(EgressDenied) as info:
        await GuardedResolver(EMPTY, base=base).resolve("rebind.test", 80)
    assert (info.value.rule, info.value.address) == ("private", "10.0.0.5")


@pytest.mark.parametrize("base", [StaticResolver({}), FixedResolver([])])
async def test_guarded_resolver_fails_closed_on_unresolvable_names(base: AbstractResolver) -> None:
    """A lookup error or an empty answer raises NetworkError dns_failure."""
    with pytest.raises(NetworkError) as info:
        await GuardedResolver(EMPTY, base=base).resolve("missing.test", 80)
    assert info.value.code == "dns_failure"
    assert "could not resolve host 'missing.test'" in info.value.message


async def test_guarded_resolver_admits_an_allowed_name() -> None:
    """An allow-listed name may resolve to a private address; another name may not."""
    base = StaticResolver({"crm.internal": ["10.0.0.5"], "evil.test": ["10.0.0.5"]})
    resolver = GuardedResolver(EgressPolicy.from_entries(["crm.internal"]), base=base)
    assert [r["host"] for r in await resolver.resolve("crm.internal", 80)] == ["10.0.0.5"]
    with pytest.raises(EgressDenied):
        await resolver.resolve("evil.test", 80)


# --- check (what `callout guard check` answers) -----------------------------------------------

PUBLIC = StaticResolver(
    {
        "api.example.com": ["93.184.216.34"],
        "mixed.example.com": ["93.184.216.34", "10.0.0.5"],
        "crm.internal": ["10.0.0.5"],
    }
)


@pytest.mark.parametrize(
    ("url", "entries", "expected"),
    [
        (
            "https://api.example.com/x",
            [],
            GuardDecision(True, "allowed: 93.184.216.34 is globally routable", ("93.184.216.34",)),
        ),
        (
            "http://93.184.216.34/",
            [],
            GuardDecision(True, "allowed: 93.184.216.34 is globally routable", ("93.184.216.34",)),
        ),
        (
            "http://crm.internal/",
            ["10.0.0.0/8"],
            GuardDecision(
                True, "allowed: 10.0.0.5 is in the allow-list (10.0.0.0/8)", ("10.0.0.5",)
            ),
        ),
        (
            "http://crm.internal/",
            ["crm.internal"],
            GuardDecision(
                True,
                "allowed: 10.0.0.5 is an answer for crm.internal, which is in the allow-list",
                ("10.0.0.5",),
            ),
        ),
    ],
)
async def test_check_explains_allowed(
    url: str, entries: list[str], expected: GuardDecision
) -> None:
    """An allowed URL comes with the addresses judged and why each passed."""
    assert await check(url, EgressPolicy.from_entries(entries), resolver=PUBLIC) == expected


@pytest.mark.parametrize(
    ("url", "rule", "addresses"),
    [
        ("http://mixed.example.com/", "private", ("93.184.216.34", "10.0.0.5")),
        ("http://crm.internal/", "private", ("10.0.0.5",)),
        ("http://missing.example.com/", "dns_failure", ()),
        ("http://10.0.0.5/", "private", ("10.0.0.5",)),
        ("gopher://api.example.com/", "scheme", ()),
        ("http://api.example.com:22/", "port", ()),
    ],
)
async def test_check_explains_blocked(url: str, rule: str, addresses: tuple[str, ...]) -> None:
    """A blocked URL names the rule, and for resolved names the addresses judged."""
    decision = await check(url, EMPTY, resolver=PUBLIC)
    assert (decision.allowed, decision.rule, decision.addresses) == (False, rule, addresses)
    assert decision.reason.startswith("blocked: ")
    assert f"(rule {rule})" in decision.reason


async def test_check_reports_unresolvable_names() -> None:
    """A name that does not resolve is not allowed, and the reason says so."""
    decision = await check("http://missing.example.com/", EMPTY, resolver=StaticResolver({}))
    assert not decision.allowed
    assert "did not resolve" in decision.reason


async def test_check_accepts_a_guarded_resolver() -> None:
    """check also works when handed a GuardedResolver, which judges answers itself."""
    guarded = GuardedResolver(EMPTY, base=PUBLIC)
    blocked = await check("http://crm.internal/", EMPTY, resolver=guarded)
    assert (blocked.allowed, blocked.rule, blocked.addresses) == (False, "private", ("10.0.0.5",))
    missing = await check("http://nowhere.test/", EMPTY, resolver=guarded)
    assert (missing.allowed, missing.rule) == (False, "dns_failure")


async def test_check_does_not_resolve_ip_literals() -> None:
    """An IP-literal URL is judged without a resolver (so no DNS is attempted)."""
    decision = await check("http://[::1]:8080/", EMPTY)
    assert (decision.allowed, decision.rule, decision.addresses) == (False, "loopback", ("::1",))


# --- properties -------------------------------------------------------------------------------

BLOCKED_ROWS = [(net, rule) for net, rule in BLOCKED_NETWORKS if rule != "ipv4_mapped"]
BLOCKED_V4 = [net for net, _ in BLOCKED_ROWS if net.version == 4]


def addresses_in(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> st.SearchStrategy[Address]:
    low, high = int(network.network_address), int(network.broadcast_address)
    return st.integers(low, high).map(
        ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
    )


blocked_addresses = st.sampled_from([net for net, _ in BLOCKED_ROWS]).flatmap(addresses_in)
blocked_v4 = st.sampled_from(BLOCKED_V4).flatmap(addresses_in)
mapped_blocked_v4 = blocked_v4.map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}"))
any_blocked = st.one_of(
    blocked_addresses, mapped_blocked_v4, st.sampled_from(sorted(CLOUD_METADATA, key=str))
)


@given(any_blocked)
def test_blocked_ranges_are_never_classified_global(address: Address) -> None:
    """Every address inside a blocked range, or its ::ffff: mapped form, has a blocking rule."""
    assert classify_address(address) is not None


@given(any_blocked, st.sampled_from([80, 443, 8080]))
def test_blocked_ranges_never_pass_check_url(address: Address, port: int) -> None:
    """No URL naming a blocked address passes check_url with an empty policy."""
    with pytest.raises(EgressDenied):
        check_url(f"http://{url_host(address)}:{port}/", EMPTY)


@given(any_blocked, st.lists(st.sampled_from(GLOBAL), max_size=3))
def test_blocked_ranges_never_pass_check_addresses(address: Address, public: list[str]) -> None:
    """No answer set containing a blocked address passes check_addresses with an empty policy."""
    with pytest.raises(EgressDenied):
        check_addresses("api.example.com", [*public, str(address)], EMPTY)


def spell_ipv4(address: ipaddress.IPv4Address, parts: int, bases: list[int]) -> str:
    """Spell an IPv4 address the way inet_aton reads it: 1-4 parts, each in a base."""
    value = int(address)
    numbers = [(value >> (8 * (3 - i))) & 0xFF for i in range(parts - 1)]
    numbers.append(value & ((1 << (8 * (5 - parts))) - 1))
    spelled = []
    for number, base in zip(numbers, bases, strict=False):
        spelled.append({8: f"0{number:o}", 10: str(number), 16: f"0x{number:x}"}[base])
    return ".".join(spelled)


@given(blocked_v4, st.integers(1, 4), st.lists(st.sampled_from([8, 10, 16]), min_size=4))
def test_legacy_ipv4_spellings_of_blocked_addresses_are_judged(
    address: ipaddress.IPv4Address, parts: int, bases: list[int]
) -> None:
    """Decimal, octal, hex and short spellings of a blocked address are refused by its rule."""
    exc = denied(f"http://{spell_ipv4(address, parts, bases)}/")
    assert exc.rule == classify_address(address)
    assert exc.address == str(address)


@given(st.integers(0, 2**32 - 1) | st.integers(0, 2**128 - 1).map(lambda n: n | (1 << 129)))
def test_classify_none_means_outside_every_blocked_range(number: int) -> None:
    """An address classified as allowed lies in no blocked range and is_global agrees."""
    address: Address = (
        ipaddress.IPv4Address(number)
        if number < 2**32
        else ipaddress.IPv6Address(number & (2**128 - 1))
    )
    if classify_address(address) is None:
        assert not any(address in net for net, rule in BLOCKED_ROWS)
        assert address.is_global
        assert address not in CLOUD_METADATA


# --- a real aiohttp session against a real server on 127.0.0.1 -------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A real aiohttp server on 127.0.0.1 that answers and redirects."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/redirect", redirect)
    async with serve_app(app) as server:
        yield server


def guarded_session(policy: EgressPolicy) -> aiohttp.ClientSession:
    base = StaticResolver({"upstream.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy, base=base))
    return aiohttp.ClientSession(connector=connector)


async def test_session_refuses_a_name_resolving_to_loopback(upstream: Upstream) -> None:
    """Without an allow-list, EgressDenied propagates out of session.get unchanged."""
    async with guarded_session(EMPTY) as session:
        with pytest.raises(EgressDenied) as info:
            await session.get(f"http://upstream.test:{upstream.port}/")
    assert (info.value.rule, info.value.address) == ("loopback", "127.0.0.1")


@pytest.mark.parametrize("entries", [["127.0.0.0/8"], ["upstream.test"]])
async def test_session_reaches_an_allowed_upstream(upstream: Upstream, entries: list[str]) -> None:
    """With 127.0.0.0/8 or the name allowed, the request reaches the real server."""
    async with (
        guarded_session(EgressPolicy.from_entries(entries)) as session,
        session.get(f"http://upstream.test:{upstream.port}/") as response,
    ):
        assert response.status == 200
        assert await response.text() == "hello"


async def test_session_allowed_name_does_not_open_other_names(upstream: Upstream) -> None:
    """Allowing upstream.test does not let other.test reach the same address."""
    async with guarded_session(EgressPolicy.from_entries(["upstream.test"])) as session:
        with pytest.raises(EgressDenied):
            await session.get(f"http://other.test:{upstream.port}/")


async def test_session_dns_failure_propagates_as_network_error(upstream: Upstream) -> None:
    """A name that does not resolve fails closed with NetworkError, not an aiohttp error."""
    async with guarded_session(EMPTY) as session:
        with pytest.raises(NetworkError) as info:
            await session.get(f"http://missing.test:{upstream.port}/")
    assert info.value.code == "dns_failure"


async def test_aiohttp_skips_the_resolver_for_ip_literals(upstream: Upstream) -> None:
    """aiohttp connects to an IP literal without the resolver: check_url is the only guard."""
    async with guarded_session(EMPTY) as session, session.get(upstream.url("/")) as response:
        assert response.status == 200
    assert denied(upstream.url("/")).rule == "loopback"


async def test_aiohttp_redirects_bypass_the_resolver_for_ip_literals(upstream: Upstream) -> None:
    """aiohttp follows a redirect to an IP literal unchecked: the transport must check each hop."""
    target = upstream.url("/")
    url = f"http://upstream.test:{upstream.port}/redirect?to={target}"
    async with (
        guarded_session(EgressPolicy.from_entries(["upstream.test"])) as session,
        session.get(url) as response,
    ):
        assert str(response.url) == target
    assert denied(target).rule == "loopback"


URL_PIECES = st.sampled_from(
    ["http", "https", "HTTP", "ftp", ":", "//", "/", "?", "#", "@", "[", "]", "\\", " ", "\t",
     "\x00", "\x7f", "\u00e9", "\uff10", "h", "example.com", "127.0.0.1", "::1", "80", "99999",
     "%2F", "%40", "a", "."]
)  # fmt: skip


@given(st.lists(URL_PIECES, max_size=12).map("".join))
def test_property_the_one_match_for_plain_urls_accepts_nothing_the_full_screen_refuses(
    url: str,
) -> None:
    """The guard accepts a plain http(s) URL in one regular-expression match; whatever that
    match accepts passes every check of the full screen too (characters and structure)."""
    if url.isascii() and _PLAIN_URL.fullmatch(url) is not None:
        _screen_characters(url)
        _screen_structure(url)
    for prefix in ("http://", "https://"):
        full = prefix + url
        if full.isascii() and _PLAIN_URL.fullmatch(full) is not None:
            _screen_characters(full)
            _screen_structure(full)
