"""The one aiohttp client session: pooling, one deadline, size and depth caps, redirects, retries.

Threat model. The upstream is not trusted, and neither is any URL a redirect hands us. It may try
to make Callout connect to internal addresses (every hop passes the egress guard; the guarded
resolver pins the checked addresses), to collect credentials on another origin (they are dropped
on a change of origin, and a hop carrying a secret outside ``allowed_origins`` is refused), to
exhaust memory (the size cap counts decompressed bytes while streaming; JSON depth is capped), or
to hold a caller on the line (one deadline covers connect, every hop, every retry and backoff and
the body). Proxy environment variables, ``.netrc`` and cookies are ignored, so no state leaks
between calls: each hop is sent by ``_hop.send_hop`` on the session's connector, where none of
them is even looked up (the session's settings refuse them too). aiohttp's exceptions become
``CalloutError`` at one seam (``_http_errors``).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from callout._body import parse_body, read_body
from callout._hop import send_hop
from callout._http_errors import TRANSPORT_ERRORS, map_aiohttp_error
from callout._redirects import (
    BODY_HEADERS,
    ORIGIN_BOUND_HEADERS,
    check_secret_origin,
    origin_of,
    redirect_target,
    without_headers,
)
from callout.errors import CalloutError, DeadlineExceeded, InvalidError, NetworkError
from callout.guard import EgressPolicy, GuardedResolver, check_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_MS",
    "DEFAULT_MAX_JSON_DEPTH",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_POOL_LIMIT",
    "DEFAULT_TIMEOUT_MS",
    "IDEMPOTENT_METHODS",
    "MAX_ATTEMPTS",
    "MAX_RESPONSE_BYTES",
    "MAX_TIMEOUT_MS",
    "RETRY_STATUSES",
    "InboundResponse",
    "OutboundRequest",
    "RetryPolicy",
    "Transport",
    "TransportConfig",
    "map_aiohttp_error",
]

DEFAULT_TIMEOUT_MS = 8000
MAX_TIMEOUT_MS = 30000
DEFAULT_CONNECT_TIMEOUT_MS = 3000
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20
MAX_RESPONSE_BYTES = 10 << 20
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_MAX_REDIRECTS = 3
DEFAULT_POOL_LIMIT = 256
MAX_ATTEMPTS = 3

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Network failures that would fail the same way again: not retried.
_FINAL_CODES = frozenset({"response_too_large", "json_too_deep", "tls_error"})
_USER_AGENT = "Callout/0.1 (+apiCall)"
#: aiohttp rounds timeouts of at least ``ceil_threshold`` seconds up to a whole second; a
#: threshold no call reaches keeps the deadline exact.
_NO_CEIL = 3600.0
#: Loop-clock jitter tolerated when deciding that the deadline is what ended a call (it also
#: covers the millisecond a hop's timer is rounded down by).
_CLOCK_SLACK = 0.002
#: Hop timers kept for reuse, one per millisecond budget.
_TIMEOUTS_KEPT = 512


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Service-wide limits of the transport. The service may lower the defaults, not the caps."""

    #: The deadline of a call that names none (``timeoutMs``).
    default_timeout_ms: int = DEFAULT_TIMEOUT_MS
    #: The longest deadline a call may ask for (at most ``MAX_TIMEOUT_MS``).
    max_timeout_ms: int = MAX_TIMEOUT_MS
    #: The connect phase's own, shorter timeout (clipped to what is left of the deadline).
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS
    #: Decoded body bytes read before the call fails with ``response_too_large`` (<= 10 MiB).
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    #: JSON nesting deeper than this fails with ``json_too_deep``.
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: Redirect hops followed; the next 3xx is returned as the final response.
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    #: Connections in the keep-alive pool (no per-host limit).
    pool_limit: int = DEFAULT_POOL_LIMIT

    def __post_init__(self) -> None:
        _check_range("max_timeout_ms", self.max_timeout_ms, 1, MAX_TIMEOUT_MS)
        _check_range("default_timeout_ms", self.default_timeout_ms, 1, self.max_timeout_ms)
        _check_range("connect_timeout_ms", self.connect_timeout_ms, 1, MAX_TIMEOUT_MS)
        _check_range("max_response_bytes", self.max_response_bytes, 1, MAX_RESPONSE_BYTES)
        _check_range("max_json_depth", self.max_json_depth, 1, 512)
        _check_range("max_redirects", self.max_redirects, 0, 10)
        _check_range("pool_limit", self.pool_limit, 1, 1 << 16)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Opt-in retries (SPEC §3), all inside the call's one deadline.

    Only an idempotent method (``IDEMPOTENT_METHODS``) or a request carrying ``Idempotency-Key``
    is retried, and only after a connect timeout, a network failure that may be transient, or a
    status in ``RETRY_STATUSES``. The wait is exponential backoff with full jitter, at least what
    ``Retry-After`` asks; when the wait would pass the deadline, the call ends with what it has.
    """

    #: Attempts in all, the first included (1 = no retry; at most ``MAX_ATTEMPTS``).
    attempts: int = 1
    #: Backoff before the second attempt is drawn from [0, base]; the bound doubles each time.
    base_delay_ms: int = 100
    #: The bound on the drawn backoff (Retry-After may ask for longer).
    max_delay_ms: int = 2000

    def __post_init__(self) -> None:
        _check_range("attempts", self.attempts, 1, MAX_ATTEMPTS)
        _check_range("base_delay_ms", self.base_delay_ms, 0, MAX_TIMEOUT_MS)
        _check_range("max_delay_ms", self.max_delay_ms, 0, MAX_TIMEOUT_MS)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        bound = min(self.max_delay_ms, self.base_delay_ms << (attempt - 1)) / 1000
        delay = random.uniform(0, bound)  # noqa: S311 -- jitter, not security
        return delay if retry_after is None else max(delay, retry_after)


_NO_RETRY = RetryPolicy()
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class OutboundRequest(NamedTuple):
    """One rendered request, ready to send.

    This and ``InboundResponse`` are named tuples: immutable like a frozen dataclass, and built
    once a call at a fifth of its cost (a frozen dataclass sets each field through
    ``object.__setattr__``).
    """

    method: str
    #: Absolute http(s) URL, already rendered and encoded.
    url: str
    headers: Mapping[str, str] = _NO_HEADERS
    #: Already encoded; the caller sets Content-Type in ``headers``.
    body: bytes | None = None
    #: Lower-case names of headers carrying credentials (Authorization always counts).
    secret_headers: frozenset[str] = frozenset()
    #: Secret values in play (integration mode), for the secret-origin rule.
    secrets: tuple[str, ...] = ()
    #: ``scheme://host:port`` origins (default ports explicit) secrets may go to; None = any.
    allowed_origins: frozenset[str] | None = None


class InboundResponse(NamedTuple):
    """The final response of a call (after redirects and retries)."""

    status: int
    headers: Mapping[str, str]
    #: Parsed JSON, else text; None for an empty body.
    body: Any
    #: Decoded (decompressed) body bytes read.
    size: int
    #: The final URL, after redirects (read it as text through ``url``).
    final_url: URL | str
    attempts: int
    redirects: int
    duration_ms: float

    @property
    def url(self) -> str:
        """The final URL as text: made when read (~1 us for yarl to build it; calls rarely
        read it)."""
        return str(self.final_url)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` value asks for (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _may_retry(exc: CalloutError) -> bool:
    if isinstance(exc, NetworkError):
        return exc.code not in _FINAL_CODES
    # Only the connect phase's own timeout leaves time on the deadline to try again.
    return isinstance(exc, DeadlineExceeded) and exc.code == "connect_timeout"


def _replayable(request: OutboundRequest, method: str) -> bool:
    return method in IDEMPOTENT_METHODS or any(
        k.lower() == "idempotency-key" for k in request.headers
    )


def _stamped(exc: CalloutError, attempts: int) -> CalloutError:
    """A copy of ``exc`` for this call, carrying ``attempts``.

    Errors raised by the guarded resolver can reach several calls as one instance (aiohttp's
    DNS throttle hands the first lookup's exception to every waiter), so each call stamps its own.
    """
    own = type(exc).__new__(type(exc), *exc.args)
    own.__dict__.update(exc.__dict__)
    own.attempts = attempts
    return own.with_traceback(exc.__traceback__)


class Transport:
    """Sends ``OutboundRequest``s through one pooled, guarded aiohttp session.

    ``resolver`` is the base resolver under the guard (tests pass a ``StaticResolver``); the
    connector always resolves through ``GuardedResolver(policy, base=resolver)``.
    """

    def __init__(
        self,
        config: TransportConfig,
        policy: EgressPolicy,
        *,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self._base_resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._default_s = config.default_timeout_ms / 1000
        self._connect_s = config.connect_timeout_ms / 1000
        self._timeouts: dict[int, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Created lazily: a session binds to the running loop.
        connector = aiohttp.TCPConnector(
            limit=self.config.pool_limit,
            limit_per_host=0,
            resolver=GuardedResolver(self.policy, base=self._base_resolver),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # calls never see each other's cookies
            trust_env=False,  # proxy variables and .netrc are ignored (SPEC §5)
            auto_decompress=True,
            # Every request passes its own timeout, derived from the call's deadline.
            timeout=aiohttp.ClientTimeout(sock_connect=self._connect_s, ceil_threshold=_NO_CEIL),
            headers={"User-Agent": _USER_AGENT},
        )
        return self._session

    async def aclose(self) -> None:
        """Close the pool; a later ``send`` opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _budget(self, timeout_ms: object) -> float:
        if timeout_ms is None:
            return self._default_s
        limit = self.config.max_timeout_ms
        if type(timeout_ms) is not int or not 1 <= timeout_ms <= limit:
            raise InvalidError(
                f"timeoutMs must be an integer from 1 to {limit}, got {timeout_ms!r}",
                code="invalid_timeout",
                field="timeoutMs",
            )
        return timeout_ms / 1000

    async def send(
        self,
        request: OutboundRequest,
        *,
        timeout_ms: object = None,  # an int, or None for the default; anything else is refused
        retry: RetryPolicy | None = None,
    ) -> InboundResponse:
        """Send ``request`` and return the final response, whatever its status.

        Raises only ``CalloutError``: ``InvalidError`` (bad arguments, nothing sent),
        ``EgressDenied`` (blocked), ``NetworkError`` (with a code), ``DeadlineExceeded``.
        Every raised error carries ``attempts`` (attempts started; 0 when nothing was sent).
        """
        loop = asyncio.get_running_loop()
        start = deadline = loop.time()
        attempts = 0
        try:
            deadline += self._budget(timeout_ms)
            method = request.method.upper()
            url = check_url(request.url, self.policy)
            if request.allowed_origins is not None:
                check_secret_origin(request, url, request.headers, request.body)
            session = self._session or self._open()
            policy = retry or _NO_RETRY
            while True:
                attempts += 1
                try:
                    resp, data, final, hops = await self._exchange(
                        session, request, method, url, deadline
                    )
                except (NetworkError, DeadlineExceeded) as exc:
                    if attempts >= policy.attempts or not (
                        _may_retry(exc) and _replayable(request, method)
                    ):
                        raise
                    delay = policy.backoff(attempts, None)
                    if loop.time() + delay >= deadline:
                        raise
                else:
                    if (
                        resp.status not in RETRY_STATUSES
                        or attempts >= policy.attempts
                        or not _replayable(request, method)
                    ):
                        break
                    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
                    delay = policy.backoff(attempts, retry_after)
                    if loop.time() + delay >= deadline:
                        break  # the wait would pass the deadline: return what we have
                await asyncio.sleep(delay)
            headers = resp.headers
            body = parse_body(
                data, headers.get("Content-Type", ""), self.config.max_json_depth, final
            )
            # Every field, in order, by tuple.__new__: a named tuple's own __new__ is
            # interpreted Python, ~0.5 us a call with keywords (bench/RESULTS.md, fifteenth pass).
            took = (loop.time() - start) * 1000
            return tuple.__new__(
                InboundResponse,
                (resp.status, headers, body, len(data), final, attempts, hops, took),
            )
        except CalloutError as exc:
            if isinstance(exc, DeadlineExceeded) and loop.time() >= deadline - _CLOCK_SLACK:
                # Whichever timer fired (the hop's total, or a connect timeout clipped to what
                # was left), the call's one deadline is what ended it.
                exc = DeadlineExceeded(
                    f"the call to {origin_of(url)} did not finish within "
                    f"{round((deadline - start) * 1000)} ms; raise timeoutMs or make the "
                    "upstream answer faster"
                )
            raise _stamped(exc, attempts) from exc.__cause__

    def _timeout(self, remaining: float) -> aiohttp.ClientTimeout:
        """aiohttp's timer for a hop with ``remaining`` seconds left, rounded down to the
        millisecond: it never ends later than the deadline, and calls with the same budget share
        one object (an attrs-frozen ClientTimeout costs ~1.5 us to build)."""
        ms = int(remaining * 1000)
        if ms < 1:  # under a millisecond left: exactly that
            return aiohttp.ClientTimeout(
                total=remaining, sock_connect=remaining, ceil_threshold=_NO_CEIL
            )
        timeout = self._timeouts.get(ms)
        if timeout is None:
            if len(self._timeouts) >= _TIMEOUTS_KEPT:
                self._timeouts.clear()
            seconds = ms / 1000
            timeout = self._timeouts[ms] = aiohttp.ClientTimeout(
                total=seconds, sock_connect=min(self._connect_s, seconds), ceil_threshold=_NO_CEIL
            )
        return timeout

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: OutboundRequest,
        method: str,
        url: URL,
        deadline: float,
    ) -> tuple[aiohttp.ClientResponse, bytes, URL, int]:
        """One attempt: the request and its redirect hops; the final response and its body."""
        config = self.config
        loop = asyncio.get_running_loop()
        headers: Mapping[str, str] = request.headers
        body = request.body
        hops = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:  # aiohttp reads a total of 0 as "no timeout"
                raise DeadlineExceeded("the deadline passed between redirect hops")
            # The hop's timer is armed until its connection is released, so it also bounds the
            # body read. It is the same loop-time deadline for every hop and attempt: aiohttp's
            # timer costs a raw client loop the same (its default total is 300 s), where an
            # extra asyncio.timeout around the call cost ~7 us a call.
            timeout = self._timeout(remaining)
            try:
                resp = await send_hop(session, method, url, headers, body, timeout)
                status = resp.status
                location = resp.headers.get("Location")
                if status not in REDIRECT_STATUSES or hops >= config.max_redirects or not location:
                    data = await read_body(resp, method, config.max_response_bytes, url)
                    return resp, data, url, hops
                resp.release()  # a redirect's body is not read; the connection is closed
            except TRANSPORT_ERRORS as exc:
                # The one seam: nothing of aiohttp's leaves this module.
                raise map_aiohttp_error(exc, origin=origin_of(url)) from None

            target = redirect_target(url, location, self.policy)
            hops += 1
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = without_headers(headers, BODY_HEADERS)
            if origin_of(target) != origin_of(url):
                headers = without_headers(headers, ORIGIN_BOUND_HEADERS | request.secret_headers)
            check_secret_origin(request, target, headers, body)
            url = target
