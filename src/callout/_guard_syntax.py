"""The egress guard's URL syntax defences: refuse what URL parsers disagree on, find IP literals.

Parser confusion is how SSRF filters get bypassed: a checker and a client that read one URL
differently (``http://example.com\\@127.0.0.1/``), a host that one reads as a name and the other
as an address (``0x7f.1``, ``2130706433``). So the raw text is screened before any parser sees it,
and every spelling of an IPv4 address that ``inet_aton`` or a browser accepts is decoded here.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from yarl import URL

from callout._guard_ranges import IPAddress
from callout.errors import EgressDenied

__all__ = ["ALLOWED_SCHEMES", "deny", "host_literal", "is_host_name", "parse_url"]

#: URL schemes a call may use.
ALLOWED_SCHEMES: Final = frozenset({"http", "https"})

_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_NAME_RE: Final = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*\.?")
_NUMBER_RE: Final = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
_DIGITS: Final = {8: re.compile(r"[0-7]+"), 10: re.compile(r"[0-9]+"), 16: re.compile(r"[0-9A-F]+")}
_ZONE_RE: Final = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 6874: a zone id is unreserved characters
_CHAR_NAMES: Final = {
    "\\": "a backslash",
    " ": "a space",
    "\t": "a tab",
    "\r": "a carriage return",
    "\n": "a line feed",
    "\0": "a NUL byte",
}
_NO_HOST: Final = (
    "blocked: the URL has no host (rule no_host); "
    "give an absolute URL such as https://api.example.com/"
)
_MALFORMED: Final = "blocked: the URL's host or port is malformed (rule malformed)"


def deny(
    message: str, rule: str, host: str | None = None, address: str | None = None
) -> EgressDenied:
    return EgressDenied(message, rule=rule, host=host, address=address)


def is_host_name(name: str) -> bool:
    """A lower-case ASCII DNS name (not one that ends in a number, which reads as IPv4)."""
    return bool(_NAME_RE.fullmatch(name)) and len(name) <= 254 and not _ends_in_number(name)


def _ends_in_number(host: str) -> bool:
    """WHATWG's test: a host whose last label is a number is an IPv4 address or invalid."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    return bool(_NUMBER_RE.fullmatch(labels[-1]))


_ASCII_BAD = re.compile(r"[\x00-\x20\x7f\\]")
_AUTHORITY_END = re.compile(r"[/?#]")
_PORT_DIGITS = re.compile(r"[0-9]*")


def _parse_ipv4_any(host: str) -> ipaddress.IPv4Address | None:
    """Every spelling inet_aton and browsers accept: 1-4 parts, each decimal, 0-octal or 0x-hex."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            base, digits = 16, part[2:].upper() or "0"
        elif len(part) > 1 and part.startswith("0"):
            base, digits = 8, part[1:]
        else:
            base, digits = 10, part
        if not _DIGITS[base].fullmatch(
            digits
        ):  # ASCII only: int() also takes "1_0" and non-ASCII digits
            return None
        numbers.append(int(digits, base))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    return ipaddress.IPv4Address(sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last)


#: The common URL, accepted in one match: ASCII, scheme http(s), a host without userinfo or
#: brackets, an optional port of digits, and no control character, space or backslash anywhere.
#: Everything it matches, the full screen below accepts too; anything else gets the full screen
#: (and its precise refusal).
_PLAIN_URL: Final = re.compile(
    r"(?i:https?)://[^/?#@:\[\]\\\x00-\x20\x7f]+(?::[0-9]{1,5})?(?:[/?#][^\\\x00-\x20\x7f]*)?"
)


def _screen(url: str) -> None:
    """Refuse what parsers disagree on, before any parser sees it."""
    if url.isascii() and _PLAIN_URL.fullmatch(url) is not None:
        return
    # An ASCII URL without control characters, space or backslash needs no char loop.
    if not (url.isascii() and _ASCII_BAD.search(url) is None):
        _screen_characters(url)
    _screen_structure(url)


def _screen_characters(url: str) -> None:
    for char in url:
        if char == "\\" or char.isspace() or not char.isprintable():
            name = _CHAR_NAMES.get(char, "a control or whitespace character")
            raise deny(
                f"blocked: the URL contains {name} (U+{ord(char):04X}) (rule bad_character); "
                "remove it or percent-encode it",
                "bad_character",
            )


def _screen_structure(url: str) -> None:
    match = _SCHEME_RE.match(url)
    scheme = match.group()[:-1].lower() if match else ""
    if match is None or scheme not in ALLOWED_SCHEMES:
        shown = f"scheme {scheme[:20]!r}" if scheme else "a URL without a scheme"
        raise deny(
            f"blocked: {shown} is not allowed (rule scheme); use http:// or https://", "scheme"
        )
    rest = url[match.end() :]
    if not rest.startswith("//"):
        raise deny(_NO_HOST, "no_host")
    authority = _AUTHORITY_END.split(rest[2:], maxsplit=1)[0]
    if "@" in authority:  # the userinfo itself may be a password: never echo it
        raise deny(
            "blocked: the URL carries user info before '@' (rule userinfo); "
            "put credentials in the auth settings, not in the URL",
            "userinfo",
        )
    host, port = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        host, port = authority[: end + 1], authority[end + 1 :]
        if end < 0 or (port and not port.startswith(":")):
            raise deny(_MALFORMED, "malformed")
        port = port[1:]
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    inner = host[1:-1] if host.startswith("[") else host
    bad_brackets = "[" in inner or "]" in inner or (host.startswith("[") and ":" not in inner)
    if bad_brackets or not _PORT_DIGITS.fullmatch(port):  # no "+80", no full-width digits
        raise deny(_MALFORMED, "malformed")


def parse_url(url: str) -> URL:
    """Screen ``url`` and parse it with yarl, as aiohttp will: an http(s) URL with a host."""
    _screen(url)
    try:
        # An ASCII URL is taken exactly as written (encoded=True): our templates percent-encode
        # each value, and re-parsing would decode %2F or %2E%2E back into path structure.
        parsed = URL(url, encoded=True) if url.isascii() else URL(url)
        _ = parsed.port  # yarl parses the port lazily for encoded URLs: force it here
        raw_host = parsed.raw_host or ""
        if raw_host != raw_host.lower() and not raw_host.startswith("["):
            parsed = parsed.with_host(raw_host.lower())  # DNS names are case-insensitive
    except ValueError as exc:  # userinfo was refused above, so yarl's message holds no secret
        raise deny(
            f"blocked: the URL could not be parsed (rule malformed): {exc}", "malformed"
        ) from None
    if not parsed.raw_host or parsed.host is None:
        raise deny(_NO_HOST, "no_host")
    return parsed


def host_literal(raw_host: str, host: str) -> tuple[str | None, IPAddress | None]:
    """(the dotted quad a legacy IPv4 spelling must be rewritten to, or None; the host's IP, or
    None for a name). ``host`` is yarl's decoded host (it keeps an IPv6 zone id)."""
    address: IPAddress | None = None
    if ":" in raw_host:  # yarl accepted it in brackets, so it is an IPv6 literal
        text = host
        _, percent, zone = text.partition("%")
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            address = None
        if percent and not _ZONE_RE.fullmatch(zone):
            address = None
    elif _ends_in_number(raw_host):
        address = _parse_ipv4_any(raw_host)
        if address is not None and str(address) != raw_host:
            return str(address), address  # connect to exactly what was judged
    elif is_host_name(raw_host):
        return None, None
    if address is None:
        raise deny(
            f"blocked: {raw_host[:100]!r} is not a valid host name or IP address "
            "(rule invalid_host)",
            "invalid_host",
            host=raw_host,
        )
    return None, address
