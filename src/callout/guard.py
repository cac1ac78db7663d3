"""The egress guard: which destinations an outbound call may reach, checked before connecting.

Threat model. Flow authors choose the URLs that Callout fetches, and Callout runs inside the
operator's network. Without this guard a flow could make Callout fetch what the author cannot:

- **SSRF to internal services**: ``http://10.0.0.5/admin``, ``http://localhost:6379/``, anything
  behind the firewall. Only globally routable unicast addresses are allowed (``BLOCKED_NETWORKS``
  lists every IANA special-purpose range; ``ipaddress.is_global`` alone is wrong on Python 3.11).
- **Cloud metadata**: ``http://169.254.169.254/`` hands out the host's cloud credentials.
  ``CLOUD_METADATA`` addresses are blocked first and only an allow-list entry for that exact
  address admits one; a broad CIDR or an allowed name never does.
- **DNS rebinding**: a name that is public when checked and private when connected. The
  ``GuardedResolver`` resolves once, checks every answer, and hands aiohttp exactly the checked
  addresses, so no second lookup happens (TLS still verifies the host name from the URL).
- **Parser confusion**: URLs that one parser reads differently from another: userinfo
  (``http://example.com\\@127.0.0.1/``), control characters and whitespace, odd IPv4 spellings
  (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``), IPv4 hidden in IPv6 (mapped, NAT64,
  6to4, Teredo, compatible), zone ids. ``check_url`` refuses the ambiguous forms and judges every
  IP literal itself, because aiohttp does not consult the resolver for IP literals.

The transport must call ``check_url`` before every request *and every redirect hop* (redirects
must not be followed by aiohttp itself) and connect through a ``GuardedResolver``. Admins open
their own internal systems on purpose with an allow-list (``EgressPolicy``,
``CALLOUT_EGRESS_ALLOW``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from callout._guard_ranges import (
    BLOCKED_NETWORKS,
    CLOUD_METADATA,
    GLOBAL_UNICAST_V6,
    RULE_DESCRIPTIONS,
    IPAddress,
    IPNetwork,
)
from callout._guard_syntax import ALLOWED_SCHEMES, deny, host_literal, is_host_name, parse_url
from callout.errors import EgressDenied, NetworkError

__all__ = [
    "ALLOWED_SCHEMES",
    "BLOCKED_NETWORKS",
    "CLOUD_METADATA",
    "DEFAULT_PORTS",
    "UNPRIVILEGED_PORTS",
    "EgressPolicy",
    "GuardDecision",
    "GuardedResolver",
    "StaticResolver",
    "check",
    "check_addresses",
    "check_url",
    "classify_address",
    "parse_resolve_overrides",
]

#: Ports below 1024 that are allowed without an admin adding them to ``extra_ports``.
DEFAULT_PORTS: Final = frozenset({80, 443})
#: Ports that are always allowed: nothing privileged (ssh, smtp, ...) lives up here by convention.
UNPRIVILEGED_PORTS: Final = range(1024, 65536)
ALLOW_ENV_VAR: Final = "CALLOUT_EGRESS_ALLOW"

_FIX: Final = f"to reach your own internal systems on purpose, add it to {ALLOW_ENV_VAR}"
_METADATA_FIX: Final = "only an allow-list entry for this exact address admits a metadata endpoint"
_ENTRY_FORMS: Final = (
    "expected a CIDR ('10.0.0.0/8', '::1/128'), an IP address ('127.0.0.1'), "
    "a host name ('crm.internal') or a wildcard ('*.corp.example')"
)
_NUMERIC_FLAGS: Final = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
# Most specific network first, so the narrowest rule names the reason.
_TABLE: Final = sorted(BLOCKED_NETWORKS, key=lambda pair: -pair[0].prefixlen)


@dataclass(frozen=True)
class EgressPolicy:
    """What an admin opened on purpose, beyond the globally routable internet.

    ``allow_networks`` admits addresses; ``allow_hosts`` admits whatever those names (lower-case,
    exact, or ``*.example.com`` for its subdomains) resolve to, for those names only;
    ``extra_ports`` adds ports to 80, 443 and 1024-65535.
    """

    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    extra_ports: frozenset[int] = frozenset()
    #: Hosts already judged allowed under this policy (hosts repeat on the call path).
    _allowed_hosts: dict[tuple[str, str], tuple[str | None, IPAddress | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def from_entries(
        cls, entries: Iterable[str], *, extra_ports: Iterable[object] = ()
    ) -> EgressPolicy:
        """Build a policy from CIDRs, bare IPs, host names and ``*.`` wildcards."""
        networks: dict[IPNetwork, None] = {}
        hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            network = _parse_network_entry(entry)
            if network is not None:
                networks[network] = None
            else:
                hosts.add(_parse_host_entry(entry))
        ports: set[int] = set()
        for port in extra_ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"invalid extra port {port!r}: expected an integer 1-65535")
            ports.add(port)
        return cls(tuple(networks), frozenset(hosts), frozenset(ports))

    @classmethod
    def from_env_value(cls, value: str) -> EgressPolicy:
        """Parse ``CALLOUT_EGRESS_ALLOW``: entries separated by commas and/or whitespace."""
        return cls.from_entries(re.split(r"[,\s]+", value))


def _parse_network_entry(entry: str) -> IPNetwork | None:
    text = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
    if "%" in text:
        raise ValueError(f"invalid egress allow-list entry {entry!r}: zone ids are not accepted")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        if "/" in text or ":" in text:
            raise ValueError(f"invalid egress allow-list entry {entry!r}: {_ENTRY_FORMS}") from None
        return None
    raise ValueError(
        f"invalid egress allow-list entry {entry!r}: host bits are set; did you mean {loose}?"
    )


def _parse_host_entry(entry: str) -> str:
    name = entry.lower().rstrip(".")
    bare = name.removeprefix("*.")
    if not is_host_name(bare):
        raise ValueError(f"invalid egress allow-list entry {entry!r}: {_ENTRY_FORMS}")
    return name


def _host_allowed(policy: EgressPolicy, host: str) -> bool:
    name = host.lower().rstrip(".")
    if name in policy.allow_hosts:
        return True
    return any(
        pattern.startswith("*.") and name.endswith(pattern[1:]) for pattern in policy.allow_hosts
    )


def classify_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """``None`` for a globally routable unicast address, else the rule that blocks it."""
    address = _plain(address)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return classify_address(address.ipv4_mapped)
    if address in CLOUD_METADATA:
        return "cloud_metadata"
    for network, rule in _TABLE:
        if address in network:
            return rule
    if isinstance(address, ipaddress.IPv6Address) and address not in GLOBAL_UNICAST_V6:
        return "reserved"
    if not address.is_global:  # belt and braces: the table above should already have said no
        return "not_global"
    return None


def _plain(address: IPAddress) -> IPAddress:
    """The address without a zone id (which would defeat equality with CLOUD_METADATA)."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(int(address))
    return address


def _verdict(address: IPAddress, policy: EgressPolicy, host: str | None) -> tuple[str | None, str]:
    """(blocking rule or None, human-readable reason) for one address under ``policy``."""
    judged = _plain(address)
    if isinstance(judged, ipaddress.IPv6Address) and judged.ipv4_mapped is not None:
        judged = judged.ipv4_mapped
    shown = str(address) if judged == _plain(address) else f"{address} (IPv4 {judged})"
    rule = classify_address(judged)
    if rule is None:
        return None, f"{shown} is globally routable"
    for network in policy.allow_networks:
        if judged in network and (rule != "cloud_metadata" or network.num_addresses == 1):
            return None, f"{shown} is in the allow-list ({network})"
    if host is not None and rule != "cloud_metadata" and _host_allowed(policy, host):
        return None, f"{shown} is an answer for {host}, which is in the allow-list"
    fix = _METADATA_FIX if rule == "cloud_metadata" else _FIX
    what = RULE_DESCRIPTIONS.get(rule, "not allowed")
    subject = shown if host is None else f"{host} resolves to {shown}, which"
    return rule, f"blocked: {subject} is {what} (rule {rule}); {fix}"


def _check_url(url: str, policy: EgressPolicy) -> tuple[URL, IPAddress | None]:
    """``check_url``, also returning the IP when the host is a literal."""
    parsed = parse_url(url)
    port = parsed.port
    if port is None or not (
        port in DEFAULT_PORTS or port in UNPRIVILEGED_PORTS or port in policy.extra_ports
    ):
        raise deny(
            f"blocked: port {port} is not allowed (rule port); allowed are 80, 443 and "
            "1024-65535, and ports an admin adds",
            "port",
            host=parsed.raw_host,
        )
    key = (parsed.raw_host or "", parsed.host or "")
    judged = policy._allowed_hosts.get(key)
    if judged is None:
        judged = _judge_host(*key, policy)
        if len(policy._allowed_hosts) >= _HOST_CACHE_SIZE:
            policy._allowed_hosts.clear()
        policy._allowed_hosts[key] = judged
    rewrite, address = judged
    return (parsed if rewrite is None else parsed.with_host(rewrite)), address


_HOST_CACHE_SIZE = 4096


def _judge_host(
    raw_host: str, host: str, policy: EgressPolicy
) -> tuple[str | None, IPAddress | None]:
    """The host's literal form, and a refusal (raised) when a literal address is not allowed."""
    rewrite, address = host_literal(raw_host, host)
    if address is not None:
        rule, reason = _verdict(address, policy, None)
        if rule is not None:
            raise deny(reason, rule, host=rewrite or raw_host, address=str(address))
    return rewrite, address


def check_url(url: str, policy: EgressPolicy) -> URL:
    """Check a URL before any connection and return it parsed; raise ``EgressDenied`` if refused.

    Scheme http/https, no userinfo, no control characters, whitespace or backslash, a host, an
    allowed port; an IP-literal host (in any spelling) is judged here. A legacy IPv4 spelling
    (``0x7f.1``) comes back as its dotted quad, so what is connected to is what was judged.
    """
    return _check_url(url, policy)[0]


def check_addresses(host: str, addresses: Sequence[str], policy: EgressPolicy) -> None:
    """Raise ``EgressDenied`` unless every resolved answer for ``host`` is allowed."""
    if not addresses:
        raise deny(f"blocked: {host} has no addresses (rule dns_failure)", "dns_failure", host=host)
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise deny(
                f"blocked: answer {text[:60]!r} for {host} is not an IP address "
                "(rule invalid_address)",
                "invalid_address",
                host=host,
            ) from None
        rule, reason = _verdict(address, policy, host)
        if rule is not None:
            raise deny(reason, rule, host=host, address=text)


class GuardedResolver(AbstractResolver):
    """Resolve once, check every answer, return exactly the checked answers to aiohttp.

    aiohttp's connector wraps only ``OSError`` from a resolver (into ``ClientConnectorDNSError``,
    ``connector.py: _create_direct_connection``); ``EgressDenied`` and ``NetworkError`` are not
    ``OSError``, so they propagate out of ``session.get`` unchanged (verified against aiohttp
    3.14's source, and pinned by a test).
    """

    def __init__(self, policy: EgressPolicy, base: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._base = base

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve once: ``NetworkError`` if nothing resolves, ``EgressDenied`` if refused."""
        if self._base is None:  # created here: ThreadedResolver needs the running loop
            self._base = aiohttp.ThreadedResolver()
        try:
            answers = await self._base.resolve(host, port, family)
        except OSError as exc:  # fail closed: no answer, no connection
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise NetworkError(
                f"could not resolve host {host!r}: {reason}", code="dns_failure"
            ) from exc
        if not answers:
            raise NetworkError(f"could not resolve host {host!r}: no addresses", code="dns_failure")
        check_addresses(host, [answer["host"] for answer in answers], self.policy)
        # The answers are IP strings (checked above), flagged numeric: nothing resolves them again.
        return [
            ResolveResult(
                hostname=host,
                host=str(ipaddress.ip_address(answer["host"])),
                port=answer["port"],
                family=answer["family"],
                proto=answer["proto"],
                flags=_NUMERIC_FLAGS,
            )
            for answer in answers
        ]

    async def close(self) -> None:
        """Close the base resolver."""
        if self._base is not None:
            await self._base.close()


class StaticResolver(AbstractResolver):
    """Answers from a fixed ``{host: [ip, ...]}`` map; an unknown host fails like a lookup does."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self._answers: dict[str, list[IPAddress]] = {}
        for host, addresses in answers.items():
            if isinstance(addresses, str):
                raise TypeError(f"answers for {host!r} must be a list of addresses, not a string")
            name = host.lower().rstrip(".")
            self._answers.setdefault(name, []).extend(ipaddress.ip_address(a) for a in addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The fixed answers for ``host`` of ``family`` (AF_UNSPEC: all)."""
        results = [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET if address.version == 4 else socket.AF_INET6,
                proto=socket.IPPROTO_TCP,
                flags=_NUMERIC_FLAGS,
            )
            for address in self._answers.get(host.lower().rstrip("."), [])
        ]
        results = [r for r in results if family == socket.AF_UNSPEC or r["family"] == family]
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return results

    async def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class GuardDecision:
    """The answer of ``callout guard check``: allowed or not, why, and the addresses judged."""

    allowed: bool
    reason: str
    addresses: tuple[str, ...]
    rule: str | None = None


async def check(
    url: str, policy: EgressPolicy, *, resolver: AbstractResolver | None = None
) -> GuardDecision:
    """Would a call to ``url`` be allowed? Resolves names once with ``resolver`` (default: DNS)."""
    try:
        parsed, address = _check_url(url, policy)
    except EgressDenied as exc:
        return GuardDecision(False, exc.message, (exc.address,) if exc.address else (), exc.rule)
    if address is not None:
        return GuardDecision(
            True, f"allowed: {_verdict(address, policy, None)[1]}", (str(address),)
        )
    host = parsed.raw_host or ""
    own = resolver is None
    active = resolver if resolver is not None else aiohttp.ThreadedResolver()
    try:
        answers = await active.resolve(host, parsed.port or 0, socket.AF_UNSPEC)
    except (OSError, NetworkError) as exc:
        why = exc.message if isinstance(exc, NetworkError) else exc.strerror or str(exc)
        return GuardDecision(
            False,
            f"blocked: {host} did not resolve ({why}) (rule dns_failure); "
            "names that do not resolve are refused",
            (),
            "dns_failure",
        )
    except EgressDenied as exc:  # a GuardedResolver judged the answers itself
        return GuardDecision(False, exc.message, (exc.address,) if exc.address else (), exc.rule)
    finally:
        if own:
            await active.close()
    addresses = tuple(dict.fromkeys(answer["host"] for answer in answers))
    try:
        check_addresses(host, addresses, policy)
    except EgressDenied as exc:
        return GuardDecision(False, exc.message, addresses, exc.rule)
    reasons = "; ".join(_verdict(ipaddress.ip_address(a), policy, host)[1] for a in addresses)
    return GuardDecision(True, f"allowed: {reasons}", addresses)


def parse_resolve_overrides(values: Sequence[str]) -> dict[str, list[str]]:
    """Parse curl-style ``--resolve HOST:ADDRESS`` values into ``{host: [address, ...]}``."""
    answers: dict[str, list[str]] = {}
    for value in values:
        host, _, address = value.strip().partition(":")
        host = host.lower().rstrip(".")
        if address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            parsed = None
        if not is_host_name(host) or parsed is None:
            raise ValueError(
                f"invalid --resolve value {value!r}: expected HOST:ADDRESS, e.g. "
                "api.example.com:93.184.216.34 or api.example.com:[2606:2800::1] "
                "(curl's HOST:PORT:ADDRESS form is not accepted)"
            )
        answers.setdefault(host, []).append(str(parsed))
    return answers
