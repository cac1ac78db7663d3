"""Secret scrubbing: every form of every secret, sensitive names, URLs, deep data and log lines."""

from __future__ import annotations

import base64
import html
import io
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import structlog
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from callout.errors import InvalidError
from callout.scrub import (
    MASK,
    MAX_DEPTH,
    NULL_SCRUBBER,
    Scrubber,
    SecretTooShortError,
    is_sensitive_header,
    is_sensitive_param,
    register_secrets,
    scrubber_for,
    structlog_processor,
    validate_secret,
)

SECRET = "sk_live_4eC39HqLyjWDarjt"

SECRETS = [
    pytest.param("sk_live_4eC39HqLyjWDarjt", id="ascii"),
    pytest.param("a.b*c+(d)", id="regex-metacharacters"),
    pytest.param("ab+/=c d==", id="plus-slash-equals-space"),
    pytest.param("pässwörd", id="non-ascii"),
    pytest.param("q\"uo\\te's\n", id="quotes-backslash-newline"),
    pytest.param("<x&y>'\"z", id="xml-specials"),
    pytest.param("\U0001f600emoji-key", id="astral"),
]


def lower_hex(encoded: str) -> str:
    head, *escapes = encoded.split("%")
    return "%".join([head, *(e[:2].lower() + e[2:] for e in escapes)])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "quote-component": lambda s: quote(s, safe=""),
    "quote-path": lambda s: quote(s, safe="/"),
    "quote_plus": quote_plus,
    "quote-lower-hex": lambda s: lower_hex(quote(s, safe="")),
    "quote_plus-lower-hex": lambda s: lower_hex(quote_plus(s)),
    "json": lambda s: json.dumps(s)[1:-1],
    "json-utf8": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "json-in-json": lambda s: json.dumps(json.dumps(s)[1:-1])[1:-1],
    "html": html.escape,
    "html-no-quote": lambda s: html.escape(s, quote=False),
    "xml-apos": lambda s: html.escape(s).replace("&#x27;", "&apos;"),
    "base64": lambda s: b64(s.encode()),
    "base64url-unpadded": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("secret", SECRETS)
def test_every_form_of_a_secret_is_masked(secret: str, form: str) -> None:
    """Each encoded form of each secret is replaced by the mask; the text around it stays."""
    encoded = FORMS[form](secret)
    out = Scrubber([secret]).text(f"before {encoded} after")
    assert encoded not in out
    assert out.startswith("before ")
    assert out.endswith(" after")


def test_latin1_base64_of_a_non_ascii_secret_is_masked() -> None:
    """aiohttp encodes BasicAuth as Latin-1 by default: that base64 is masked too."""
    pair = b64("ann:pässwörd".encode("latin-1"))
    assert Scrubber(["pässwörd"]).text(f"echo {pair} end") == f"echo {MASK} end"


def test_regex_metacharacters_are_literal() -> None:
    """A secret with regex metacharacters matches only itself, never what it would match as a
    pattern."""
    text = "aXbbbc+(d) aXb*c+(d) a.b*c+(d)"
    assert Scrubber(["a.b*c+(d)"]).text(text) == f"aXbbbc+(d) aXb*c+(d) {MASK}"


@pytest.mark.parametrize(
    "pair", ["user:{s}", ":{s}", "{s}:", "abc:{s}", "ab:{s}:x", "a-longer-user-name:{s}"]
)
def test_base64_of_a_pair_holding_the_secret_is_masked_at_any_alignment(pair: str) -> None:
    """The base64 of user:password with the secret anywhere in it is masked whole (no "Basic ")."""
    encoded = b64(pair.format(s="s3cr3t-Value").encode())
    out = Scrubber(["s3cr3t-Value"]).text(json.dumps({"echo": encoded}))
    assert out == json.dumps({"echo": MASK})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Basic " + b64(b"user:pw"), f"Authorization: Basic {MASK}"),
        ("authorization: basic " + b64(b":pw") + ".", f"authorization: basic {MASK}."),
        (
            '{"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln-x_y"}',
            f'{{"Authorization": "Bearer {MASK}"}}',
        ),
        ("BEARER Ab12", f"BEARER {MASK}"),
        ("bearer\tx9", f"bearer\t{MASK}"),
        ("The Basic plan includes a Bearer token.", "The Basic plan includes a Bearer token."),
        ("Basic " + b64(b"test"), "Basic " + b64(b"test")),  # no user:password inside
        ('WWW-Authenticate: Bearer realm="api"', 'WWW-Authenticate: Bearer realm="api"'),
        ('Bearer error="invalid_token"', 'Bearer error="invalid_token"'),
        ("XBearer abc123", "XBearer abc123"),
    ],
)
def test_bearer_and_basic_credentials_in_free_text(text: str, expected: str) -> None:
    """Unregistered Bearer/Basic credentials are masked (keeping the scheme); prose is not."""
    assert NULL_SCRUBBER.text(text) == expected


@pytest.mark.parametrize(
    ("secrets", "text", "expected"),
    [
        (["abcd1234", "1234wxyz"], "<abcd1234wxyz>", f"<{MASK}>"),
        (["1234wxyz", "abcd1234"], "<abcd1234wxyz>", f"<{MASK}>"),
        (["secret", "mysecretvalue"], "a mysecretvalue b secret c", f"a {MASK} b {MASK} c"),
        (["mysecretvalue", "secret"], "mysecretvalueX", f"{MASK}X"),
        (["abab"], "ababab|abab", f"{MASK}|{MASK}"),
        (["aaaa"], "aaaaaaa", MASK),
        (["s3cr3t-Value", "other-token"], "s3cr3t-Valueother-token", MASK),
    ],
)
def test_overlapping_secrets_leave_nothing_visible(
    secrets: list[str], text: str, expected: str
) -> None:
    """Overlapping and nested occurrences are masked as their union, whatever the order given."""
    assert Scrubber(secrets).text(text) == expected


def test_long_repetitive_text_is_masked_in_linear_time() -> None:
    """Dense overlapping occurrences and base64 runs full of the secret are masked as one span
    each (a quadratic scan of these inputs would take minutes)."""
    assert Scrubber(["aaaa"]).text("x" + "a" * 1_000_000 + "x") == f"x{MASK}x"
    assert Scrubber(["abab"]).text("ab" * 500_000 + "a!") == f"{MASK}a!"
    secret = "s3cr3t-Value"
    encoded = b64(secret.encode() * 20_000)
    assert Scrubber([secret]).text(f"<{encoded}>") == f"<{MASK}>"


def test_text_without_secrets_is_unchanged() -> None:
    """A realistic body that holds no secret comes back as the same string."""
    body = json.dumps({"results": [{"id": "cus_1", "name": "Basic Bob", "tier": "gold"}] * 50})
    assert Scrubber([SECRET, "hunter2-Passw0rd"]).text(body) == body


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "Api-Key",
        "apikey",
        "x_api_key",
        "xApiKey",
        "X-Auth-Token",
        "X-Amz-Security-Token",
        "X-Goog-Api-Key",
        "Ocp-Apim-Subscription-Key",
        "Private-Token",
        "X-CSRFToken",
        "X-Hub-Signature-256",
        "Stripe-Signature",
        "X-Client-Secret",
        "X-Password",
        "X-Session-Id",
        "X-Request-Key",
    ],
)
def test_sensitive_headers(name: str) -> None:
    """Credential-carrying header names are sensitive, in any case or spelling."""
    assert is_sensitive_header(name)
    assert is_sensitive_header(name.upper())


@pytest.mark.parametrize(
    "name",
    [
        "Content-Type",
        "Accept",
        "User-Agent",
        "X-Request-Id",
        "Idempotency-Key",
        "WWW-Authenticate",
        "X-RateLimit-Remaining-Tokens",
        "Keep-Alive",
        "Cache-Control",
        "X-Trace",
        "Token-Type",
        "",
    ],
)
def test_non_sensitive_headers(name: str) -> None:
    """Ordinary headers, and names that only mention a credential word, are shown."""
    assert not is_sensitive_header(name)


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        *[
            (n, True)
            for n in (
                "api_key",
                "apikey",
                "api-key",
                "apiKey",
                "key",
                "token",
                "access_token",
                "refresh_token",
                "id_token",
                "client_secret",
                "secret",
                "password",
                "passwd",
                "pwd",
                "signature",
                "sig",
                "auth",
                "code",
                "Code",
                "code_verifier",
                "X-Amz-Signature",
                "X-Amz-Credential",
                "X-Amz-Security-Token",
                "jsessionid",
            )
        ],
        *[
            (n, False)
            for n in (
                "q",
                "page",
                "client_id",
                "redirect_uri",
                "state",
                "scope",
                "grant_type",
                "token_type",
                "phone",
                "max_tokens",
                "country_code",
            )
        ],
    ],
)
def test_sensitive_query_parameters(name: str, sensitive: bool) -> None:
    """API-key-like parameters (and OAuth's ``code``) are sensitive; ordinary ones are not."""
    assert is_sensitive_param(name) is sensitive


def test_headers_mask_sensitive_values_and_scrub_the_rest() -> None:
    """Sensitive header values are masked whole; others only lose the secrets they contain."""
    shown = Scrubber([SECRET]).headers(
        {
            "Authorization": "Bearer abc",
            "X-Api-Key": "k",
            "Content-Type": "application/json",
            "X-Trace": f"t-{SECRET}",
        }
    )
    assert shown == {
        "Authorization": MASK,
        "X-Api-Key": MASK,
        "Content-Type": "application/json",
        "X-Trace": f"t-{MASK}",
    }


def test_headers_accept_pairs_and_join_repeats() -> None:
    """Header pairs are accepted; repeated names (any case) are joined under the first spelling."""
    pairs = [("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("Via", "1.1 a"), ("via", "1.1 b")]
    assert NULL_SCRUBBER.headers(pairs) == {"Set-Cookie": f"{MASK}, {MASK}", "Via": "1.1 a, 1.1 b"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pa55@api.example.com/v1?x=1", f"https://{MASK}@api.example.com/v1?x=1"),
        ("https://tok@api.example.com/", f"https://{MASK}@api.example.com/"),
        ("https://a:b@c@api.example.com/", f"https://{MASK}@api.example.com/"),
        (
            "https://api.example.com/v1?api_key=abc&q=1&Token=a%2Bb",
            f"https://api.example.com/v1?api_key={MASK}&q=1&Token={MASK}",
        ),
        (
            "https://api.example.com/cb?code=xyz&state=s#access_token=t&x=1",
            f"https://api.example.com/cb?code={MASK}&state=s#access_token={MASK}&x=1",
        ),
        ("https://api.example.com/a@b?x", "https://api.example.com/a@b?x"),
        (f"https://api.example.com/{SECRET}/x", f"https://api.example.com/{MASK}/x"),
        (
            "https://api.example.com/x?q=" + quote("pässwörd", safe=""),
            f"https://api.example.com/x?q={MASK}",
        ),
        ("https://api.example.com/x?flag&q=", "https://api.example.com/x?flag&q="),
    ],
)
def test_url_masks_userinfo_sensitive_parameters_and_secrets(url: str, expected: str) -> None:
    """Userinfo, sensitive query/fragment values and secrets anywhere in a URL are masked."""
    assert Scrubber([SECRET, "pässwörd"]).url(url) == expected


def test_error_message_is_text() -> None:
    """error_message() scrubs like text()."""
    message = f"upstream said: bad key {SECRET}"
    assert Scrubber([SECRET]).error_message(message) == "upstream said: bad key " + MASK


def test_data_scrubs_keys_and_values_deeply_and_copies() -> None:
    """data() scrubs every string at any depth, dict keys included; other values are kept."""
    value = {
        SECRET: [1, 2.5, None, True, (f"x{SECRET}", {"k": SECRET.encode()})],
        "ok": {"nested": [[f"{SECRET}!"]], "set": {SECRET}},
    }
    out = Scrubber([SECRET]).data(value)
    assert out == {
        MASK: [1, 2.5, None, True, (f"x{MASK}", {"k": MASK})],
        "ok": {"nested": [[f"{MASK}!"]], "set": {MASK}},
    }
    assert out["ok"] is not value["ok"]
    assert value["ok"]["nested"] == [[f"{SECRET}!"]]


def test_data_can_mask_values_under_sensitive_keys() -> None:
    """With mask_sensitive_keys, anything under a credential-like key is masked whole."""
    value = {"password": 1234, "auth": {"type": "bearer", "t": "x"}, "count": 3, "token_type": "B"}
    out = NULL_SCRUBBER.data(value, mask_sensitive_keys=True)
    assert out == {
        "password": MASK,
        "auth": {"type": MASK, "t": MASK},
        "count": 3,
        "token_type": "B",
    }
    assert NULL_SCRUBBER.data(value) == value


def test_data_is_depth_limited_and_survives_cycles() -> None:
    """Very deep data is masked past MAX_DEPTH (no RecursionError); a cycle terminates."""
    deep: list[Any] = [SECRET]
    for _ in range(5000):
        deep = [deep]
    out = Scrubber([SECRET]).data(deep)
    for _ in range(MAX_DEPTH):
        out = out[0]
    assert out == MASK
    cyclic: dict[str, Any] = {"s": SECRET}
    cyclic["self"] = cyclic
    copy = Scrubber([SECRET]).data(cyclic)
    assert copy["s"] == MASK
    assert copy["self"] is copy


def test_validate_secret_names_the_field() -> None:
    """Secrets under 4 characters are refused with a message naming the field, never the value."""
    with pytest.raises(ValueError, match="secret 'apiKey' is too short") as caught:
        validate_secret("apiKey", "abc")
    assert "abc" not in str(caught.value)
    assert isinstance(caught.value, InvalidError)
    assert caught.value.field == "apiKey"
    validate_secret("apiKey", "abcd")


def test_scrubber_refuses_short_secrets_and_ignores_empty_ones() -> None:
    """A Scrubber refuses a 1-3 character secret, skips empty ones and deduplicates the rest."""
    with pytest.raises(SecretTooShortError):
        Scrubber(["abc"])
    scrubber = Scrubber(["", SECRET, SECRET, "hunter2-Passw0rd"])
    assert scrubber.secrets == (SECRET, "hunter2-Passw0rd")
    assert SECRET not in repr(scrubber)
    assert NULL_SCRUBBER.secrets == ()


def test_scrubber_for_shares_one_scrubber_per_set_of_secrets() -> None:
    """Calls with the same credentials share a scrubber (built once); others get their own."""
    both = scrubber_for((SECRET, "hunter2-Passw0rd"))
    assert scrubber_for((SECRET, "hunter2-Passw0rd")) is both
    assert both.text(f"{SECRET} hunter2-Passw0rd") == f"{MASK} {MASK}"
    assert scrubber_for((SECRET,)).text("hunter2-Passw0rd") == "hunter2-Passw0rd"
    with pytest.raises(SecretTooShortError):
        scrubber_for(("abc",))


def json_logger(processor: Any) -> tuple[Any, io.StringIO]:
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.processors.format_exc_info,
            processor,
            structlog.processors.JSONRenderer(),
        ],
    )
    return log, out


class Opaque:
    def __str__(self) -> str:
        return f"Opaque({SECRET})"


def test_structlog_processor_scrubs_a_rendered_json_line() -> None:
    """A real structlog logger rendering JSON writes no secret, registered or header-borne."""
    log, out = json_logger(structlog_processor(lambda: Scrubber([SECRET])))
    try:
        raise RuntimeError(f"upstream rejected {SECRET}")
    except RuntimeError:
        log.exception(
            f"call failed for {SECRET}",
            url=f"https://x.example/?q={quote(SECRET)}",
            headers={"Authorization": "Bearer unregistered-9", "Accept": "*/*"},
            api_key="unregistered-key",
            nested=[{"password": 123456}],
            thing=Opaque(),
        )
    line = out.getvalue()
    for leaked in (SECRET, quote(SECRET), "unregistered-9", "unregistered-key", "123456"):
        assert leaked not in line
    event = json.loads(line)
    assert event["headers"] == {"Authorization": MASK, "Accept": "*/*"}
    assert event["event"] == f"call failed for {MASK}"
    assert event["thing"] == f"Opaque({MASK})"
    assert "RuntimeError: upstream rejected " + MASK in event["exception"]


def shown_by_registry(text: str) -> str:
    event: Any = structlog_processor()(None, "info", {"event": text})
    return str(event["event"])


def test_register_secrets_is_reference_counted() -> None:
    """A secret stays registered until every block that registered it has left."""
    other = "other-secret-1"
    assert shown_by_registry(SECRET) == SECRET
    with register_secrets([SECRET]):
        with register_secrets([SECRET, other]):
            assert shown_by_registry(f"{SECRET} {other}") == f"{MASK} {MASK}"
        assert shown_by_registry(f"{SECRET} {other}") == f"{MASK} {other}"
    assert shown_by_registry(SECRET) == SECRET


def test_register_secrets_is_thread_safe() -> None:
    """Threads registering overlapping secrets see them masked and leave the registry empty."""
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def call(i: int) -> None:
        secret = f"shared-secret-{i % 3}"
        with register_secrets([secret]):
            barrier.wait()
            seen.append(shown_by_registry(secret))
            barrier.wait()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [MASK] * 8
    assert shown_by_registry("shared-secret-0") == "shared-secret-0"


def test_register_secrets_refuses_short_secrets() -> None:
    """Registering a 1-3 character secret fails and registers nothing."""
    with pytest.raises(SecretTooShortError), register_secrets([SECRET, "abc"]):
        pass  # pragma: no cover
    assert shown_by_registry(SECRET) == SECRET


# Hypothesis. Secrets exclude "[" and "]" and must not lie inside MASK: otherwise the mask itself
# would spell the form and "not in the output" could not tell a leak from the mask.
SECRET_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="[]"), min_size=4, max_size=24
).filter(lambda s: s not in MASK)
AROUND = st.text(max_size=40)
TEXT_FORMS = [name for name in FORMS if not name.startswith("base64")]
PROPERTY = settings(max_examples=200, deadline=None)


def stable_middle(raw: bytes, skew: int) -> str:
    """The characters of ``raw``'s base64 after ``skew`` foreign bytes that are the same whatever
    those bytes and the ones after it are: computed with all-zero and all-one neighbours."""
    low = b64(b"\x00" * skew + raw + b"\x00\x00")
    high = b64(b"\xff" * skew + raw + b"\xff\xff")
    return "".join(a for a, b in zip(low, high, strict=True) if a == b and a != "=")


@PROPERTY
@given(secret=SECRET_TEXT, before=AROUND, after=AROUND, form=st.sampled_from(TEXT_FORMS))
def test_property_no_text_form_survives(secret: str, before: str, after: str, form: str) -> None:
    """For any secret (any Unicode), any surrounding text and each of the raw, percent-encoded
    (quote, quote_plus, lower-case hex), JSON-escaped (ASCII or not, nested) and XML-escaped
    forms: the form does not occur in ``text(before + form + after)``."""
    encoded = FORMS[form](secret)
    assert encoded not in Scrubber([secret]).text(before + encoded + after)


@PROPERTY
@given(
    secret=SECRET_TEXT,
    prefix=st.binary(max_size=5),
    suffix=st.binary(max_size=5),
    around=st.tuples(AROUND, AROUND),
    variant=st.sampled_from(["std", "std-unpadded", "urlsafe", "urlsafe-unpadded"]),
)
def test_property_no_base64_alignment_survives(
    secret: str, prefix: bytes, suffix: bytes, around: tuple[str, str], variant: str
) -> None:
    """For any secret, any 0-5 bytes before and after it, base64 or base64url, padded or not, and
    any surrounding text: ``text(before + b64(prefix + secret + suffix) + after)`` does not contain
    the secret's stable middle at skew ``len(prefix) % 3`` (the characters that depend on the
    secret's bytes alone), in the alphabet used."""
    urlsafe = variant.startswith("urlsafe")
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(prefix + secret.encode() + suffix).decode("ascii")
    encoded = encoded.rstrip("=") if variant.endswith("unpadded") else encoded
    middle = stable_middle(secret.encode(), len(prefix) % 3)
    middle = middle.translate(str.maketrans("+/", "-_")) if urlsafe else middle
    assume(middle not in MASK)
    assert middle in encoded
    assert middle not in Scrubber([secret]).text(around[0] + encoded + around[1])


@PROPERTY
@given(secret=SECRET_TEXT, before=AROUND, after=AROUND)
def test_property_aligned_base64_is_gone(secret: str, before: str, after: str) -> None:
    """For any secret and surrounding text, ``b64encode(secret)`` itself (alignment 0, with its
    padding) does not occur in ``text(before + b64encode(secret) + after)``."""
    encoded = b64(secret.encode())
    assert encoded not in Scrubber([secret]).text(before + encoded + after)


def masked_by_reference(text: str, secrets: list[str]) -> str:
    """The obvious quadratic definition: mask every character covered by any occurrence."""
    covered = [False] * len(text)
    for secret in secrets:
        for i in range(len(text) - len(secret) + 1):
            if text.startswith(secret, i):
                covered[i : i + len(secret)] = [True] * len(secret)
    out, i = [], 0
    while i < len(text):
        if not covered[i]:
            out.append(text[i])
            i += 1
            continue
        while i < len(text) and covered[i]:
            i += 1
        out.append(MASK)
    return "".join(out)


@settings(max_examples=500, deadline=None)
@given(
    secrets=st.lists(st.text("ab", min_size=4, max_size=8), min_size=1, max_size=3),
    text=st.text("ab", max_size=300),
)
def test_property_overlaps_match_the_reference(secrets: list[str], text: str) -> None:
    """For any secrets and text over {a, b} (where base64 and Bearer rules cannot fire), text()
    equals the reference: every character inside any occurrence of any secret is masked, each
    maximal covered stretch by one MASK."""
    assert Scrubber(secrets).text(text) == masked_by_reference(text, secrets)


@PROPERTY
@given(first=SECRET_TEXT, second=SECRET_TEXT, parts=st.lists(AROUND, min_size=3, max_size=3))
def test_property_two_secrets_in_any_arrangement(first: str, second: str, parts: list[str]) -> None:
    """For any two secrets (possibly overlapping or one inside the other) placed in any text,
    neither occurs in the scrubbed text."""
    text = parts[0] + first + parts[1] + second + parts[2] + first + second
    out = Scrubber([first, second]).text(text)
    assert first not in out
    assert second not in out
