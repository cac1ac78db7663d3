"""An integration spec compiled into runnable operations: everything parsed once, no I/O.

``compile_spec`` is what publishing runs and what the engine caches per spec version. It refuses
a spec with every problem it finds (``SpecError``, exact paths) and otherwise returns frozen
objects whose templates, JMESPath expressions and JSON Schema validators are ready for the call
path. Its checks are what keep a secret in its place: ``{{secret.*}}`` must name a declared
secret, and a spec that reads any secret must say where secrets may go (``allowedOrigins``,
built from ``conn`` or literals only, so a flow author cannot steer them).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from callout._integration_check import AuthParts, Checker, OperationParts, parse_origin
from callout._redirects import origin_of
from callout._schemas import Validator
from callout.errors import InvalidError, TemplateError
from callout.mapping import Mappings, Transform
from callout.spec.integration import (
    SpecError,
    SpecProblem,
    content_hash,
    parse_spec_document,
)
from callout.template import JsonTemplate, TextTemplate, UrlTemplate
from callout.transport import RetryPolicy

__all__ = ["CompiledAuth", "CompiledOperation", "CompiledSpec", "compile_spec"]


@dataclass(frozen=True, slots=True)
class CompiledAuth:
    """How a request authenticates.

    ``kind`` is one of ``none``, ``basic`` (templates ``username``, ``password``), ``bearer``
    (``token``), ``header`` (``value``; ``name`` is the header), ``query`` (``value``; ``name``
    is the parameter) or ``oauth2ClientCredentials`` (``tokenUrl``, a ``UrlTemplate``;
    ``clientId``, ``clientSecret`` and, when given, ``scope`` and ``audience``).
    """

    kind: str
    templates: Mapping[str, TextTemplate | UrlTemplate] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CompiledOperation:
    """One operation, ready to render: its templates see flow scopes, ``input``, ``conn`` and
    ``secret``. ``auth`` None means the connection's auth."""

    key: str
    summary: str | None
    method: str
    #: The URL with the operation's ``query`` compiled in.
    url: UrlTemplate
    headers: tuple[tuple[str, TextTemplate], ...]
    body: JsonTemplate | None
    auth: CompiledAuth | None
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None
    default_output_mappings: Mappings
    transform: Transform | None
    timeout_ms: int | None
    retry: RetryPolicy | None
    #: ``validate_input(inputs)`` checks rendered inputs against ``inputSchema``:
    #: ``InvalidError(code="input_invalid", field="inputs.<path>")`` naming the field and the
    #: rule, never the value. The compiled validator itself, called with no method between.
    validate_input: Validator = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class CompiledSpec:
    """A published spec version, compiled. ``document`` is the spec as given."""

    slug: str
    name: str
    document: Mapping[str, Any]
    content_hash: str
    operations: Mapping[str, CompiledOperation]
    connection_auth: CompiledAuth
    allowed_origins: tuple[TextTemplate, ...]
    secret_names: frozenset[str]
    config_schema: Mapping[str, Any]
    test_operation: str | None
    _config_validator: Validator = field(repr=False, compare=False)

    def validate_config(self, config: Any) -> None:
        """Check a connection's public config: ``InvalidError(code="config_invalid",
        field="config.<path>")``, never echoing a value."""
        self._config_validator(config)

    def render_allowed_origins(self, conn_config: Mapping[str, Any]) -> frozenset[str]:
        """The origins secrets may go to for a connection with this config, each
        ``scheme://host:port`` (port explicit, host lower-case), as the transport compares."""
        scope = {"conn": conn_config}
        out = set()
        for i, template in enumerate(self.allowed_origins):
            where = f"connection.allowedOrigins[{i}]"
            try:
                out.add(origin_of(parse_origin(template.render(scope))))
            except TemplateError as exc:
                message = (
                    f"{where} ({template.source!r}) needs {exc.path or 'a value'} from the "
                    "connection's config, which is not set; set it in the connection"
                )
                raise InvalidError(message, code="invalid_origin", field=where) from None
            except ValueError:
                message = (
                    f"{where} ({template.source!r}) does not render to an http or https origin "
                    "for this connection; set the connection's config to a URL such as "
                    "https://api.example.com"
                )
                raise InvalidError(message, code="invalid_origin", field=where) from None
        return frozenset(out)


def compile_spec(document: Mapping[str, Any]) -> CompiledSpec:
    """Check and compile a spec document; ``SpecError`` lists every problem with its path."""
    doc = parse_spec_document(document)
    try:
        digest = content_hash(document)
    except (TypeError, ValueError) as exc:
        raise SpecError([SpecProblem("", f"the spec is not JSON data: {exc}")]) from None
    checker = Checker(doc)
    checker.check_all()
    if checker.problems:
        raise SpecError(checker.problems)
    operations = {key: _operation(key, parts) for key, parts in checker.operations.items()}
    plain = copy.deepcopy(dict(document))
    return CompiledSpec(
        slug=doc.slug,
        name=doc.name,
        document=plain,
        content_hash=digest,
        operations=MappingProxyType(operations),
        connection_auth=_auth(checker.connection_auth) or CompiledAuth("none"),
        allowed_origins=tuple(checker.origins),
        secret_names=frozenset(doc.connection.secrets),
        config_schema=doc.connection.config,
        test_operation=doc.connection.test.operation if doc.connection.test else None,
        _config_validator=checker.config_validator,
    )


def _operation(key: str, parts: OperationParts) -> CompiledOperation:
    op = parts.source
    assert parts.url is not None  # noqa: S101 -- a spec without problems compiled every URL
    return CompiledOperation(
        key=key,
        summary=op.summary,
        method=op.method,
        url=parts.url,
        headers=tuple(parts.headers),
        body=parts.body,
        auth=_auth(parts.auth),
        input_schema=op.inputSchema,
        output_schema=op.outputSchema,
        default_output_mappings=parts.mappings,
        transform=parts.transform,
        timeout_ms=op.timeoutMs,
        retry=RetryPolicy(attempts=op.retry.attempts) if op.retry else None,
        validate_input=parts.validator,
    )


def _auth(parts: AuthParts | None) -> CompiledAuth | None:
    if parts is None:
        return None
    kind, templates, name = parts
    return CompiledAuth(kind, MappingProxyType(templates), name)
