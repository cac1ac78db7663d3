"""The ``callout`` command: thin Typer commands over the engine and the services."""

import callout.cli.history_commands
import callout.cli.store_commands  # noqa: F401  registers init, spec, conn, keys, audit
from callout.cli.core import app, main

__all__ = ["app", "main"]
