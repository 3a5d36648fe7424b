"""The run's calendar: today is the machine's local date, as cron's schedule is (the `TZ`
variable sets it: `TZ=America/Sao_Paulo` on a server kept on UTC). A run's date, a backfill, a
stale export and the day still in progress are all counted from it."""

from __future__ import annotations

from datetime import date, datetime


def today() -> date:
    """The local date now."""
    return datetime.now().date()
