"""The egress guard's address policy: IANA special-purpose ranges and cloud metadata endpoints.

Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and updates) and the
IPv6 Address Space registry. Python's ``ipaddress.is_global`` is not enough on its own (on 3.11 it
calls multicast, 6to4, NAT64, Teredo, 3fff::/20 and 5f00::/16 "global"), so every range is listed
here explicitly; ``guard.classify_address`` still checks ``is_global`` last as belt and braces.
"""

from __future__ import annotations

import ipaddress
from typing import Final

__all__ = [
    "BLOCKED_NETWORKS",
    "CLOUD_METADATA",
    "GLOBAL_UNICAST_V6",
    "RULE_DESCRIPTIONS",
    "IPAddress",
    "IPNetwork",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _net(cidr: str) -> IPNetwork:
    return ipaddress.ip_network(cidr)


#: Instance metadata services: they hand out cloud credentials, so they are the first thing an
#: SSRF goes for. Judged before any range, and never opened by a broad allow-list entry.
CLOUD_METADATA: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (publicly routable otherwise)
        "192.0.0.192",  # Oracle Cloud
    )
)

#: (network, rule) pairs that are never a legitimate destination for a call flow. The guard
#: checks the most specific network first, so a rule inside a wider one (broadcast inside
#: reserved, Teredo inside the IETF protocol block) names the precise reason.
BLOCKED_NETWORKS: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (_net(cidr), rule)
    for cidr, rule in (
        # IPv4
        ("0.0.0.0/8", "this_network"),  # RFC 791: "this host on this network"
        ("0.0.0.0/32", "unspecified"),
        ("10.0.0.0/8", "private"),  # RFC 1918
        ("100.64.0.0/10", "cgnat"),  # RFC 6598 shared address space
        ("127.0.0.0/8", "loopback"),  # RFC 1122
        ("169.254.0.0/16", "link_local"),  # RFC 3927
        ("172.16.0.0/12", "private"),  # RFC 1918
        ("192.0.0.0/24", "ietf_protocol"),  # RFC 6890: DS-Lite, PCP/TURN anycast, NAT64 discovery
        ("192.0.2.0/24", "documentation"),  # RFC 5737 TEST-NET-1
        ("192.88.99.0/24", "6to4_relay"),  # RFC 7526 deprecated 6to4 relay anycast
        ("192.168.0.0/16", "private"),  # RFC 1918
        ("198.18.0.0/15", "benchmarking"),  # RFC 2544
        ("198.51.100.0/24", "documentation"),  # RFC 5737 TEST-NET-2
        ("203.0.113.0/24", "documentation"),  # RFC 5737 TEST-NET-3
        ("224.0.0.0/4", "multicast"),  # RFC 5771
        ("240.0.0.0/4", "reserved"),  # RFC 1112 class E
        ("255.255.255.255/32", "broadcast"),  # RFC 919 limited broadcast
        # IPv6
        ("::/128", "unspecified"),  # RFC 4291
        ("::1/128", "loopback"),  # RFC 4291
        ("::/96", "ipv4_compatible"),  # RFC 4291 deprecated IPv4-compatible
        ("::ffff:0:0/96", "ipv4_mapped"),  # RFC 4291; classify_address judges the embedded IPv4
        ("::ffff:0:0:0/96", "ipv4_translated"),  # RFC 2765 SIIT
        ("64:ff9b::/96", "nat64"),  # RFC 6052 well-known NAT64 prefix
        ("64:ff9b:1::/48", "nat64"),  # RFC 8215 local-use NAT64
        ("100::/64", "discard_only"),  # RFC 6666
        ("2001::/23", "ietf_protocol"),  # RFC 2928: PCP/TURN anycast, AMT, AS112, ORCHID, ...
        ("2001::/32", "teredo"),  # RFC 4380
        ("2001:2::/48", "benchmarking"),  # RFC 5180
        ("2001:db8::/32", "documentation"),  # RFC 3849
        ("2002::/16", "6to4"),  # RFC 3056
        ("3fff::/20", "documentation"),  # RFC 9637
        ("5f00::/16", "srv6_sid"),  # RFC 9602 segment routing SIDs
        ("fc00::/7", "unique_local"),  # RFC 4193
        ("fe80::/10", "link_local"),  # RFC 4291
        ("fec0::/10", "site_local"),  # RFC 3879 deprecated site-local
        ("ff00::/8", "multicast"),  # RFC 4291
    )
)

#: The only IPv6 space IANA allocates for global unicast; anything outside it is reserved.
GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")

#: How each rule reads in an error message: "blocked: 10.0.0.5 is {description} (rule private)".
RULE_DESCRIPTIONS: Final[dict[str, str]] = {
    "this_network": "in 0.0.0.0/8 ('this network')",
    "unspecified": "the unspecified address",
    "private": "a private address",
    "cgnat": "a carrier-grade NAT (shared) address",
    "loopback": "a loopback address",
    "link_local": "a link-local address",
    "ietf_protocol": "an IETF protocol assignment, not a host",
    "documentation": "a documentation-only address",
    "6to4_relay": "the deprecated 6to4 relay anycast range",
    "benchmarking": "a benchmarking-only address",
    "multicast": "a multicast address",
    "reserved": "a reserved address",
    "broadcast": "the broadcast address",
    "ipv4_compatible": "a deprecated IPv4-compatible IPv6 address",
    "ipv4_mapped": "an IPv4-mapped IPv6 address",
    "ipv4_translated": "an IPv4-translated IPv6 address",
    "nat64": "a NAT64 address (it embeds an IPv4 address)",
    "discard_only": "a discard-only address",
    "teredo": "a Teredo address (it embeds an IPv4 address)",
    "6to4": "a 6to4 address (it embeds an IPv4 address)",
    "srv6_sid": "a segment-routing SID, not a host",
    "unique_local": "a unique-local (private) IPv6 address",
    "site_local": "a deprecated site-local IPv6 address",
    "cloud_metadata": "a cloud metadata endpoint",
    "not_global": "not globally routable",
}
