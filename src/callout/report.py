"""A readable account of a run: the path taken, each call made, and why each route was chosen."""

from __future__ import annotations

import json
from typing import Any

from callout.engine.runner import RunResult

__all__ = ["describe_run"]


def describe_run(result: RunResult) -> str:
    """Several lines that a flow builder can read to see why the call took the path it took."""
    lines = [f"run {result.run_id} of flow '{result.flow_id}': {result.status}"]
    for event in result.events:
        lines.append(f"  {event.node_id} ({event.node_type})")
        detail = event.details()
        request = detail.get("request")
        if request:
            lines.append(f"    {request['method']} {request['url']}")
        if "outcome" in detail:
            response = detail.get("response")
            took = f" in {response['durationMs']:.1f} ms" if response else ""
            code = f" [{detail['errorCode']}]" if detail.get("errorCode") else ""
            lines.append(
                f"    -> status {detail['status']}, outcome {detail['outcome']}{code}{took}"
                f", attempts {detail['attempts']}"
            )
        for name, value in event.vars_changed.items():
            lines.append(f"    vars.{name} = {_short(value)}")
        if event.error is not None:
            lines.append(f"    error {event.error['code']}: {event.error['message']}")
        elif event.case_index is not None:
            lines.append(f"    case #{event.case_index} matched -> {event.route}")
        elif event.route is not None:
            lines.append(f"    -> {event.route}")
    lines.append(f"  path: {' -> '.join(result.path)}  (ended by: {result.ended_by})")
    if result.error is not None:
        lines.append(
            f"  error {result.error['code']} at {result.error['nodeId']}: {result.error['message']}"
        )
    return "\n".join(lines)


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
