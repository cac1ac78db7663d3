"""What the engine hands to running nodes: the transport and the engine's limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from callout.engine.auth import OAuthTokens
from callout.engine.sources import IntegrationSource
from callout.guard import EgressPolicy
from callout.transport import Transport, TransportConfig

__all__ = ["EngineConfig", "RunLimits", "Services"]

#: A run ends with an error after this many node steps (a loop in a flow).
DEFAULT_MAX_STEPS = 200
#: A run ends with an error after this long, whatever its nodes' own timeouts.
DEFAULT_RUN_DEADLINE_MS = 120_000


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Bounds on one run, so that a loop in a flow ends with a clear error."""

    max_steps: int = DEFAULT_MAX_STEPS
    deadline_ms: int = DEFAULT_RUN_DEADLINE_MS

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("RunLimits.max_steps must be at least 1")
        if self.deadline_ms < 1:
            raise ValueError("RunLimits.deadline_ms must be at least 1")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything an engine is configured with, as explicit objects (no environment reads)."""

    egress: EgressPolicy = field(default_factory=EgressPolicy)
    transport: TransportConfig = field(default_factory=TransportConfig)
    run: RunLimits = field(default_factory=RunLimits)


@dataclass(frozen=True, slots=True)
class Services:
    """Shared by every run of one engine."""

    config: EngineConfig
    transport: Transport
    #: Saved integrations and connections (None: integration mode answers ``invalid``).
    integrations: IntegrationSource | None = None
    oauth: OAuthTokens = field(default_factory=OAuthTokens)
