"""The lab's one error: the lab could not start, or a lab operation failed."""

from __future__ import annotations


class LabError(RuntimeError):
    """The lab could not start or a lab operation failed."""
