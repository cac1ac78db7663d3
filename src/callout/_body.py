"""Bounded reading of a response body, and parsing it as JSON or text (SPEC §3).

The size cap counts decoded (decompressed) bytes and is enforced while streaming, so an
oversized or endless body is never held past the cap. On a compressed body this relies on
aiohttp >= 3.12 decompressing per network chunk: ``DeflateBuffer.feed_data`` (http_parser.py)
passes ``max_length=max(read_bufsize, low_water)`` to the decompressor and the stream pauses the
socket above its high-water mark, so each ``readany()`` returns at most about 1 MiB of output
however dense the input. That bound holds only while nobody calls ``content.read()`` with no
size: ``StreamReader.read(-1)`` lifts the limit (``set_read_chunk_size(sys.maxsize)``) and a gzip
bomb would then inflate whole. Hence ``resp.read()`` is used only for an identity-encoded body
whose Content-Length is known and under the cap (the parser never feeds past Content-Length).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import aiohttp
from yarl import URL

from callout._redirects import origin_of
from callout.errors import NetworkError

__all__ = ["json_too_deep", "parse_body", "read_body", "too_large"]

#: Responses that never carry a body whatever their headers say (RFC 9110 §6.4.1).
_BODYLESS_STATUSES = frozenset({204, 304})
_CONTAINERS = (dict, list)
_JSON_SPACE = " \t\n\r"
#: The C scanner under ``json.loads``: calling it directly skips two Python layers (half the
#: cost of parsing a typical small response). Anything it does not take cleanly at offset 0
#: (leading whitespace, a BOM, no JSON at all) goes through ``json.loads`` for its exact rules.
#: (``scan_once`` is set in ``JSONDecoder.__init__``; typeshed does not declare it.)
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def too_large(url: URL, cap: int) -> NetworkError:
    """The error for a body past the size cap."""
    return NetworkError(
        f"the response from {origin_of(url)} is larger than the {cap}-byte cap; "
        "ask the API for less data (paging, filters) or raise the cap",
        code="response_too_large",
    )


def json_too_deep(url: URL, limit: int) -> NetworkError:
    """The error for JSON nested past the depth cap (refused like an oversized body)."""
    return NetworkError(
        f"the JSON response from {origin_of(url)} is nested deeper than {limit} levels",
        code="json_too_deep",
    )


async def read_body(resp: aiohttp.ClientResponse, method: str, cap: int, url: URL) -> bytes:
    """Read the whole decoded body, never holding more than about ``cap`` bytes of it.

    Raises NetworkError(code="response_too_large") as soon as the cap is passed, before reading
    at all when an identity-encoded body declares a larger Content-Length. aiohttp errors
    propagate for the caller's seam; the connection is closed on any failure.
    """
    headers = resp.headers
    length = headers.get("Content-Length")
    if (
        length is not None
        and "Content-Encoding" not in headers
        and "Transfer-Encoding" not in headers
        and method != "HEAD"
        and resp.status not in _BODYLESS_STATUSES
    ):
        # The parser has validated Content-Length as digits and feeds exactly that many bytes.
        if int(length) > cap:
            resp.close()
            raise too_large(url, cap)
        return await resp.read()  # closes the connection itself on failure

    content = resp.content
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := await content.readany():
            size += len(chunk)
            if size > cap:
                break
            parts.append(chunk)
    except BaseException:
        resp.close()  # an unread remainder must not go back to the pool
        raise
    if size > cap:
        resp.close()
        raise too_large(url, cap)
    return b"".join(parts)


@lru_cache(maxsize=256)
def _charset(content_type: str) -> str:
    """The charset a Content-Type header value declares, UTF-8 when it declares none."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and (value := value.strip(' "')):
            return value.lower()
    return "utf-8"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether parsed JSON nests containers more than ``limit`` levels (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, _CONTAINERS))
    return False


def parse_body(data: bytes, content_type: str, max_depth: int, url: URL) -> Any:
    """Parsed JSON when the body is JSON, else text; None for an empty body.

    Any body that parses as JSON is JSON, whatever its Content-Type says (SPEC §3: "by content
    type, or when it parses"), so a JSON-typed body that does not parse stays text. Text is
    decoded with the declared charset (UTF-8 by default), replacing undecodable bytes.
    JSON nested deeper than ``max_depth`` raises NetworkError(code="json_too_deep").
    """
    if not data:
        return None
    try:
        text = data.decode(_charset(content_type), errors="replace")
    except LookupError:  # an unknown charset name
        text = data.decode("utf-8", errors="replace")
    try:
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            value, end = json.loads(text), len(text)
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            return text  # JSON followed by something else is not JSON
    except RecursionError:
        raise json_too_deep(url, max_depth) from None
    except ValueError:
        return text
    # Depth can only pass the limit when there are more brackets than the limit: keep the
    # common small-body path to two C-speed counts.
    if (
        isinstance(value, _CONTAINERS)
        and text.count("[") + text.count("{") > max_depth
        and _deeper_than(value, max_depth)
    ):
        raise json_too_deep(url, max_depth)
    return value
