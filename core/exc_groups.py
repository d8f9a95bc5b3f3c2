"""Exception groups in log lines."""

from __future__ import annotations


def describe(error: BaseException) -> str:
    """One line for a log: every leaf of an exception group, not just the first."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(exc) for exc in error.exceptions)
    return str(error) or type(error).__name__
