"""The checks ``compile_spec`` runs, collecting every problem with its exact path.

Each template is compiled with ``SPEC_SCOPES`` and then held to the scopes its place allows:
operation templates read flow scopes, ``input``, ``conn`` and ``secret``; ``connection.auth``
and any OAuth token request read ``conn`` and ``secret`` (the token is cached per connection,
so it cannot depend on a call); ``allowedOrigins`` read ``conn`` only. ``input.*`` and
``conn.*`` must be declared by their JSON Schema, ``secret.*`` by ``connection.secrets``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from yarl import URL

from callout._schemas import Validator, compile_validator, schema_problems, undeclared
from callout.errors import InvalidError
from callout.mapping import Expression, Mappings, Transform, compile_mappings, compile_transform
from callout.spec._problems import SpecProblem, join_path
from callout.spec.integration import OAuth2ClientCredentials, Operation, SpecDocument
from callout.template import (
    SPEC_SCOPES,
    JsonTemplate,
    Template,
    TextTemplate,
    UrlTemplate,
    compile_header,
    compile_json,
    compile_text,
    compile_url,
)
from callout.transport import IDEMPOTENT_METHODS

__all__ = ["AuthParts", "Checker", "OperationParts", "parse_origin"]

T = TypeVar("T", bound=Template)
#: ``(kind, templates, name)`` of an auth, as ``CompiledAuth`` holds them.
AuthParts = tuple[str, dict[str, TextTemplate | UrlTemplate], str | None]

#: Flow scopes, input, conn and secret.
_OPERATION_SCOPES: Final = SPEC_SCOPES
_AUTH_SCOPES: Final = frozenset({"conn", "secret"})
_ORIGIN_SCOPES: Final = frozenset({"conn"})
_SCOPE_WORDS: Final = {
    _OPERATION_SCOPES: "flow scopes, input, conn and secret",
    _AUTH_SCOPES: "{{conn.*}} and {{secret.*}}",
    _ORIGIN_SCOPES: "{{conn.*}} (and literal origins)",
}
_HOLE_HEAD = re.compile(r"\{\{\s*([^\W\d][\w-]*)")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers the transport owns: a spec setting them would break framing or the checked origin.
_RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
    | {"keep-alive", "proxy-connection", "expect"}
)
#: Auth fields that are templates, and how each is compiled.
_AUTH_FIELDS: Final[dict[str, tuple[tuple[str, Callable[..., Any]], ...]]] = {
    "none": (),
    "basic": (("username", compile_text), ("password", compile_text)),
    "bearer": (("token", compile_header),),
    "header": (("value", compile_header),),
    "query": (("value", compile_text),),
    "oauth2ClientCredentials": (
        ("tokenUrl", compile_url),
        ("clientId", compile_text),
        ("clientSecret", compile_text),
        ("scope", compile_text),
        ("audience", compile_text),
    ),
}


@dataclass
class OperationParts:
    """What one operation compiled into (complete only when the spec has no problems)."""

    source: Operation
    validator: Validator
    url: UrlTemplate | None = None
    headers: list[tuple[str, TextTemplate]] = field(default_factory=list)
    body: JsonTemplate | None = None
    auth: AuthParts | None = None
    mappings: Mappings = field(default_factory=Mappings)
    transform: Transform | None = None


def parse_origin(text: str) -> URL:
    """``text`` as an absolute http(s) URL with a host and no user info, else ``ValueError``."""
    url = URL(text.strip())
    if url.scheme not in ("http", "https") or not url.raw_host or url.user is not None:
        raise ValueError(text)
    url.port  # noqa: B018 -- reading the port validates it
    return url


def _never(data: Any) -> None:
    raise AssertionError("a spec with problems is never compiled")


class Checker:
    """Runs every check over a shape-valid ``SpecDocument``, gathering ``problems``."""

    def __init__(self, doc: SpecDocument) -> None:
        self.doc = doc
        self.problems: list[SpecProblem] = []
        self.secrets = frozenset(doc.connection.secrets)
        self.operations: dict[str, OperationParts] = {}
        self.connection_auth: AuthParts | None = None
        self.config_validator: Validator = _never
        self.origins: list[TextTemplate] = []
        #: Where each ``{{secret.*}}`` is read: (document path, template path).
        self.secret_reads: list[tuple[str, str]] = []
        self._schema: dict[str, Any] = {}

    def add(self, path: str, message: str) -> None:
        self.problems.append(SpecProblem(path, message))

    def check_all(self) -> None:
        conn = self.doc.connection
        self.config_validator = self._schema_validator(
            "connection.config", conn.config, "config", "config_invalid", "the connection schema"
        )
        self._schema["conn"] = conn.config
        self.connection_auth = self._auth(conn.auth, "connection.auth", _AUTH_SCOPES)
        for i, origin in enumerate(conn.allowedOrigins):
            self._origin(origin, f"connection.allowedOrigins[{i}]")
        for key, op in self.doc.operations.items():
            self.operations[key] = self._operation(key, op)
        if self.secret_reads and not conn.allowedOrigins:
            where, read = self.secret_reads[0]
            message = (
                f"the spec reads {{{{{read}}}}} (at {where}) but declares no allowedOrigins, so "
                'a secret has no place it may go; add allowedOrigins: ["{{conn.baseUrl}}"] (or '
                "the API's literal origin)"
            )
            self.add("connection.allowedOrigins", message)
        self._test()

    # -- schemas ---------------------------------------------------------------------------

    def _schema_validator(
        self, path: str, schema: dict[str, Any], root: str, code: str, what: str
    ) -> Validator:
        problems = schema_problems(schema, path)
        self.problems += problems
        return _never if problems else compile_validator(schema, root=root, code=code, what=what)

    # -- templates -------------------------------------------------------------------------

    def _compile(
        self, fn: Callable[..., T], source: Any, path: str, scopes: frozenset[str]
    ) -> T | None:
        try:
            template = fn(source, scopes=SPEC_SCOPES, field=path)
        except InvalidError as exc:
            self.add(path, exc.message.removeprefix(f"{path}: "))
            return None
        bare = [head for head in _written_heads(template.source) if head not in SPEC_SCOPES]
        for head in dict.fromkeys(bare):
            message = (
                f"{{{{{head}...}}}} names no scope; in a spec write the scope first: input, conn, "
                f"secret, or a flow scope such as vars (e.g. {{{{vars.{head}}}}})"
            )
            self.add(path, message)
        if not bare:
            self._reads(template.paths, path, scopes)
        return template

    def _reads(self, paths: tuple[str, ...], where: str, scopes: frozenset[str]) -> None:
        for read in paths:
            head, _, rest = read.partition(".")
            segments = rest.split(".") if rest else []
            if head not in scopes:
                message = f"{{{{{read}}}}} is not available here; {where} may read only "
                self.add(where, message + _SCOPE_WORDS[scopes])
            elif head == "secret":
                self.secret_reads.append((where, read))
                self._secret(read, segments, where)
            elif head in ("input", "conn") and head in self._schema:
                self._declared(read, head, segments, where)

    def _secret(self, read: str, segments: list[str], where: str) -> None:
        declared = ", ".join(sorted(self.secrets)) or "none"
        if not segments:
            self.add(where, "name one secret, e.g. {{secret.apiKey}}; {{secret}} reads them all")
        elif segments[0] not in self.secrets:
            message = (
                f"{{{{{read}}}}} reads secret {segments[0]!r}, which connection.secrets does not "
                f"declare; declare it there or fix the name (declared: {declared})"
            )
            self.add(where, message)
        elif len(segments) > 1:
            self.add(where, f"a secret is one string; write {{{{secret.{segments[0]}}}}}")

    def _declared(self, read: str, head: str, segments: list[str], where: str) -> None:
        found = undeclared(self._schema[head], segments)
        if found is None:
            return
        index, names = found
        owner = "the operation's inputSchema" if head == "input" else "connection.config"
        at = ".".join([head, *segments[: index + 1]])
        listed = ", ".join(names) if names else "none"
        message = (
            f"{{{{{read}}}}} reads {at}, which {owner} does not declare; add it under its "
            f"properties or fix the name (declared there: {listed})"
        )
        self.add(where, message)

    def _origin(self, source: str, path: str) -> None:
        template = self._compile(compile_text, source, path, _ORIGIN_SCOPES)
        if template is None:
            return
        self.origins.append(template)
        if template.is_static:
            try:
                parse_origin(source)
            except ValueError:
                message = "an origin is an http or https URL such as https://api.example.com"
                self.add(path, message)

    def _auth(self, auth: Any, path: str, scopes: frozenset[str]) -> AuthParts | None:
        if auth is None:
            return None
        if isinstance(auth, OAuth2ClientCredentials):
            scopes = _AUTH_SCOPES  # one token per connection: it cannot depend on the call
        templates: dict[str, TextTemplate | UrlTemplate] = {}
        for name, fn in _AUTH_FIELDS[auth.type]:
            source = getattr(auth, name)
            if source is not None:
                compiled = self._compile(fn, source, join_path(path, name), scopes)
                if compiled is not None:
                    templates[name] = compiled
        literal = getattr(auth, "name", None)
        if auth.type == "header" and isinstance(literal, str):
            self._header_name(literal, join_path(path, "name"))
        if auth.type == "query" and not literal:
            self.add(join_path(path, "name"), "name the query parameter, e.g. api_key")
        return auth.type, templates, literal

    def _header_name(self, name: str, path: str) -> None:
        if _HEADER_NAME.fullmatch(name) is None:
            self.add(path, f"{name!r} is not an HTTP header name (letters, digits and -)")
        elif name.lower() in _RESERVED_HEADERS:
            self.add(path, f"{name} is set by the transport; remove it")

    # -- operations ------------------------------------------------------------------------

    def _operation(self, key: str, op: Operation) -> OperationParts:
        base = f"operations.{key}"
        validator = self._schema_validator(
            f"{base}.inputSchema",
            op.inputSchema,
            "inputs",
            "input_invalid",
            "the operation's inputSchema",
        )
        if op.outputSchema is not None:
            self.problems += schema_problems(op.outputSchema, f"{base}.outputSchema")
        self._schema["input"] = op.inputSchema
        parts = OperationParts(op, validator)
        url_ok = self._compile(compile_url, op.url, f"{base}.url", _OPERATION_SCOPES) is not None
        query_ok = True
        for name, value in op.query.items():
            if isinstance(value, str):
                where = f"{base}.query.{name}"
                query_ok &= self._compile(compile_text, value, where, _OPERATION_SCOPES) is not None
        if url_ok and query_ok:
            parts.url = compile_url(
                op.url,
                query=op.query,
                scopes=SPEC_SCOPES,
                field=f"{base}.url",
                query_field=f"{base}.query",
            )
        seen: set[str] = set()
        for name, value in op.headers.items():
            where = f"{base}.headers.{name}"
            self._header_name(name, where)
            if name.lower() in seen:
                self.add(where, f"header {name} is set twice (names ignore case); keep one")
            seen.add(name.lower())
            header = self._compile(compile_header, value, where, _OPERATION_SCOPES)
            if header is not None:
                parts.headers.append((name, header))
        if (
            op.retry is not None
            and op.retry.attempts > 1
            and op.method not in IDEMPOTENT_METHODS
            and "idempotency-key" not in seen
        ):
            self.add(
                f"{base}.retry",
                f"a {op.method} is retried only when it carries an Idempotency-Key header (a "
                "repeat could otherwise act twice), so this retry would never happen; send an "
                "Idempotency-Key header the API honours, or remove retry",
            )
        if op.body is not None and self._body(op.body, f"{base}.body"):
            parts.body = compile_json(op.body, scopes=SPEC_SCOPES, field=f"{base}.body")
        parts.auth = self._auth(op.auth, f"{base}.auth", _OPERATION_SCOPES)
        parts.mappings = self._mappings(op.defaultOutputMappings, f"{base}.defaultOutputMappings")
        if op.transform is not None:
            try:
                parts.transform = compile_transform(op.transform, field=f"{base}.transform")
            except InvalidError as exc:
                self.add(f"{base}.transform", exc.message.removeprefix(f"{base}.transform: "))
        del self._schema["input"]
        return parts

    def _body(self, body: Any, path: str) -> bool:
        """Check every string (keys too) of a body; True when all of them compile."""
        before = len(self.problems)
        for where, text in _strings(body, path):
            self._compile(compile_text, text, where, _OPERATION_SCOPES)
        return len(self.problems) == before

    def _mappings(self, raw: dict[str, str], path: str) -> Mappings:
        pairs: list[tuple[str, Expression]] = []
        for name, source in raw.items():
            try:
                pairs += compile_mappings({name: source}, field=path).pairs
            except InvalidError as exc:
                where = exc.field or join_path(path, name)
                self.add(where, exc.message.removeprefix(f"{where}: "))
        return Mappings(tuple(pairs))

    def _test(self) -> None:
        test = self.doc.connection.test
        if test is None:
            return
        parts = self.operations.get(test.operation)
        if parts is None:
            known = ", ".join(self.operations)
            message = f"{test.operation!r} is not an operation of this spec; use one of: {known}"
            self.add("connection.test.operation", message)
            return
        if parts.validator is _never:
            return
        try:
            parts.validator(test.inputs if test.inputs is not None else {})
        except InvalidError as exc:
            where = "connection.test.inputs" if test.inputs is not None else "connection.test"
            message = (
                f"operation {test.operation!r} cannot run as the connection test with these "
                f"inputs: {exc.message}; add connection.test.inputs that satisfy its inputSchema"
            )
            self.add(where, message)


def _written_heads(source: str) -> Iterator[str]:
    """The first name of each placeholder as written (before a bare name becomes vars.<name>)."""
    pos = 0
    while (m := _HOLE_HEAD.search(source, pos)) is not None:
        yield m.group(1)
        end = source.find("}}", m.end())
        pos = len(source) if end == -1 else end + 2


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(path, text)`` of every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = join_path(path, key)
            if isinstance(key, str) and "{{" in key:
                yield sub, key
            yield from _strings(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, join_path(path, i))
