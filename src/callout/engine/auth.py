"""Turning an auth config (ad-hoc or from a spec) into what a request carries.

One renderer for every auth kind, so the http and integration modes cannot drift apart:
``basic``, ``bearer``, ``header``, ``query`` and ``oauth2ClientCredentials`` (its token comes from
``OAuthTokens``, which fetches, caches per connection and refreshes one at a time).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from callout.errors import CalloutError, InvalidError, Outcome
from callout.integration import CompiledAuth
from callout.transport import InboundResponse, OutboundRequest

__all__ = ["NO_AUTH", "AppliedAuth", "OAuthTokens", "add_query_param", "render_auth"]

#: Refresh a token this long before it expires, so a call never carries a dying token.
REFRESH_MARGIN_S = 60.0
#: Lifetime assumed when a token endpoint gives no ``expires_in``.
DEFAULT_TOKEN_LIFETIME_S = 300.0

Send = Callable[[OutboundRequest], Awaitable[InboundResponse]]


@dataclass(frozen=True, slots=True)
class AppliedAuth:
    """What auth adds to a request, and the secret values it put there."""

    header: tuple[str, str] | None = None
    query: tuple[str, str] | None = None
    secrets: tuple[str, ...] = ()
    #: The header's name, lower case, as a request's ``secret_headers`` (empty without one).
    header_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = frozenset({self.header[0].lower()}) if self.header is not None else frozenset()
        object.__setattr__(self, "header_names", names)


NO_AUTH = AppliedAuth()


def render_auth(
    auth: CompiledAuth | None, scope: Mapping[str, Any], token: str | None = None
) -> AppliedAuth:
    """Render ``auth`` against ``scope``; for oauth2 the caller passes the fetched ``token``."""
    if auth is None or auth.kind == "none":
        return NO_AUTH
    values = {key: template.render(scope) for key, template in auth.templates.items()}
    if auth.kind == "basic":
        pair = f"{values['username']}:{values['password']}".encode()
        encoded = base64.b64encode(pair).decode("ascii")
        return AppliedAuth(
            ("Authorization", f"Basic {encoded}"), None, (values["password"], encoded)
        )
    if auth.kind == "bearer":
        return AppliedAuth(("Authorization", f"Bearer {values['token']}"), None, (values["token"],))
    if auth.kind == "header":
        return AppliedAuth(
            (auth.name or "Authorization", values["value"]), None, (values["value"],)
        )
    if auth.kind == "query":
        return AppliedAuth(None, (auth.name or "api_key", values["value"]), (values["value"],))
    if auth.kind == "oauth2ClientCredentials" and token is not None:
        return AppliedAuth(("Authorization", f"Bearer {token}"), None, (token,))
    raise InvalidError(f"auth type '{auth.kind}' is not supported here", code="bad_auth")


def add_query_param(url: str, name: str, value: str) -> str:
    """Append ``name=value`` (each percent-encoded as one component) before any fragment."""
    base, hash_, fragment = url.partition("#")
    sep = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return f"{base}{sep}{quote(name, safe='')}={quote(value, safe='')}{hash_}{fragment}"


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float  # time.monotonic()


class OAuthTokens:
    """OAuth2 client-credentials tokens, cached per connection revision and refreshed before
    expiry; concurrent calls share one refresh (a lock per connection)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, int], _Token] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def token(
        self,
        key: tuple[str, int],
        auth: CompiledAuth,
        scope: Mapping[str, Any],
        allowed_origins: frozenset[str] | None,
        send: Send,
    ) -> str:
        """A valid access token for connection ``key`` (id, revision), fetched if needed."""
        cached = self._tokens.get(key)
        if cached is not None and cached.expires_at - REFRESH_MARGIN_S > time.monotonic():
            return cached.value
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)  # another call may have refreshed it meanwhile
            if cached is not None and cached.expires_at - REFRESH_MARGIN_S > time.monotonic():
                return cached.value
            fresh = await self._fetch(auth, scope, allowed_origins, send)
            self._tokens[key] = fresh
            return fresh.value

    def forget(self, connection_id: str) -> None:
        """Drop a connection's tokens (after its credentials change)."""
        for key in [k for k in self._tokens if k[0] == connection_id]:
            self._tokens.pop(key, None)
            self._locks.pop(key, None)

    @staticmethod
    async def _fetch(
        auth: CompiledAuth,
        scope: Mapping[str, Any],
        allowed_origins: frozenset[str] | None,
        send: Send,
    ) -> _Token:
        values = {key: template.render(scope) for key, template in auth.templates.items()}
        form = {"grant_type": "client_credentials"}
        for name, key in (("scope", "scope"), ("audience", "audience")):
            if values.get(key):
                form[name] = values[key]
        basic = base64.b64encode(f"{values['clientId']}:{values['clientSecret']}".encode())
        request = OutboundRequest(
            method="POST",
            url=values["tokenUrl"],
            headers={
                "Authorization": f"Basic {basic.decode('ascii')}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            body=urlencode(form).encode(),
            secret_headers=frozenset({"authorization"}),
            secrets=(values["clientSecret"],),
            allowed_origins=allowed_origins,
        )
        response = await send(request)
        body = response.body
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status != 200 or not isinstance(token, str) or not token:
            error = CalloutError(
                f"the OAuth token endpoint answered {response.status} without an access_token; "
                "check the connection's client id, secret and token URL",
                code="oauth_token_failed",
            )
            # A refused or failing token endpoint routes like the status it gave.
            error.outcome = Outcome.from_status(response.status)
            raise error
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else None
        return _Token(token, time.monotonic() + (seconds or DEFAULT_TOKEN_LIFETIME_S))
