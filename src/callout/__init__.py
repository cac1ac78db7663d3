"""Callout: runs the apiCall node of contact-center call flows, safely, bounded and fast."""

from callout.errors import (
    CalloutError,
    DeadlineExceeded,
    EgressDenied,
    FlowError,
    FlowValidationError,
    InvalidError,
    NetworkError,
    Outcome,
    TemplateError,
)

__all__ = [
    "CalloutError",
    "DeadlineExceeded",
    "EgressDenied",
    "FlowError",
    "FlowValidationError",
    "InvalidError",
    "NetworkError",
    "Outcome",
    "TemplateError",
]
