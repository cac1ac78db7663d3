"""Secret scrubbing for run history, logs, error messages and API responses.

Threat: credential disclosure. Callout holds live credentials (a connection's decrypted secrets,
the ad-hoc auth values of a flow) while it calls an API, and everything it writes afterwards (run
history, log lines, ``httpError`` messages, "try it" responses) is read by people and systems that
must never learn them. A secret leaks not only verbatim but *encoded*: inside a Basic header's
base64, percent-encoded in a URL, escaped in a JSON or XML body, or echoed back by an upstream.
A ``Scrubber`` replaces every occurrence of every secret, in each of these forms, with ``MASK``:

- as is; percent-encoded (``quote`` with several safe sets, ``quote_plus``; upper- and lower-case
  hex); JSON-escaped (``ensure_ascii`` on and off, upper-case ``\\uXXXX``, ``\\/``, and JSON inside
  a JSON string, as an upstream echoing a request body produces); HTML/XML-escaped
  (``html.escape`` with and without ``quote``, ``&#39;``/``&apos;``/``&#34;``, numeric references);
- base64 and base64url, padded or not, at any alignment inside a longer run. ``base64("user:" +
  secret)`` contains the secret's own encoding only when the prefix length is a multiple of 3, so
  for each alignment (0, 1 or 2 foreign bytes before it, for the UTF-8 and Latin-1 bytes of the
  secret) we compute the *stable middle*: the characters whose 6 bits all come from the secret and
  so do not depend on the neighbouring bytes. Finding a stable middle masks the whole run of
  base64/base64url characters around it and its ``=`` padding, so the boundary characters, which
  mix secret bits with their neighbours', go too (in a URL path the run may take whole segments);
- ``Bearer <token>`` and ``Basic <base64 of user:password>`` in free text, registered or not (an
  upstream echoing the Authorization header). A Bearer value that reads as a plain word ("Bearer
  tokens", so also an all-lower-case token) and a Basic value that does not decode to
  ``user:password`` are left alone.

Occurrences may overlap (one secret inside another, "abcd1234" next to "1234wxyz"): every
occurrence of every form is found and the union of their spans is masked, so nothing is left
half-visible. Matching is literal ``str.find``, never a regular expression built from a secret: on
CPython a compiled alternation costs 0.5-1 ms to build (a ``Scrubber`` is built per call), scans
slower than a few ``find`` calls, and ``re`` keeps the pattern, hence the secret, in its module
cache after the call. The work stays linear on hostile input: a stretch of overlapping occurrences
("aaaa" in a megabyte of "a") is taken whole, and each base64 run is widened once.

Data bound for storage is checked before it is copied: ``to_json`` encodes a value first and
walks it (``data()``) only when the JSON text holds one of the strings ``text()`` starts from.

Header values and URL query parameters whose *name* marks them as credentials are masked whole
(``is_sensitive_header``, ``is_sensitive_param``), as is userinfo in a URL.

Limits: a secret shorter than ``MIN_SECRET_LENGTH`` is refused (masking it would damage unrelated
text); mixed-case percent hex, base64 wrapped over lines or itself percent-encoded, and encodings
of encodings beyond the ones above are not recognised; scrub *before* truncating, or a secret cut in
half stays half-visible.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import string
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote_plus

from callout._jsontext import dumps as _strict_json
from callout.errors import InvalidError

if TYPE_CHECKING:
    from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "NULL_SCRUBBER",
    "Scrubber",
    "SecretTooShortError",
    "is_sensitive_header",
    "is_sensitive_param",
    "register_secrets",
    "scrubber_for",
    "structlog_processor",
    "validate_secret",
]

MASK = "[REDACTED]"
MIN_SECRET_LENGTH = 4
#: Containers nested deeper than this are masked whole rather than walked (JSON stops at 64).
MAX_DEPTH = 100

_PLAIN_RUN = re.compile(r"[A-Za-z0-9._~-]+")  # characters that no encoding here changes
_B64_CHARS = string.ascii_letters + string.digits + "+/-_"
_PERCENT_SAFE_SETS = ("", "/", "!'()*", ":/?#[]@!$&'()*+,;=")  # component, path, JS, encodeURI
_JSON_ENCODERS = (json.JSONEncoder().encode, json.JSONEncoder(ensure_ascii=False).encode)
_JSON_HEX = re.compile(r"\\u[0-9a-f]{4}")
_AUTH_SCHEMES = (  # mixed-case spellings ("bEaRer") are not recognised
    re.compile(r"B(?:earer|EARER|asic|ASIC)[ \t]+([A-Za-z0-9._~+/-]+=*)"),
    re.compile(r"b(?:earer|asic)[ \t]+([A-Za-z0-9._~+/-]+=*)"),
)
_PLAIN_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+")
_AUTHORITY_END = re.compile(r"[/?#]")
_AUTH_MARKERS = ("earer", "asic", "EARER", "ASIC")  # text() looks for a credential only after one


class SecretTooShortError(InvalidError, ValueError):
    """A secret is too short to be masked without damaging unrelated text (outcome invalid)."""

    code = "secret_too_short"


def validate_secret(name: str, value: str) -> None:
    """Refuse a secret value that could not be scrubbed safely; call it where secrets come in."""
    if len(value) < MIN_SECRET_LENGTH:
        raise SecretTooShortError(
            f"secret {name!r} is too short: secrets must be at least {MIN_SECRET_LENGTH} "
            "characters so that masking them cannot damage unrelated text",
            field=name,
        )


def _lower_hex(encoded: str) -> str:
    """``%C3%A4`` -> ``%c3%a4``: after quote(), every ``%`` starts an escape."""
    head, *escapes = encoded.split("%")
    return "%".join([head, *(e[:2].lower() + e[2:] for e in escapes)])


def _text_forms(secret: str) -> frozenset[str]:
    """Every spelling of ``secret`` except base64 (see the module docstring)."""
    percent = {quote(secret, safe=safe) for safe in _PERCENT_SAFE_SETS}
    percent |= {quote_plus(secret, safe=""), quote_plus(secret, safe="/")}
    forms = {secret, *percent, *map(_lower_hex, percent)}
    for encode in _JSON_ENCODERS:
        escaped = encode(secret)[1:-1]
        forms |= {
            escaped,
            escaped.replace("/", "\\/"),
            _JSON_HEX.sub(lambda m: "\\u" + m[0][2:].upper(), escaped) if "\\u" in escaped else "",
            encode(escaped)[1:-1],  # JSON text inside a JSON string: an echoed request body
        }
    for quote_quotes in (True, False):
        escaped = html.escape(secret, quote=quote_quotes)
        for variant in (
            escaped,
            escaped.replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
            escaped.replace("&#x27;", "&apos;"),
        ):
            forms.add(variant)
            forms.add(variant.encode("ascii", "xmlcharrefreplace").decode("ascii"))
    forms.discard("")
    return frozenset(forms)


def _base64_middles(secret: str) -> frozenset[str]:
    """The stable middles of the secret's base64 encoding at each alignment, both alphabets."""
    encodings = {secret.encode("utf-8")}
    with suppress(UnicodeEncodeError):
        encodings.add(secret.encode("latin-1"))  # aiohttp's BasicAuth default
    middles = set()
    for raw in encodings:
        for skew in range(3):
            # Character j covers bits [6j, 6j+6); the secret's bits are [8*skew, 8*(skew+len)).
            encoded = base64.b64encode(b"\0" * skew + raw + b"\0\0").decode("ascii")
            middle = encoded[-(-8 * skew // 6) : 8 * (skew + len(raw)) // 6]
            middles.add(middle)
            middles.add(middle.replace("+", "-").replace("/", "_"))
    return frozenset(middles)


def _check(secret: str) -> None:
    if len(secret) < MIN_SECRET_LENGTH:
        raise SecretTooShortError(
            f"a secret value is too short to scrub: secrets must be at least {MIN_SECRET_LENGTH} "
            "characters; check auth values with validate_secret() where they are entered",
        )


def _find_all(value: str, needle: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Append the span of every occurrence of ``needle``, overlapping ones merged."""
    start = value.find(needle)
    while start != -1:
        end = start + len(needle)
        after = value.find(needle, start + 1)  # start + 1, not end: occurrences may overlap
        if after != -1 and after < end:
            # Overlap means the text repeats with period `after - start` here: take the whole
            # periodic stretch at once, so "aaaa" in a megabyte of "a" costs a few comparisons.
            period = after - start
            last = start + (_periodic_end(value, start, period) - end) // period * period
            end = last + len(needle)
            after = value.find(needle, last + 1)
        spans.append((start, end))
        start = after
    return spans


def _periodic_end(value: str, start: int, period: int) -> int:
    """The end of the stretch from ``start`` in which ``value[i] == value[i - period]``."""
    end, size = start + period, 64
    while end < len(value):
        size = min(size, len(value) - end)
        if value[end : end + size] == value[end - period : end - period + size]:
            end, size = end + size, size * 2
        elif size > 1:
            size //= 2
        else:
            break
    return end


def _base64_run(value: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to the whole run of base64 characters, padding included."""
    while start > 0:
        low = max(0, start - 64)
        kept = value[low:start].rstrip(_B64_CHARS)
        start = low + len(kept)
        if kept:
            break
    while end < len(value):
        chunk = value[end : end + 64]
        rest = chunk.lstrip(_B64_CHARS)
        end += len(chunk) - len(rest)
        if rest:
            break
    padding = len(value[end : end + 2]) - len(value[end : end + 2].lstrip("="))
    return start, end + padding


def _is_basic_credential(value: str) -> bool:
    body = value.rstrip("=")
    if len(body) % 4 == 1:
        return False
    try:
        raw = base64.b64decode(
            body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        return False
    return b":" in raw


def _credential_spans(value: str, spans: list[tuple[int, int]]) -> None:
    """Spans of ``Bearer x`` / ``Basic x`` credentials in free text (the value, not the word)."""
    for pattern in _AUTH_SCHEMES:
        for match in pattern.finditer(value):
            before = value[match.start() - 1] if match.start() else " "
            credential = match[1].rstrip(".")
            if before.isalnum() or before == "_" or not credential:
                continue
            if match[0][1] in "aA":
                if not _is_basic_credential(credential):
                    continue
            elif _PLAIN_WORD.fullmatch(credential.rstrip("=")):
                continue
            spans.append((match.start(1), match.start(1) + len(credential)))


def _masked(value: str, spans: list[tuple[int, int]]) -> str:
    spans.sort()
    out: list[str] = []
    done = 0
    start, end = spans[0]
    for s, e in spans[1:]:
        if s <= end:
            end = max(end, e)
            continue
        out += (value[done:start], MASK)
        done, start, end = end, s, e
    out += (value[done:start], MASK, value[end:])
    return "".join(out)


_SENSITIVE_WORDS = frozenset((
    "auth", "authorization", "key", "pwd", "pass", "sig", "session", "sid", "jwt", "otp",
    "verifier",
))  # fmt: skip
_SENSITIVE_ENDINGS = (
    "token", "apikey", "signature", "credential", "credentials", "cookie", "sessionid", "sessid",
)  # fmt: skip
_SENSITIVE_ANYWHERE = ("passw", "passphrase", "secret")
_NEVER_SENSITIVE = frozenset({"idempotency-key"})  # the spec's retry key, shown in history
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=2048)  # header names repeat on every call; the word split costs ~5 us
def is_sensitive_header(name: str) -> bool:
    """Whether a header (or log/body key) of this name carries a credential, case-insensitively.

    The name is split into words (``X-Api-Key``, ``x_api_key`` and ``xApiKey`` alike). It is
    sensitive when any word contains ``passw``, ``passphrase`` or ``secret``, or when its last
    non-numeric word (what the name *is*: ``token_count`` is a count, ``access_token`` a token,
    ``api_key_id`` an id) is one of auth, authorization, key, pwd, pass, sig, session, sid, jwt,
    otp, verifier, or ends in token, apikey, signature, credential(s), cookie or sess(ion)id. So
    ``Authorization``, ``Cookie``, ``Set-Cookie``, ``X-Amz-Security-Token``,
    ``X-Hub-Signature-256`` and every ``*-Key`` (``X-Request-Key`` included: a harmless value
    masked costs less than a key shown) are sensitive; ``Idempotency-Key``, ``token_type`` and
    ``x-ratelimit-remaining-tokens`` are not.
    """
    words = [w for w in _NON_ALNUM.split(_CAMEL.sub("-", name).lower()) if w]
    if not words or "-".join(words) in _NEVER_SENSITIVE:
        return False
    if any(marker in word for word in words for marker in _SENSITIVE_ANYWHERE):
        return True
    named = [w for w in words if not w.isdigit()] or words
    head = named[-1]
    if head in _SENSITIVE_WORDS or head.endswith(_SENSITIVE_ENDINGS):
        return True
    return len(named) > 1 and named[-2:] == ["session", "id"]


def is_sensitive_param(name: str) -> bool:
    """Whether a query parameter of this (decoded) name carries a credential.

    The header rule, plus ``code``: an OAuth authorization code, and the function key of Azure
    Functions URLs.
    """
    return name.strip().lower() == "code" or is_sensitive_header(name)


@lru_cache(maxsize=2048)  # parameter names repeat on every call, as header names do
def _is_sensitive_raw_param(name: str) -> bool:
    return is_sensitive_param(unquote_plus(name))


def _masked_params(query: str) -> str:
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and _is_sensitive_raw_param(name):
            parts[i] = f"{name}={MASK}"
    return "&".join(parts)


def _brackets(text: str) -> int:
    """At least the number of containers in the JSON ``text`` (brackets in strings count too)."""
    return text.count("[") + text.count("{")


class Scrubber:
    """Built once per call from the secrets in play; immutable; cheap to apply."""

    __slots__ = ("_base64", "_blind", "_needles", "_secrets", "_text")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Empty strings are ignored; a secret shorter than 4 raises ``SecretTooShortError``."""
        unique = tuple(dict.fromkeys(s for s in secrets if s))
        for secret in unique:
            _check(secret)
        self._secrets = unique
        text: list[tuple[str, tuple[str, ...]]] = []
        for secret in sorted(unique, key=len, reverse=True):
            # Every non-base64 form keeps the secret's plain characters, so its longest plain run
            # is a cheap pre-check for all of them ("" when it has none: always search).
            anchor = max(_PLAIN_RUN.findall(secret), key=len, default="")
            if anchor == secret:  # all plain: every form is the secret itself
                text.append(("", (secret,)))
            else:
                text.append((anchor, tuple(sorted(_text_forms(secret), key=len, reverse=True))))
        self._text = tuple(text)
        self._base64 = tuple(sorted({m for s in unique for m in _base64_middles(s)}))
        # What text() must find before it masks anything (see to_json); all of it is printable
        # ASCII other than a quote or a backslash, which JSON never escapes. A secret with no
        # plain character has no such anchor, so with one every value is walked.
        anchors = [anchor or forms[0] for anchor, forms in text]
        self._blind = any(not _PLAIN_RUN.search(secret) for secret in unique)
        self._needles = (*dict.fromkeys(anchors), *self._base64, *_AUTH_MARKERS)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets this scrubber removes, deduplicated, in the order given."""
        return self._secrets

    def __repr__(self) -> str:
        return f"<Scrubber of {len(self._secrets)} secrets>"  # never the values

    def text(self, value: str) -> str:
        """``value`` with every secret, in every form, and every Bearer/Basic credential masked."""
        spans: list[tuple[int, int]] = []
        for anchor, forms in self._text:
            if anchor in value:
                for form in forms:
                    if form in value:
                        _find_all(value, form, spans)
        for middle in self._base64:
            start = value.find(middle)
            while start != -1:
                start, end = _base64_run(value, start, start + len(middle))
                spans.append((start, end))
                start = value.find(middle, end)  # any later hit inside this run adds nothing
        if "earer" in value or "asic" in value or "EARER" in value or "ASIC" in value:
            _credential_spans(value, spans)  # _AUTH_MARKERS, spelled out: faster
        return _masked(value, spans) if spans else value

    def to_json(self, value: Any) -> str:
        """``json.dumps(self.data(value), allow_nan=False)``, raising what that raises, but
        without the deep copy when there is nothing to scrub.

        ``value`` is encoded first. ``text()`` masks nothing in a string unless the string holds
        one of its needles: a secret's anchor (its longest run of characters that no encoding
        changes, which every non-base64 form keeps; an all-plain secret is its own anchor), a
        base64 middle, or a Bearer/Basic marker. JSON writes each of those characters as is, so
        a needle in any string of ``value``, key or value, at any depth, is a needle in the
        encoded text. When the text holds none (and has fewer than ``MAX_DEPTH`` brackets, so
        no container is deep enough to be masked whole), ``data(value)`` would equal
        ``value``, and the text is returned. Otherwise, or when ``value`` is not strict JSON
        as it is (bytes, sets, NaN), it is copied and scrubbed first, as ``data()`` does.
        """
        try:
            encoded = _strict_json(value)
        except (TypeError, ValueError, RecursionError):  # RecursionError: a cycle, or very deep
            encoded = ""
        if not encoded or self._may_hold(encoded) or _brackets(encoded) >= MAX_DEPTH:
            return json.dumps(self.data(value), allow_nan=False)  # checks cycles, unlike the other
        return encoded

    def _may_hold(self, text: str) -> bool:
        """Whether ``text`` holds anything ``text()`` looks for (False proves it masks nothing
        in ``text`` or in any string whose JSON encoding lies inside it)."""
        if self._blind:
            return True
        for needle in self._needles:  # noqa: SIM110  -- a loop: any() over a generator is slower
            if needle in text:
                return True
        return False

    def error_message(self, message: str) -> str:
        """An error message fit to show: ``text()``, named for its call sites."""
        return self.text(message)

    def url(self, url: str) -> str:
        """``url`` with userinfo and sensitive query or fragment parameter values masked."""
        scheme, sep, rest = url.partition("://")
        if sep:
            found = _AUTHORITY_END.search(rest)
            authority_end = found.start() if found else len(rest)
            if "@" in rest[:authority_end]:
                host = rest[:authority_end].rpartition("@")[2]
                rest = f"{MASK}@{host}{rest[authority_end:]}"
            url = scheme + sep + rest
        url, hash_sign, fragment = url.partition("#")
        url, question, query = url.partition("?")
        if question:
            url += question + _masked_params(query)
        if hash_sign:
            url += hash_sign + _masked_params(fragment)  # OAuth implicit flow: #access_token=...
        return self.text(url)

    def headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
        """Headers fit to show: sensitive values masked whole, others scrubbed; repeats joined."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        out: dict[str, str] = {}
        spelled: dict[str, str] = {}  # lower-case name -> the first spelling seen
        for name, value in items:
            shown = MASK if is_sensitive_header(name) else self.text(value)
            key = spelled.setdefault(name.lower(), self.text(name))
            out[key] = f"{out[key]}, {shown}" if key in out else shown
        return out

    def data(self, value: Any, *, mask_sensitive_keys: bool = False) -> Any:
        """A scrubbed deep copy: dict keys and values, lists, tuples, sets and strings.

        Other values are returned unchanged; bytes become scrubbed text. With
        ``mask_sensitive_keys``, the whole value under a key that ``is_sensitive_header`` names a
        credential is masked. Containers nested deeper than ``MAX_DEPTH`` become ``MASK``.
        """
        return _Copy(self, mask_keys=mask_sensitive_keys, stringify=False).walk(value)


class _Copy:
    """One deep scrubbing copy: a depth-capped walk with a memo for shared and cyclic parts."""

    def __init__(self, scrubber: Scrubber, *, mask_keys: bool, stringify: bool) -> None:
        self.text = scrubber.text
        self.mask_keys = mask_keys
        self.stringify = stringify  # render foreign objects with str() (log events)
        self.memo: dict[tuple[int, bool], tuple[Any, Any]] = {}

    def walk(self, value: Any, hidden: bool = False, depth: int = 0) -> Any:
        if isinstance(value, str):
            return MASK if hidden else self.text(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return MASK if hidden else value
        if isinstance(value, bytes | bytearray):
            return MASK if hidden else self.text(bytes(value).decode("utf-8", "backslashreplace"))
        if not isinstance(value, Mapping | list | tuple | set | frozenset):
            if hidden:
                return MASK
            return self.text(str(value)) if self.stringify else value
        if depth >= MAX_DEPTH:
            return MASK
        seen = self.memo.get((id(value), hidden))
        if seen is not None:  # shared or cyclic: reuse the copy, which bounds the work
            return seen[1]
        if isinstance(value, Mapping):
            result: Any = {}
            self.memo[id(value), hidden] = (value, result)
            for k, v in value.items():
                hide = hidden or (self.mask_keys and isinstance(k, str) and is_sensitive_header(k))
                key = self.text(k) if isinstance(k, str) else k
                result[key] = self.walk(v, hide, depth + 1)
            return result
        if isinstance(value, list):
            result = []
            self.memo[id(value), hidden] = (value, result)
            result.extend(self.walk(v, hidden, depth + 1) for v in value)
            return result
        items = [self.walk(v, hidden, depth + 1) for v in value]
        if isinstance(value, tuple):
            result = tuple(items)
        else:
            result = frozenset(items) if isinstance(value, frozenset) else set(items)
        self.memo[id(value), hidden] = (value, result)
        return result


#: No secrets; still masks sensitive headers, parameters, userinfo and Bearer/Basic credentials.
NULL_SCRUBBER = Scrubber()


@lru_cache(maxsize=256)
def scrubber_for(secrets: tuple[str, ...]) -> Scrubber:
    """A scrubber of ``secrets``, shared by the calls that use the same ones.

    Building one costs ~6 us for a plain secret and ~35 us with a Basic pair (its base64 forms),
    which a node with fixed credentials would otherwise pay on every call. The cache holds at
    most 256 sets of values this process already holds in memory (decrypted connections, flow
    scopes); it never logs or exposes them.
    """
    return Scrubber(secrets)


class _Registry:
    """The process-wide set of live secrets, reference-counted, for the default log processor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._scrubber: Scrubber | None = NULL_SCRUBBER

    def scrubber(self) -> Scrubber:
        scrubber = self._scrubber
        if scrubber is None:
            with self._lock:  # rebuilt lazily, at the first log line after a change
                if self._scrubber is None:
                    self._scrubber = Scrubber(self._counts)
                scrubber = self._scrubber
        return scrubber

    def add(self, secrets: tuple[str, ...]) -> None:
        with self._lock:
            for secret in secrets:
                self._counts[secret] = self._counts.get(secret, 0) + 1
                if self._counts[secret] == 1:
                    self._scrubber = None

    def remove(self, secrets: tuple[str, ...]) -> None:
        with self._lock:
            for secret in secrets:
                self._counts[secret] -= 1
                if not self._counts[secret]:
                    del self._counts[secret]
                    self._scrubber = None


_REGISTRY = _Registry()


@contextmanager
def register_secrets(secrets: Iterable[str]) -> Iterator[None]:
    """Add ``secrets`` to the process-wide set that log lines are scrubbed of, for the block.

    Thread-safe and reference-counted: a secret stays registered until every block that added it
    has left. Each change rebuilds the shared scrubber at the next log line, and every log string
    is searched for every live secret, so many concurrent calls make logging dearer; a processor
    given ``scrubber_for_event`` (the current call's scrubber) avoids both.
    """
    held = tuple(dict.fromkeys(s for s in secrets if s))
    for secret in held:
        _check(secret)
    _REGISTRY.add(held)
    try:
        yield
    finally:
        _REGISTRY.remove(held)


def structlog_processor(scrubber_for_event: Callable[[], Scrubber] | None = None) -> Processor:
    """A structlog processor that scrubs every string in the event dict, recursively.

    Values under credential-like keys (``is_sensitive_header``) are masked whole; objects that are
    not JSON data are rendered with ``str()`` and scrubbed. It uses ``scrubber_for_event()``, or
    by default everything ``register_secrets`` holds at that moment. Put it last, just before the
    renderer (after ``format_exc_info``), so that nothing added later escapes it.
    """

    def scrub_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        scrubber = scrubber_for_event() if scrubber_for_event else _REGISTRY.scrubber()
        scrubbed: EventDict = _Copy(scrubber, mask_keys=True, stringify=True).walk(event_dict)
        return scrubbed

    return scrub_event
