"""Configuration from ``CALLOUT_*`` environment variables, read once at the edge (CLI, app).

The engine itself never reads the environment: ``Settings.engine_config()`` turns these into the
explicit objects it takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from callout.engine.services import EngineConfig, RunLimits
from callout.guard import EgressPolicy
from callout.transport import TransportConfig

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every setting of the service and CLI; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="CALLOUT_", extra="ignore")

    egress_allow: str = Field(
        "",
        description="CIDRs and host names the egress guard admits although they are internal "
        "(comma-separated), e.g. '10.20.0.0/16,crm.corp.example'.",
    )
    egress_extra_ports: str = Field(
        "", description="Ports allowed beyond 80, 443 and 1024-65535 (comma-separated)."
    )
    default_timeout_ms: int = Field(8000, ge=1, description="Default deadline of one call.")
    max_timeout_ms: int = Field(
        30000, ge=1, le=30000, description="Largest timeoutMs a node may set."
    )
    connect_timeout_ms: int = Field(3000, ge=1, description="Deadline of the connect phase.")
    max_response_bytes: int = Field(
        1 << 20, ge=1, le=10 << 20, description="Response size cap (at most 10 MiB)."
    )
    run_max_steps: int = Field(200, ge=1, description="Steps after which a run fails (loops).")
    run_deadline_ms: int = Field(120_000, ge=1, description="Wall-clock deadline of one run.")
    data_dir: Path = Field(
        Path(".callout"), description="Where the SQLite database and key file live."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; SQLite in data_dir if unset."
    )
    master_keys: SecretStr | None = Field(
        None, description="Master keys as 'id:base64key,...', primary first; else the key file."
    )
    history_days: int = Field(30, ge=1, description="Days of run history kept.")
    history_writer: Literal["process", "inline"] = Field(
        "process",
        description="Where run history is scrubbed, encoded and stored: 'process', a writer "
        "process the service hands each run to (its CPU off the call path), or 'inline', a "
        "task in the serving process. CLI commands that run one flow and exit use 'inline' "
        "unless this is set.",
    )
    history_writer_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How much lower than the service's the history writer process's CPU "
        "priority is (0 to 19, as nice): where the two share a core, calls come first and "
        "history is written with the CPU they leave. 0 gives the writer an equal share; 19 "
        "yields the most, but starves history (and, once its queue is full, the calls that "
        "wait for it) on a host where other work keeps every core busy.",
    )
    log_level: str = Field("INFO", description="Level of the JSON log lines on stderr.")
    cache_ttl_ms: int = Field(
        5000,
        ge=0,
        description="How long a replica trusts its cached spec status and connection revision "
        "before re-reading them (changes made in the same process apply at once).",
    )

    def egress_policy(self) -> EgressPolicy:
        ports = [int(p) for p in self.egress_extra_ports.replace(",", " ").split()]
        base = EgressPolicy.from_env_value(self.egress_allow)
        return EgressPolicy(base.allow_networks, base.allow_hosts, frozenset(ports))

    def engine_config(self) -> EngineConfig:
        """The explicit engine configuration these settings describe."""
        if self.default_timeout_ms > self.max_timeout_ms:
            raise ValueError(
                "CALLOUT_DEFAULT_TIMEOUT_MS must not exceed CALLOUT_MAX_TIMEOUT_MS "
                f"({self.default_timeout_ms} > {self.max_timeout_ms})"
            )
        return EngineConfig(
            egress=self.egress_policy(),
            transport=TransportConfig(
                default_timeout_ms=self.default_timeout_ms,
                max_timeout_ms=self.max_timeout_ms,
                connect_timeout_ms=self.connect_timeout_ms,
                max_response_bytes=self.max_response_bytes,
            ),
            run=RunLimits(max_steps=self.run_max_steps, deadline_ms=self.run_deadline_ms),
        )
