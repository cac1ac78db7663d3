"""Reading a node's config with errors that name the node, the field and the fix."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from callout.errors import FlowValidationError
from callout.spec.flow import NodeSpec
from callout.transport import RetryPolicy, TransportConfig

__all__ = ["ConfigReader"]

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
MAX_RETRY_ATTEMPTS = 3


class ConfigReader:
    """Typed access to ``node.config`` (or a sub-object of it) for a node type's ``compile``."""

    def __init__(
        self,
        node: NodeSpec,
        limits: TransportConfig | None = None,
        data: Mapping[str, Any] | None = None,
        prefix: str = "config",
    ) -> None:
        self.node = node
        self.limits = limits if limits is not None else TransportConfig()
        self.data: Mapping[str, Any] = node.config if data is None else data
        self.prefix = prefix

    def field(self, key: str) -> str:
        """The document path of ``key``, e.g. ``nodes[2].config.headers.X-Trace``."""
        return f"{self.node.where}.{self.prefix}.{key}"

    def fail(self, key: str, problem: str) -> FlowValidationError:
        return FlowValidationError(
            f"node '{self.node.id}': '{self.prefix}.{key}' {problem}",
            field=self.field(key),
            node_id=self.node.id,
        )

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def refuse_unknown(self, known: Iterable[str]) -> None:
        """Reject misspelt keys instead of silently ignoring them."""
        allowed = set(known)
        for key in self.data:
            if key not in allowed:
                raise self.fail(
                    key, f"is not a known field; known fields: {', '.join(sorted(allowed))}"
                )

    def string(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {type(value).__name__}")
        if required and not value:
            raise self.fail(key, "must not be empty")
        return value

    def choice(
        self,
        key: str,
        options: Sequence[str],
        *,
        default: str | None = None,
        required: bool = False,
        upper: bool = False,
    ) -> str:
        value = self.data.get(key)
        if value is None and not required and default is not None:
            return default
        if isinstance(value, str) and upper:
            value = value.upper()
        if value not in options:
            raise self.fail(key, f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.fail(key, "must be an object of string names to string templates")
        for name in value:
            if not _HEADER_NAME.match(name):
                raise self.fail(f"{key}.{name}", "is not a valid header name")
        return dict(value)

    def header_name(self, key: str) -> str:
        value = self.string(key, required=True)
        if not _HEADER_NAME.match(value):
            raise self.fail(key, "must be a header name (letters, digits and -)")
        return value

    def var_name(self, key: str, *, default: str | None = None) -> str:
        """A variable name; required when there is no ``default``."""
        value = self.data.get(key, default)
        if not isinstance(value, str) or not _VAR_NAME.match(value):
            raise self.fail(
                key,
                "must be a variable name: a letter or underscore, then letters, digits or "
                f"underscores (got {value!r})",
            )
        return value

    def timeout_ms(self, key: str = "timeoutMs") -> int:
        value = self.data.get(key)
        if value is None:
            return self.limits.default_timeout_ms
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be a whole number of milliseconds")
        if not 1 <= value <= self.limits.max_timeout_ms:
            raise self.fail(key, f"must be between 1 and {self.limits.max_timeout_ms} ms")
        return value

    def retry(self, key: str = "retry") -> RetryPolicy | None:
        sub = self.sub(key)
        if sub is None:
            return None
        sub.refuse_unknown({"attempts"})
        attempts = sub.raw("attempts", 1)
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise sub.fail("attempts", "must be a whole number")
        if not 1 <= attempts <= MAX_RETRY_ATTEMPTS:
            raise sub.fail("attempts", f"must be between 1 and {MAX_RETRY_ATTEMPTS}")
        return RetryPolicy(attempts=attempts)

    def sub(self, key: str) -> ConfigReader | None:
        """A reader over the object at ``key``, or None when it is absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be an object")
        return ConfigReader(self.node, self.limits, value, f"{self.prefix}.{key}")
