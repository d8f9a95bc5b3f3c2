"""The arguments of the admin schema's fields, checked: statuses, dates, usage periods.

A bad value is a ``400 invalid-api-params`` naming what was expected, raised by the
resolver before anything is loaded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs

from crucible import errors
from crucible.sessions.model import LIVE_STATUSES
from crucible.usage import MAX_RANGE_DAYS, Period

SESSION_STATUSES = (*LIVE_STATUSES, "TERMINATED", "ERROR")
AGENT_STATUSES = ("ALIVE", "LOST", "RESTARTING", "TERMINATED")


def status(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise errors.InvalidAPIParameters(
            f"Unknown {what} status {value!r}; expected one of {', '.join(allowed)}."
        )
    return value


def session_status(value: str | None) -> str | None:
    return status(value, SESSION_STATUSES, "session")


def agent_status(value: str | None) -> str | None:
    return status(value, AGENT_STATUSES, "agent")


def str_arg(value: Any) -> str | None:
    # `user_id` may arrive as an integer through an `Int!` variable (spec 7.4 trap).
    return None if value is None else str(value)


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise errors.InvalidAPIParameters(f"'{name}' must be a date (YYYY-MM-DD).") from None


@attrs.frozen
class UsageRange:
    """The days and the period a usage query covers."""

    first: date
    last: date
    period: Period

    @classmethod
    def from_arguments(
        cls, start_date: str | None, end_date: str | None, period: str | None
    ) -> UsageRange:
        """Today when no date is given; at most `MAX_RANGE_DAYS` days."""
        try:
            chosen = Period(period or "day")
        except ValueError:
            raise errors.InvalidAPIParameters(
                f"'period' must be one of {', '.join(p.value for p in Period)}."
            ) from None
        last = _day(end_date, "end_date") or datetime.now(UTC).date()
        first = _day(start_date, "start_date") or last
        if first > last:
            raise errors.InvalidAPIParameters("'start_date' is after 'end_date'.")
        if last - first > timedelta(days=MAX_RANGE_DAYS):
            raise errors.InvalidAPIParameters(
                f"A usage query covers at most {MAX_RANGE_DAYS} days."
            )
        return cls(first, last, chosen)
