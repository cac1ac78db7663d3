"""The storage layer's errors: a missing row, a conflicting write, a refused change.

    CalloutError
    └── StoreError           code "store_error" (or a more precise code given at the raise site)
        ├── NotFound         code "not_found": no such row visible to the caller's org
        ├── Forbidden        code "forbidden": visible to the org but owned by someone else
        └── StoreConflict    code "conflict", "slug_taken", "name_taken", "invalid_transition",
                             "keys_in_use", ...: the write contradicts what is stored

Messages name ids, slugs and field names, never a secret value or a ciphertext.
"""

from __future__ import annotations

from callout.errors import CalloutError

__all__ = ["Forbidden", "NotFound", "StoreConflict", "StoreError"]


class StoreError(CalloutError):
    """A read or write of the database could not be done as asked."""

    code = "store_error"


class NotFound(StoreError):
    """No row with that id is visible to the caller (another org's rows are never visible)."""

    code = "not_found"


class Forbidden(StoreError):
    """The row is visible to the caller's org but only its owner may change it."""

    code = "forbidden"


class StoreConflict(StoreError):
    """The write contradicts stored state: a taken slug or name, a backwards status, ..."""

    code = "conflict"
