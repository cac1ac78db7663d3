"""The one seam where aiohttp's exceptions (and the OS errors it lets through) become ours.

``map_aiohttp_error`` turns any exception raised while talking to an upstream into a
``CalloutError`` with a stable ``code``. ``transport.py`` calls it from exactly one ``except``
clause; a test walks every exception class aiohttp exports and pins the code each one maps to.

Messages name the origin (``scheme://host:port``) and what happened, never the path, query,
headers or body of the request, which may carry credentials. The aiohttp exception itself is not
chained onto ours for the same reason: its ``str()`` often includes the full URL.

    code                  class              when
    dns_failure           NetworkError       the host name did not resolve
    connection_refused    NetworkError       nothing listens on the port
    connection_reset      NetworkError       the peer reset or cut the exchange (incl. mid-body)
    tls_error             NetworkError       handshake, certificate or fingerprint failure
    malformed_response    NetworkError       not valid HTTP, undecodable body, bad redirect target
    proxy_error           NetworkError       a proxy refused (Callout never configures one)
    too_many_redirects    NetworkError       aiohttp's own redirect limit (Callout redirects itself)
    network_error         NetworkError       any other transport failure
    connect_timeout       DeadlineExceeded   the connect phase's own shorter timeout passed
    timeout               DeadlineExceeded   any other timeout raised by the stack
    invalid_url           InvalidError       aiohttp refused the URL before sending
    invalid_request       InvalidError       aiohttp refused the request (e.g. a bad header value)
"""

from __future__ import annotations

import errno
import ssl

from aiohttp import client_exceptions as ce
from aiohttp import http_exceptions as he
from aiohttp.http_websocket import WebSocketError

from callout.errors import CalloutError, DeadlineExceeded, InvalidError, NetworkError

__all__ = ["TRANSPORT_ERRORS", "map_aiohttp_error"]

#: What the seam catches: everything aiohttp raises on the wire, and nothing of ours
#: (``CalloutError`` raised by the guarded resolver passes through unchanged).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    ce.ClientError,
    he.HttpProcessingError,
    OSError,  # includes TimeoutError and ssl.SSLError
    ValueError,  # aiohttp refuses some bad requests (a CR/LF in a header value) this way
)

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})


def _from_errno(exc: OSError, where: str) -> CalloutError:
    """Classify an OS-level failure by its errno."""
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return NetworkError(
            f"connection refused by {where}: nothing listens on that port; check the URL's port",
            code="connection_refused",
        )
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or exc.errno in _RESET_ERRNOS:
        return NetworkError(
            f"connection reset by {where}; the upstream closed the connection abruptly",
            code="connection_reset",
        )
    if exc.errno == errno.ETIMEDOUT:
        return DeadlineExceeded(f"connecting to {where} timed out", code="connect_timeout")
    reason = exc.strerror or type(exc).__name__
    return NetworkError(f"network failure talking to {where}: {reason}", code="network_error")


def map_aiohttp_error(exc: BaseException, *, origin: str | None = None) -> CalloutError:
    """Translate an exception raised by aiohttp (or the OS beneath it) into a ``CalloutError``.

    ``origin`` (``scheme://host:port``) is named in the message when given.
    """
    if isinstance(exc, CalloutError):
        return exc
    where = origin or "the upstream"

    # Timeouts first: ServerTimeoutError is also a ServerConnectionError and an OSError.
    if isinstance(exc, ce.ConnectionTimeoutError):
        return DeadlineExceeded(
            f"connecting to {where} timed out; the host may be down or filtered",
            code="connect_timeout",
        )
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded(f"{where} did not answer in time", code="timeout")

    # TLS before connector errors: the TLS classes subclass ClientConnectorError.
    if isinstance(
        exc,
        ce.ClientConnectorCertificateError
        | ce.ClientSSLError
        | ce.ServerFingerprintMismatch
        | ssl.SSLError
        | ssl.CertificateError,
    ):
        return NetworkError(
            f"TLS with {where} failed ({type(exc).__name__}); "
            "the certificate must be valid for the host name",
            code="tls_error",
        )
    if isinstance(exc, ce.ClientConnectorDNSError):
        return NetworkError(f"the host of {where} did not resolve", code="dns_failure")
    if isinstance(exc, ce.ClientProxyConnectionError | ce.ClientHttpProxyError):
        return NetworkError(f"a proxy refused the request to {where}", code="proxy_error")
    if isinstance(exc, ce.ClientConnectorError):
        return _from_errno(exc.os_error, where)

    if isinstance(exc, ce.ClientPayloadError):
        # aiohttp chains the parser's reason; a cut body (Content-Length or chunked framing
        # not satisfied) is a reset, an undecodable Content-Encoding is a malformed response.
        if isinstance(exc.__cause__, he.ContentEncodingError):
            return NetworkError(
                f"{where} sent a body that does not decode as its Content-Encoding says",
                code="malformed_response",
            )
        return NetworkError(
            f"connection to {where} was cut before the whole body arrived",
            code="connection_reset",
        )
    if isinstance(exc, ce.UploadAbortedError | ce.ClientConnectionResetError):
        return NetworkError(
            f"connection reset by {where} while the request was sent", code="connection_reset"
        )
    if isinstance(exc, ce.ServerDisconnectedError):
        return NetworkError(
            f"{where} closed the connection without sending a complete response",
            code="malformed_response",
        )

    if isinstance(exc, ce.TooManyRedirects):
        return NetworkError(f"too many redirects from {where}", code="too_many_redirects")
    if isinstance(exc, he.ContentLengthError):
        return NetworkError(
            f"connection to {where} was cut before the whole body arrived",
            code="connection_reset",
        )
    if isinstance(
        exc,
        ce.ClientResponseError  # the response parser's errors arrive wrapped in this
        | he.HttpProcessingError
        | ce.RedirectClientError
        | ce.WSMessageTypeError
        | WebSocketError,
    ):
        return NetworkError(f"{where} sent a malformed HTTP response", code="malformed_response")
    if isinstance(exc, ce.InvalidURL | ce.NonHttpUrlClientError):
        return InvalidError(
            "the URL is not a valid absolute http(s) URL", code="invalid_url", field="url"
        )

    if isinstance(exc, OSError):  # ClientOSError and what aiohttp lets through unwrapped
        return _from_errno(exc, where)
    if isinstance(exc, ValueError):
        # aiohttp's message may quote the offending header value: do not repeat it.
        return InvalidError(
            "the request was refused before sending: a header name or value is not valid HTTP",
            code="invalid_request",
            field="headers",
        )
    return NetworkError(
        f"network failure talking to {where} ({type(exc).__name__})", code="network_error"
    )
