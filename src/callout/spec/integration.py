"""What an integration spec IS (SPEC §4): its document shape, read from YAML or JSON, no I/O.

This module checks SHAPE only: which fields exist, their types and bounds. Whether templates,
JMESPath expressions and JSON Schemas inside it make sense is ``callout.integration``'s job.
Every shape problem is reported at once, each with a dotted path and a fix.
"""

# The models' field names are the document's camelCase keys, so code and YAML read the same.
# ruff: noqa: N815

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from callout.spec._document import (
    MAX_SPEC_BYTES,
    canonical_json,
    content_hash,
    diff_documents,
    load_spec_text,
)
from callout.spec._problems import SpecError, SpecProblem, join_path

__all__ = [
    "AUTH_TYPES",
    "MAX_RETRY_ATTEMPTS",
    "MAX_SPEC_BYTES",
    "MAX_TIMEOUT_MS",
    "METHODS",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "Connection",
    "ConnectionTest",
    "HeaderAuth",
    "NoAuth",
    "OAuth2ClientCredentials",
    "Operation",
    "QueryAuth",
    "Retry",
    "SecretField",
    "SpecDocument",
    "SpecError",
    "SpecProblem",
    "canonical_json",
    "content_hash",
    "diff_documents",
    "load_spec_text",
    "parse_spec_document",
]

MAX_TIMEOUT_MS: Final = 30000
MAX_RETRY_ATTEMPTS: Final = 3
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
AUTH_TYPES: Final = ("none", "basic", "bearer", "header", "query", "oauth2ClientCredentials")

_SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"
_OPERATION_KEY = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
_SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # noqa: S105 -- a pattern, not a secret


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float):  # bool is an int
        raise PydanticCustomError(
            "scalar_type", "a query value must be a string, number or boolean (or a template)"
        )
    return value


OperationKey = Annotated[str, StringConstraints(pattern=_OPERATION_KEY)]
SecretName = Annotated[str, StringConstraints(pattern=_SECRET_NAME)]
QueryValue = Annotated[Any, AfterValidator(_scalar)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoAuth(_Model):
    """No credentials."""

    type: Literal["none"]


class BasicAuth(_Model):
    """HTTP Basic: ``Authorization: Basic base64(username:password)``."""

    type: Literal["basic"]
    username: str
    password: str


class BearerAuth(_Model):
    """``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: str


class HeaderAuth(_Model):
    """A key in a header of the spec's choosing: ``<name>: <value>``."""

    type: Literal["header"]
    name: str
    value: str


class QueryAuth(_Model):
    """A key in the query string: ``?<name>=<value>``."""

    type: Literal["query"]
    name: str
    value: str


class OAuth2ClientCredentials(_Model):
    """OAuth 2 client credentials: a token fetched from ``tokenUrl``, sent as a bearer token."""

    type: Literal["oauth2ClientCredentials"]
    tokenUrl: str
    clientId: str
    clientSecret: str
    scope: str | None = None
    audience: str | None = None


Auth = Annotated[
    NoAuth | BasicAuth | BearerAuth | HeaderAuth | QueryAuth | OAuth2ClientCredentials,
    Field(discriminator="type"),
]


class SecretField(_Model):
    """A secret a connection holds (write-only), read by templates as ``{{secret.<name>}}``."""

    description: str | None = None


class ConnectionTest(_Model):
    """What "test connection" runs: an operation, with ``inputs`` when it needs some."""

    operation: str
    inputs: dict[str, Any] | None = None


class Connection(_Model):
    """What a connection of this integration holds, and where its secrets may go."""

    #: JSON Schema of the public config, read as ``{{conn.*}}``.
    config: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    secrets: dict[SecretName, SecretField | None] = Field(default_factory=dict)
    auth: Auth = NoAuth(type="none")
    #: Origins (templates over ``conn`` or literals) requests carrying secrets may go to.
    allowedOrigins: list[str] = Field(default_factory=list)
    test: ConnectionTest | None = None


class Retry(_Model):
    """Opt-in retries: attempts in all, the first included."""

    attempts: int = Field(ge=1, le=MAX_RETRY_ATTEMPTS)


class Operation(_Model):
    """One request the integration can make, with its typed inputs and mapped outputs."""

    summary: str | None = None
    description: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    url: str
    query: dict[str, QueryValue] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    auth: Auth | None = None
    inputSchema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    outputSchema: dict[str, Any] | None = None
    defaultOutputMappings: dict[str, str] = Field(default_factory=dict)
    transform: str | None = None
    timeoutMs: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)
    retry: Retry | None = None


class SpecDocument(_Model):
    """A whole integration spec, as published."""

    slug: str = Field(pattern=_SLUG)
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    connection: Connection = Field(default_factory=Connection)
    operations: dict[OperationKey, Operation] = Field(min_length=1)


def parse_spec_document(data: Mapping[str, Any]) -> SpecDocument:
    """The document's shape checked; every problem found is in one ``SpecError``."""
    if not isinstance(data, Mapping):
        raise SpecError([SpecProblem("", "a spec must be an object with slug, name, operations")])
    try:
        return SpecDocument.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors(include_url=False)]
        raise SpecError(dict.fromkeys(problems)) from None


# -- friendly messages -------------------------------------------------------------------------

_AUTH_LIST = ", ".join(AUTH_TYPES)
_TYPE_WORDS: Final = {
    "string_type": "must be a string (quote it)",
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
    "float_type": "must be a number",
    "dict_type": "must be an object (key: value pairs)",
    "model_type": "must be an object (key: value pairs)",
    "model_attributes_type": "must be an object (key: value pairs)",
    "list_type": "must be a list",
}
_PATTERN_WORDS: Final = {
    "slug": "a slug is 2 to 63 lower-case letters, digits and '-', starting with a letter or "
    "digit, e.g. acme-crm",
    "operations": "an operation key starts with a letter, then up to 63 letters, digits or '_', "
    "e.g. lookupContact",
    "secrets": "a secret name starts with a letter or '_', then up to 63 letters, digits or '_', "
    "e.g. apiKey",
}
_RANGE_WORDS: Final = {
    "timeoutMs": f"timeoutMs must be from 1 to {MAX_TIMEOUT_MS} (milliseconds, the whole call "
    "including retries)",
    "attempts": f"retry.attempts must be from 1 to {MAX_RETRY_ATTEMPTS} (attempts in all, the "
    "first included)",
}


def _problem(err: ErrorDetails) -> SpecProblem:
    loc = err["loc"]
    kind = err["type"]
    ctx = err.get("ctx", {})
    path = ""
    for i, part in enumerate(loc):
        tag = i > 0 and loc[i - 1] == "auth" and part in AUTH_TYPES
        if part != "[key]" and not tag:
            path = join_path(path, part)
    last = str(loc[-1]) if loc else ""
    if kind == "missing":
        return SpecProblem(path, f"{last!r} is required; add it")
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(loc[:-1])) or "none"
        message = (
            f"{last!r} is not a field here; remove it or fix its spelling (allowed: {allowed})"
        )
        return SpecProblem(path, message)
    if kind == "union_tag_invalid":
        message = f"unknown auth type {ctx.get('tag')!r}; use one of {_AUTH_LIST}"
        return SpecProblem(join_path(path, "type"), message)
    if kind == "union_tag_not_found":
        return SpecProblem(join_path(path, "type"), f"an auth needs a 'type': one of {_AUTH_LIST}")
    if kind == "literal_error" and last == "method":
        got = err["input"] if isinstance(err["input"], str) else type(err["input"]).__name__
        return SpecProblem(path, f"method {got!r} is not one of {', '.join(METHODS)} (upper case)")
    if kind == "string_pattern_mismatch":
        owner = str(loc[0]) if loc[-1] == "[key]" and loc[0] != "connection" else last
        if loc[-1] == "[key]" and len(loc) > 2 and loc[1] == "secrets":
            owner = "secrets"
        return SpecProblem(path, _PATTERN_WORDS.get(owner, str(err["msg"])))
    if kind in ("greater_than_equal", "less_than_equal") and last in _RANGE_WORDS:
        return SpecProblem(path, _RANGE_WORDS[last])
    if kind == "too_short" and last == "operations":
        return SpecProblem(path, "a spec needs at least one operation; add one under operations")
    if kind == "string_too_short":
        return SpecProblem(path, f"{last!r} must not be empty")
    if kind in _TYPE_WORDS:
        return SpecProblem(path, f"{last or 'the spec'} {_TYPE_WORDS[kind]}")
    return SpecProblem(path, str(err["msg"]))


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    """The field names of the model at ``loc`` (a pydantic error location), for suggestions."""
    target: Any = SpecDocument
    for part in loc:
        target = _unwrap(target)
        if isinstance(target, type) and issubclass(target, BaseModel):
            field = target.model_fields.get(str(part))
            if field is None:
                return []
            target = field.annotation
        elif get_origin(target) is dict:
            target = get_args(target)[1]
        elif members := [m for m in get_args(target) if _tag_of(m) == part]:
            target = members[0]
        else:
            return []
    target = _unwrap(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _unwrap(target: Any) -> Any:
    """``X`` out of ``Annotated[X, ...]`` and ``X | None`` (unions of models are kept)."""
    while True:
        if get_origin(target) is Annotated:
            target = get_args(target)[0]
            continue
        args = [a for a in get_args(target) if a is not type(None)]
        if len(args) == 1 and len(get_args(target)) == 2:
            target = args[0]
            continue
        return target


def _tag_of(member: Any) -> str | None:
    if isinstance(member, type) and issubclass(member, BaseModel) and "type" in member.model_fields:
        tags = get_args(member.model_fields["type"].annotation)
        return str(tags[0]) if tags else None
    return None
