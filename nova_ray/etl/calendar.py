"""Calendar features: Brazilian national, Bahia state and Salvador municipal holidays, weekends."""

from __future__ import annotations

from datetime import date, timedelta

import holidays
import pandas as pd
from dateutil.easter import easter

COLUMNS = [
    "date",
    "is_holiday",
    "holiday_level",
    "holiday_name",
    "is_carnival",
    "is_weekend",
    "day_of_week",
    "month",
]
LEVELS = ("national", "state", "municipal")  # priority when a day is several kinds of holiday
STATE = "BA"
LANGUAGE = "pt_BR"


def salvador_holidays(year: int) -> dict[date, str]:
    """Salvador municipal holidays (municipal law; Good Friday is already national)."""
    return {
        easter(year) + timedelta(days=60): "Corpus Christi",
        date(year, 6, 24): "São João",
        date(year, 12, 8): "Nossa Senhora da Conceição da Praia",
    }


def carnival_days(year: int) -> list[date]:
    """Carnaval Monday and Tuesday (a ``ponto facultativo``, not a legal holiday, but the city stops)."""
    e = easter(year)
    return [e - timedelta(days=48), e - timedelta(days=47)]


def holiday_table(years: range | list[int]) -> dict[date, tuple[str, str]]:
    """{day: (level, name)} for national, Bahia state and Salvador municipal holidays of `years`.

    A day that is a holiday at several levels keeps the highest level and all distinct names.
    """
    years = list(years)
    national = holidays.Brazil(years=years, language=LANGUAGE)
    state = holidays.Brazil(subdiv=STATE, years=years, language=LANGUAGE)
    found: dict[date, list[tuple[int, str]]] = {}
    for day, name in national.items():
        found.setdefault(day, []).append((0, name))
    for day, name in state.items():
        if day not in national:
            found.setdefault(day, []).append((1, name))
    for year in years:
        for day, name in salvador_holidays(year).items():
            found.setdefault(day, []).append((2, name))
    out = {}
    for day, entries in found.items():
        names: list[str] = []
        for _, name in sorted(entries):
            for part in name.split("; "):
                if part not in names:
                    names.append(part)
        out[day] = (LEVELS[min(level for level, _ in entries)], "; ".join(names))
    return out


def calendar_features(start: str | date | pd.Timestamp, end: str | date | pd.Timestamp) -> pd.DataFrame:
    """One row per day from `start` to `end` (inclusive) with the calendar columns.

    ``is_holiday`` (0/1: national, Bahia or Salvador holiday), ``holiday_level``
    (national/state/municipal or ""), ``holiday_name`` ("" when none), ``is_carnival`` (0/1),
    ``is_weekend`` (0/1), ``day_of_week`` (0 = Monday), ``month`` (1-12).
    """
    days = pd.date_range(
        pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize(), freq="D", name="date"
    )
    years = range(days[0].year, days[-1].year + 1) if len(days) else range(0)
    table = holiday_table(years)
    carnival = {d for y in years for d in carnival_days(y)}
    py_days = [d.date() for d in days]
    info = [table.get(d, ("", "")) for d in py_days]
    return pd.DataFrame(
        {
            "date": days,
            "is_holiday": [int(bool(level)) for level, _ in info],
            "holiday_level": pd.Series([level for level, _ in info], dtype=object),
            "holiday_name": pd.Series([name for _, name in info], dtype=object),
            "is_carnival": [int(d in carnival) for d in py_days],
            "is_weekend": (days.dayofweek >= 5).astype(int),
            "day_of_week": days.dayofweek,
            "month": days.month,
        }
    ).astype(_INT_COLUMNS)


_INT_COLUMNS = {c: "int8" for c in ("is_holiday", "is_carnival", "is_weekend", "day_of_week", "month")}
