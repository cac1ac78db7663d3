"""JSON text as run history stores it, without ``json.dumps``'s set-up on every call.

``json.dumps`` builds an encoder object and a C encoder on each call (~1.3 us here); run history
encodes several small values for every run it stores, so the C encoder is built once. Output is
the same as ``json.dumps`` byte for byte, with one difference: there is no cycle check, so a
cyclic value raises ``RecursionError`` rather than ``ValueError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

__all__ = ["dumps", "dumps_compact", "dumps_unicode", "scalar"]


def _encoder(
    *, ensure_ascii: bool, allow_nan: bool, separators: tuple[str, str] | None = None
) -> Callable[[Any], str]:
    reference = json.JSONEncoder(
        ensure_ascii=ensure_ascii, allow_nan=allow_nan, separators=separators
    )
    try:
        from _json import make_encoder  # noqa: PLC0415  -- CPython's accelerator, optional
    except ImportError:  # pragma: no cover  -- another Python: the encoder's own path
        return reference.encode
    encode = make_encoder(
        None,  # no markers: a cycle ends in RecursionError (see the module docstring)
        reference.default,
        encode_basestring_ascii if ensure_ascii else encode_basestring,
        None,
        reference.key_separator,
        reference.item_separator,
        False,  # sort_keys
        False,  # skipkeys
        allow_nan,
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


#: ``json.dumps(value, allow_nan=False)``: strict JSON, which both databases accept.
dumps = _encoder(ensure_ascii=True, allow_nan=False)
#: ``json.dumps(value, ensure_ascii=False)``: body previews.
dumps_unicode = _encoder(ensure_ascii=False, allow_nan=True)
#: ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``: request bodies.
dumps_compact = _encoder(ensure_ascii=False, allow_nan=True, separators=(",", ":"))


def scalar(value: Any) -> str:
    """``dumps(value)``, faster for the strings, numbers and nulls that make up most fields."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return dumps(value)
