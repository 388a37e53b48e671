"""The exception raised for bad batch input."""

from __future__ import annotations


class BatchValidationError(ValueError):
    """Bad input for a batch: names the system index and the field at fault.

    Raised before any state is changed.
    """

    def __init__(self, message: str, *, system: int | None = None, field: str | None = None):
        where = []
        if system is not None:
            where.append(f"system {system}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.system = system
        self.field = field
        self.detail = message
        """The message without the system and field."""
