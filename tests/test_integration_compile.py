"""Compiling an integration spec: every template, path, expression and schema checked at once."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from callout.errors import InvalidError
from callout.integration import CompiledSpec, compile_spec
from callout.spec.integration import SpecError, content_hash, load_spec_text
from callout.transport import RetryPolicy

ACME = """\
slug: acme-crm
name: Acme CRM
description: Contacts and tickets in Acme CRM
connection:
  config:
    type: object
    required: [baseUrl]
    properties:
      baseUrl: {type: string, format: uri}
      accountId: {type: string}
  secrets:
    apiKey: {description: "API key from Settings > API"}
  auth: {type: bearer, token: "{{secret.apiKey}}"}
  allowedOrigins: ["{{conn.baseUrl}}"]
  test: {operation: ping}
operations:
  ping:
    summary: Check the credentials
    method: GET
    url: "{{conn.baseUrl}}/v2/me"
  lookupContact:
    summary: Find a contact by phone number
    method: GET
    url: "{{conn.baseUrl}}/v2/contacts"
    query: {phone: "{{input.phone}}", account: "{{conn.accountId}}"}
    headers: {Accept: application/json}
    inputSchema: {type: object, required: [phone], properties: {phone: {type: string}}}
    outputSchema: {type: object}
    defaultOutputMappings: {contactId: "results[0].id", contactName: "results[0].name"}
    transform: "{vip: results[0].tier == 'gold'}"
    timeoutMs: 3000
    retry: {attempts: 2}
  createTicket:
    method: POST
    url: "{{conn.baseUrl}}/v2/tickets"
    headers: {X-Trace: "{{vars.traceId | default: \\"none\\"}}"}
    body:
      subject: "Call from {{input.phone}}"
      contact: {id: "{{input.contact.id}}", tags: "{{input.tags}}", first: "{{input.tags[0]}}"}
      priority: "{{input.priority | default: 3}}"
      caller: "{{event.from}}"
    inputSchema:
      type: object
      required: [contact]
      properties:
        phone: {type: string}
        contact: {type: object, required: [id], properties: {id: {type: string}}}
        tags: {type: array, items: {type: string}}
        priority: {type: integer, minimum: 1, maximum: 5}
    auth: {type: header, name: X-Api-Key, value: "{{secret.apiKey}}"}
"""

CONN = {"baseUrl": "https://API.Acme.com/base", "accountId": "acct 1"}


def acme() -> dict[str, Any]:
    return load_spec_text(ACME)


@pytest.fixture(scope="module")
def spec() -> CompiledSpec:
    return compile_spec(acme())


def problems(mutate: Callable[[dict[str, Any]], Any]) -> dict[str, str]:
    doc = acme()
    mutate(doc)
    with pytest.raises(SpecError) as caught:
        compile_spec(doc)
    return {p.path: p.message for p in caught.value.problems}


# -- a valid spec ----------------------------------------------------------------------------


def test_a_realistic_spec_compiles_with_its_operations(spec: CompiledSpec) -> None:
    """The acme-crm example compiles: operations, secrets, test operation, hash."""
    assert (spec.slug, spec.name) == ("acme-crm", "Acme CRM")
    assert list(spec.operations) == ["ping", "lookupContact", "createTicket"]
    assert spec.secret_names == frozenset({"apiKey"})
    assert spec.test_operation == "ping"
    assert spec.content_hash == content_hash(acme())
    assert spec.document == acme()
    assert spec.connection_auth.kind == "bearer"
    assert spec.connection_auth.templates["token"].paths == ("secret.apiKey",)
    op = spec.operations["lookupContact"]
    assert (op.method, op.summary, op.timeout_ms) == ("GET", "Find a contact by phone number", 3000)
    assert op.retry == RetryPolicy(attempts=2)
    assert op.auth is None
    assert op.output_schema == {"type": "object"}
    assert op.input_schema["required"] == ["phone"]


def test_the_compiled_templates_render_in_context(spec: CompiledSpec) -> None:
    """URL, query, headers, body and auth render against flow scopes, input, conn, secret."""
    scope = {
        "conn": {"baseUrl": "https://api.acme.com", "accountId": "acct 1"},
        "secret": {"apiKey": "k3y"},
        "input": {"phone": "+15551234", "contact": {"id": "c_1"}, "tags": ["vip", "new"]},
        "event": {"from": "+15551234"},
        "vars": {},
    }
    lookup = spec.operations["lookupContact"]
    assert lookup.url.render(scope) == (
        "https://api.acme.com/v2/contacts?phone=%2B15551234&account=acct%201"
    )
    assert [(name, t.render(scope)) for name, t in lookup.headers] == [
        ("Accept", "application/json")
    ]
    ticket = spec.operations["createTicket"]
    assert ticket.body is not None
    assert ticket.body.render(scope) == {
        "subject": "Call from +15551234",
        "contact": {"id": "c_1", "tags": ["vip", "new"], "first": "vip"},
        "priority": 3,
        "caller": "+15551234",
    }
    assert ticket.auth is not None
    assert (ticket.auth.kind, ticket.auth.name) == ("header", "X-Api-Key")
    assert ticket.auth.templates["value"].render(scope) == "k3y"
    assert dict(ticket.headers)["X-Trace"].render(scope) == "none"


def test_mappings_and_transform_are_compiled(spec: CompiledSpec) -> None:
    """Default output mappings and the transform run over a parsed response."""
    op = spec.operations["lookupContact"]
    response = {"results": [{"id": "c_1", "tier": "gold"}]}
    assert op.default_output_mappings.apply(response) == {"contactId": "c_1", "contactName": None}
    assert op.transform is not None
    assert op.transform.apply(response) == {"vip": True}
    assert spec.operations["ping"].transform is None


def test_json_and_yaml_compile_to_the_same_spec() -> None:
    """The JSON form of a spec compiles to the same content hash as its YAML form."""
    from_json = compile_spec(load_spec_text(json.dumps(acme())))
    assert from_json.content_hash == compile_spec(acme()).content_hash


def test_allowed_origins_render_from_a_connection_config(spec: CompiledSpec) -> None:
    """Origins are scheme://host:port with the default port explicit and the host lower-case."""
    assert spec.render_allowed_origins(CONN) == frozenset({"https://api.acme.com:443"})
    assert spec.render_allowed_origins({"baseUrl": "http://10.0.0.5:8080/x"}) == frozenset(
        {"http://10.0.0.5:8080"}
    )


def test_literal_origins_are_allowed() -> None:
    """A literal origin needs no config, and several origins are all rendered."""
    doc = acme()
    doc["connection"]["allowedOrigins"] = ["https://auth.acme.com", "{{conn.baseUrl}}"]
    compiled = compile_spec(doc)
    assert compiled.render_allowed_origins(CONN) == frozenset(
        {"https://auth.acme.com:443", "https://api.acme.com:443"}
    )


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"baseUrl": "ftp://files.acme.com"}, "does not render to an http or https origin"),
        ({"baseUrl": "not a url"}, "does not render to an http or https origin"),
        ({"baseUrl": "https://user:pw@api.acme.com"}, "does not render to an http or https"),
        ({}, "needs conn.baseUrl from the connection's config"),
    ],
)
def test_an_origin_that_does_not_render_is_invalid(
    spec: CompiledSpec, config: dict[str, Any], fragment: str
) -> None:
    """A config whose origin is missing or not http(s) is refused, naming the origin's place."""
    with pytest.raises(InvalidError) as caught:
        spec.render_allowed_origins(config)
    error = caught.value
    assert (error.code, error.field) == ("invalid_origin", "connection.allowedOrigins[0]")
    assert fragment in error.message
    assert "pw" not in error.message


def test_a_spec_without_secrets_needs_no_origins() -> None:
    """With no ``{{secret.*}}`` anywhere, allowedOrigins may be left out."""
    doc = {
        "slug": "weather",
        "name": "Weather",
        "operations": {"now": {"method": "GET", "url": "https://api.weather.test/now"}},
    }
    compiled = compile_spec(doc)
    assert compiled.connection_auth.kind == "none"
    assert compiled.allowed_origins == ()
    assert compiled.render_allowed_origins({}) == frozenset()
    assert compiled.operations["now"].default_output_mappings.apply({}) == {}


# -- every kind of problem -------------------------------------------------------------------


def op(doc: dict[str, Any], key: str = "lookupContact") -> dict[str, Any]:
    operation: dict[str, Any] = doc["operations"][key]
    return operation


CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str, str]] = [
    (
        "template syntax",
        lambda d: op(d)["query"].update(phone="{{input.phone"),
        "operations.lookupContact.query.phone",
        "unclosed placeholder",
    ),
    (
        "template syntax in the url",
        lambda d: op(d).update(url="{{conn.baseUrl}}/v2/{{}}"),
        "operations.lookupContact.url",
        "empty placeholder",
    ),
    (
        "template syntax deep in a body",
        lambda d: op(d, "createTicket")["body"]["contact"].update(id="{{input.contact.id | up}}"),
        "operations.createTicket.body.contact.id",
        "the only filter is '| default",
    ),
    (
        "unknown scope",
        lambda d: op(d)["query"].update(phone="{{inptu.phone}}"),
        "operations.lookupContact.query.phone",
        "names no scope",
    ),
    (
        "flow scope in connection auth",
        lambda d: d["connection"]["auth"].update(token="{{vars.token}}"),
        "connection.auth.token",
        "may read only {{conn.*}} and {{secret.*}}",
    ),
    (
        "input in connection auth",
        lambda d: d["connection"]["auth"].update(token="{{input.phone}}"),
        "connection.auth.token",
        "may read only {{conn.*}} and {{secret.*}}",
    ),
    (
        "input in an oauth token request",
        lambda d: op(d).update(
            auth={
                "type": "oauth2ClientCredentials",
                "tokenUrl": "{{conn.baseUrl}}/oauth/token",
                "clientId": "{{input.phone}}",
                "clientSecret": "{{secret.apiKey}}",
            }
        ),
        "operations.lookupContact.auth.clientId",
        "may read only {{conn.*}} and {{secret.*}}",
    ),
    (
        "input not in inputSchema",
        lambda d: op(d)["query"].update(phone="{{input.phon}}"),
        "operations.lookupContact.query.phone",
        "inputSchema does not declare; add it under its properties or fix the name "
        "(declared there: phone)",
    ),
    (
        "nested input not in inputSchema",
        lambda d: op(d, "createTicket")["body"]["contact"].update(id="{{input.contact.uid}}"),
        "operations.createTicket.body.contact.id",
        "reads input.contact.uid",
    ),
    (
        "conn not in config schema",
        lambda d: op(d)["query"].update(account="{{conn.acount}}"),
        "operations.lookupContact.query.account",
        "connection.config does not declare",
    ),
    (
        "secret not declared",
        lambda d: d["connection"]["auth"].update(token="{{secret.apiKy}}"),
        "connection.auth.token",
        "connection.secrets does not declare; declare it there or fix the name",
    ),
    (
        "all secrets at once",
        lambda d: op(d)["headers"].update(Leak="{{secret}}"),
        "operations.lookupContact.headers.Leak",
        "name one secret",
    ),
    (
        "secret used without allowedOrigins",
        lambda d: d["connection"].pop("allowedOrigins"),
        "connection.allowedOrigins",
        "declares no allowedOrigins",
    ),
    (
        "secret in allowedOrigins",
        lambda d: d["connection"].update(allowedOrigins=["https://{{secret.apiKey}}"]),
        "connection.allowedOrigins[0]",
        "may read only {{conn.*}}",
    ),
    (
        "literal origin that is not http(s)",
        lambda d: d["connection"]["allowedOrigins"].append("ftp://files.acme.com"),
        "connection.allowedOrigins[1]",
        "http or https URL",
    ),
    (
        "bad JMESPath in default mappings",
        lambda d: op(d)["defaultOutputMappings"].update(contactId="results[0"),
        "operations.lookupContact.defaultOutputMappings.contactId",
        "not a valid JMESPath expression",
    ),
    (
        "bad JMESPath in transform",
        lambda d: op(d).update(transform="{vip: results[0].tier =="),
        "operations.lookupContact.transform",
        "not a valid JMESPath expression",
    ),
    (
        "unknown JMESPath function",
        lambda d: op(d).update(transform="{n: count(results)}"),
        "operations.lookupContact.transform",
        "not a JMESPath function",
    ),
    (
        "invalid JSON Schema type",
        lambda d: op(d)["inputSchema"]["properties"]["phone"].update(type="strng"),
        "operations.lookupContact.inputSchema.properties.phone.type",
        "unknown type; use one of string",
    ),
    (
        "invalid JSON Schema required",
        lambda d: op(d)["inputSchema"].update(required="phone"),
        "operations.lookupContact.inputSchema.required",
        "is not of type 'array'",
    ),
    (
        "invalid output schema",
        lambda d: op(d).update(outputSchema={"type": "object", "minProperties": -1}),
        "operations.lookupContact.outputSchema.minProperties",
        "minimum",
    ),
    (
        "invalid config schema",
        lambda d: d["connection"]["config"].update(required="baseUrl"),
        "connection.config.required",
        "is not of type 'array'",
    ),
    (
        "remote $ref",
        lambda d: op(d)["inputSchema"].update({"$ref": "http://169.254.169.254/latest"}),
        "operations.lookupContact.inputSchema.$ref",
        "only local references",
    ),
    (
        "$id",
        lambda d: op(d)["inputSchema"].update({"$id": "file:///etc/passwd"}),
        "operations.lookupContact.inputSchema.$id",
        "not supported",
    ),
    (
        "unresolvable local $ref",
        lambda d: op(d)["inputSchema"].update({"$ref": "#/definitions/nope"}),
        "operations.lookupContact.inputSchema",
        "does not compile",
    ),
    (
        "unsupported draft",
        lambda d: op(d)["inputSchema"].update(
            {"$schema": "https://json-schema.org/draft/2020-12/schema"}
        ),
        "operations.lookupContact.inputSchema.$schema",
        "drafts 4, 6 and 7",
    ),
    (
        "test.operation unknown",
        lambda d: d["connection"]["test"].update(operation="pong"),
        "connection.test.operation",
        "use one of: ping, lookupContact, createTicket",
    ),
    (
        "test operation needs inputs",
        lambda d: d["connection"]["test"].update(operation="lookupContact"),
        "connection.test",
        "add connection.test.inputs",
    ),
    (
        "test inputs that do not fit",
        lambda d: d["connection"].update(
            test={"operation": "lookupContact", "inputs": {"phone": 5}}
        ),
        "connection.test.inputs",
        "inputs.phone must be string",
    ),
    (
        "timeoutMs 0",
        lambda d: op(d).update(timeoutMs=0),
        "operations.lookupContact.timeoutMs",
        "from 1 to 30000",
    ),
    (
        "timeoutMs 40000",
        lambda d: op(d).update(timeoutMs=40000),
        "operations.lookupContact.timeoutMs",
        "from 1 to 30000",
    ),
    (
        "retry 5",
        lambda d: op(d).update(retry={"attempts": 5}),
        "operations.lookupContact.retry.attempts",
        "from 1 to 3",
    ),
    (
        "bad slug",
        lambda d: d.update(slug="Acme_CRM"),
        "slug",
        "lower-case letters, digits and '-'",
    ),
    (
        "unknown top-level key",
        lambda d: d.update(version=4),
        "version",
        "not a field here",
    ),
    (
        "bad method",
        lambda d: op(d).update(method="FETCH"),
        "operations.lookupContact.method",
        "not one of GET, POST",
    ),
    (
        "bad header name",
        lambda d: op(d)["headers"].update({"X Trace": "1"}),
        "operations.lookupContact.headers.X Trace",
        "not an HTTP header name",
    ),
    (
        "header the transport owns",
        lambda d: op(d)["headers"].update({"Host": "evil.test"}),
        "operations.lookupContact.headers.Host",
        "set by the transport",
    ),
    (
        "header value with a line break",
        lambda d: op(d)["headers"].update({"X-A": "a\r\nX-B: b"}),
        "operations.lookupContact.headers.X-A",
        "CR, LF or NUL",
    ),
    (
        "url that is not http(s)",
        lambda d: op(d).update(url="ftp://files.acme.com/x"),
        "operations.lookupContact.url",
        "absolute http or https URL",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_kind_of_problem_has_its_exact_path_and_a_fix(
    mutate: Callable[[dict[str, Any]], Any], path: str, fragment: str
) -> None:
    """Each problem is reported at its exact document path with a message saying the fix."""
    found = problems(mutate)
    assert list(found) == [path], found
    assert fragment in found[path]


def test_several_problems_are_all_reported_at_once() -> None:
    """One SpecError lists every semantic problem, across connection and operations."""

    def break_many(doc: dict[str, Any]) -> None:
        doc["connection"]["auth"]["token"] = "{{secret.apiKy}}"
        op(doc)["query"]["phone"] = "{{input.phon}}"
        op(doc)["defaultOutputMappings"]["contactId"] = "results[0"
        op(doc)["inputSchema"]["properties"]["phone"]["type"] = "strng"
        op(doc, "createTicket")["body"]["subject"] = "{{conn.nope}}"
        doc["connection"]["test"]["operation"] = "pong"

    found = problems(break_many)
    assert set(found) == {
        "connection.auth.token",
        "operations.lookupContact.query.phone",
        "operations.lookupContact.defaultOutputMappings.contactId",
        "operations.lookupContact.inputSchema.properties.phone.type",
        "operations.createTicket.body.subject",
        "connection.test.operation",
    }


def test_a_spec_error_is_an_invalid_error_with_a_summary() -> None:
    """SpecError is an InvalidError (code spec_invalid) whose message lists the problems."""
    doc = acme()
    op(doc)["query"]["phone"] = "{{input.phon}}"
    with pytest.raises(InvalidError) as caught:
        compile_spec(doc)
    assert caught.value.code == "spec_invalid"
    assert str(caught.value).startswith(
        "the spec has 1 problem: operations.lookupContact.query.phone: {{input.phon}} reads"
    )


LIST_OF_OBJECTS = {
    "type": "object",
    "properties": {"a": {"type": "array", "items": {"properties": {"b": {"type": "string"}}}}},
}


@pytest.mark.parametrize(
    ("schema", "template"),
    [
        (LIST_OF_OBJECTS, "{{input.a[2].b}}"),
        ({"allOf": [{"properties": {"a": {"type": "string"}}}]}, "{{input.a}}"),
        (
            {"definitions": {"p": {"properties": {"n": {}}}}, "$ref": "#/definitions/p"},
            "{{input.n}}",
        ),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "{{input.anything}}"),
        ({"type": "object", "patternProperties": {"^x_": {}}}, "{{input.x_id}}"),
        ({"type": "object"}, "{{input}}"),
    ],
)
def test_declared_input_paths_follow_the_schema(schema: dict[str, Any], template: str) -> None:
    """Nested properties, list items, allOf, local $ref and open maps all count as declared."""
    doc = acme()
    op(doc)["inputSchema"] = schema
    op(doc)["query"] = {"q": template}
    assert compile_spec(doc).operations["lookupContact"].input_schema == schema


def test_compiling_does_not_change_the_document() -> None:
    """Schemas are compiled from copies: the document and its hash stay as given."""
    doc = acme()
    op(doc)["inputSchema"]["definitions"] = {"p": {"type": "string"}}
    op(doc)["inputSchema"]["properties"]["phone"] = {"$ref": "#/definitions/p"}
    before = copy.deepcopy(doc)
    compiled = compile_spec(doc)
    assert doc == before
    assert compiled.content_hash == content_hash(before)


# -- inputs and config on the call path ------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "field", "fragment"),
    [
        ({"contact": {"id": 7}}, "inputs.contact.id", "must be string"),
        ({}, "inputs.contact", "is required"),
        ({"contact": {}}, "inputs.contact.id", "is required"),
        ({"contact": {"id": "c"}, "tags": ["ok", 99]}, "inputs.tags[1]", "must be string"),
        ({"contact": {"id": "c"}, "priority": 9}, "inputs.priority", "smaller than or equal to 5"),
        ({"contact": {"id": "c"}, "phone": 15551234}, "inputs.phone", "rule 'type'"),
        ("secret-ish", "inputs", "must be object"),
    ],
)
def test_validate_input_names_the_field_and_rule_never_the_value(
    spec: CompiledSpec, inputs: Any, field: str, fragment: str
) -> None:
    """Input violations are ``input_invalid`` at ``inputs.<path>``, without the value."""
    with pytest.raises(InvalidError) as caught:
        spec.operations["createTicket"].validate_input(inputs)
    error = caught.value
    assert (error.code, error.field) == ("input_invalid", field)
    assert error.message.startswith(field)
    assert fragment in error.message
    assert "15551234" not in error.message
    assert "99" not in error.message
    assert "secret-ish" not in error.message
    assert error.__cause__ is None


def test_valid_inputs_pass_and_are_not_changed(spec: CompiledSpec) -> None:
    """Valid inputs pass; validation fills no defaults into the caller's data."""
    inputs = {"contact": {"id": "c_1"}, "tags": ["vip"]}
    spec.operations["createTicket"].validate_input(inputs)
    assert inputs == {"contact": {"id": "c_1"}, "tags": ["vip"]}
    spec.operations["ping"].validate_input({})


def test_an_undeclared_input_is_named_when_the_schema_is_closed() -> None:
    """With additionalProperties false, the extra input is named as the field."""
    doc = acme()
    op(doc)["inputSchema"]["additionalProperties"] = False
    compiled = compile_spec(doc)
    with pytest.raises(InvalidError) as caught:
        compiled.operations["lookupContact"].validate_input({"phone": "+1", "phnoe": "+1555"})
    assert caught.value.field == "inputs.phnoe"
    assert "+1555" not in caught.value.message


@pytest.mark.parametrize(
    ("config", "field", "fragment"),
    [
        ({}, "config.baseUrl", "is required"),
        ({"baseUrl": 443}, "config.baseUrl", "must be string"),
        ({"baseUrl": "not a uri at all"}, "config.baseUrl", "must be uri"),
        ({"baseUrl": "https://a.test", "accountId": ["x9z"]}, "config.accountId", "rule 'type'"),
    ],
)
def test_validate_config_names_the_field_never_the_value(
    spec: CompiledSpec, config: dict[str, Any], field: str, fragment: str
) -> None:
    """Config violations are ``config_invalid`` at ``config.<path>``, without the value."""
    with pytest.raises(InvalidError) as caught:
        spec.validate_config(config)
    assert (caught.value.code, caught.value.field) == ("config_invalid", field)
    assert fragment in caught.value.message
    assert "not a uri at all" not in caught.value.message
    assert "x9z" not in caught.value.message
    spec.validate_config(CONN)


def test_a_retry_that_could_never_happen_is_refused() -> None:
    """A POST with retry and no Idempotency-Key is refused at publish, naming the retry."""
    found = problems(lambda doc: op(doc).update(method="POST", retry={"attempts": 2}))
    assert list(found) == ["operations.lookupContact.retry"]
    assert "Idempotency-Key" in found["operations.lookupContact.retry"]


def test_a_post_with_an_idempotency_key_may_retry() -> None:
    """With an Idempotency-Key header the same retry compiles."""
    doc = acme()
    op(doc).update(
        method="POST",
        retry={"attempts": 2},
        headers={"Idempotency-Key": "{{input.phone}}"},
    )
    assert compile_spec(doc).operations["lookupContact"].retry is not None


def test_a_backtracking_pattern_refuses_the_input_instead_of_holding_the_loop() -> None:
    """``^(a|a)+$`` against 40 a's and a '!' takes Python's ``re`` about 2^40 steps; the
    compiled validator gives up after its time limit and refuses the input (``invalid``).
    It runs in a thread only so that a regression fails here instead of hanging the suite."""
    doc = acme()
    op(doc)["inputSchema"]["properties"]["phone"] = {"type": "string", "pattern": "^(a|a)+$"}
    operation = compile_spec(doc).operations["lookupContact"]
    operation.validate_input({"phone": "aaaa"})
    outcome: list[BaseException] = []

    def validate() -> None:
        try:
            operation.validate_input({"phone": "a" * 40 + "!"})
        except InvalidError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=validate, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the pattern search was not bounded"
    (error,) = outcome
    assert isinstance(error, InvalidError)
    assert (error.code, error.field) == ("input_invalid", "inputs.phone")
    assert "rule 'pattern'" in error.message


def test_patterns_are_searched_not_anchored() -> None:
    """A JSON Schema pattern matches anywhere unless anchored, as the standard says."""
    doc = acme()
    op(doc)["inputSchema"]["properties"]["phone"] = {"type": "string", "pattern": "[0-9]{4}"}
    operation = compile_spec(doc).operations["lookupContact"]
    operation.validate_input({"phone": "+1 555 1234"})
    with pytest.raises(InvalidError):
        operation.validate_input({"phone": "+1 555 12"})
