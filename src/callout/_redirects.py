"""What changes between redirect hops, and the rule that keeps secrets on their allowed origins.

Each hop's target is resolved against the current URL and passes the egress guard again; on a
change of origin the request loses its credentials; and a hop (the first one included) that
would still carry a secret to an origin outside ``allowed_origins`` is refused (SPEC §3, §5).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from yarl import URL

from callout.errors import EgressDenied, NetworkError
from callout.guard import EgressPolicy, check_url

if TYPE_CHECKING:
    from callout.transport import OutboundRequest

__all__ = [
    "BODY_HEADERS",
    "ORIGIN_BOUND_HEADERS",
    "carries_secret",
    "check_secret_origin",
    "origin_of",
    "redirect_target",
    "without_headers",
]

#: Dropped, with the secret headers, whenever a redirect changes origin. ``Host`` is not a
#: credential but names the old origin.
ORIGIN_BOUND_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "host"})
#: Dropped when a redirect turns the request into a GET without body.
BODY_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding"}
)
#: Headers that count as carrying a secret whatever ``secret_headers`` says.
_ALWAYS_SECRET = frozenset({"authorization", "proxy-authorization", "cookie"})


def origin_of(url: URL) -> str:
    """``scheme://host:port`` with the port always explicit (the form ``allowed_origins`` uses).

    The host is the wire form (IDNA-encoded, lower case), bracketed when it is IPv6.
    """
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{url.scheme}://{host}:{url.port}"


def redirect_target(current: URL, location: str, policy: EgressPolicy) -> URL:
    """The next hop: ``location`` resolved against ``current``, checked by the egress guard."""
    try:
        joined = current.join(URL(location))
    except (ValueError, TypeError):
        raise NetworkError(
            f"{origin_of(current)} redirected to a Location that is not a valid URL",
            code="malformed_response",
        ) from None
    return check_url(str(joined), policy)


def without_headers(headers: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """A copy of ``headers`` without ``names`` (lower-case), compared case-insensitively."""
    drop = frozenset(names)
    return {k: v for k, v in headers.items() if k.lower() not in drop}


def _forms(secret: str) -> set[str]:
    """The forms in which a secret value can travel in a URL, header or body."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
    }


def carries_secret(
    request: OutboundRequest, url: URL, headers: Mapping[str, str], body: bytes | None
) -> bool:
    """Whether this hop carries a secret: a credential header, or a secret value anywhere."""
    named = request.secret_headers
    if any(k.lower() in _ALWAYS_SECRET or k.lower() in named for k in headers):
        return True
    forms = set().union(*(_forms(s) for s in request.secrets if s))
    if not forms:
        return False
    raw = str(url)
    texts = [raw, unquote(raw), unquote_plus(raw), *headers.values()]
    if any(form in text for form in forms for text in texts):
        return True
    return body is not None and any(form.encode() in body for form in forms)


def check_secret_origin(
    request: OutboundRequest, url: URL, headers: Mapping[str, str], body: bytes | None
) -> None:
    """Refuse a hop that would carry a secret to an origin outside ``allowed_origins``."""
    allowed = request.allowed_origins
    if allowed is None:
        return
    origin = origin_of(url)
    if origin not in allowed and carries_secret(request, url, headers, body):
        raise EgressDenied(
            f"refused to send credentials to {origin}: it is not an origin this integration "
            "allows (allowedOrigins); add it to the spec's allowedOrigins if it is trusted",
            rule="secret_origin",
            host=url.raw_host,
            code="secret_origin_denied",
        )
