"""Deterministic demo data: spare-parts demand, stock snapshot and raw external factors.

``generate_demo(out, items, days, seed, start)`` writes ``demand.parquet`` (long format, one row
per item and day, zeros included), ``stock.parquet``, ``items.parquet`` (ground truth) and the
raw external factors under ``out/raw/`` in their real public formats (docs/raw-formats.md).

Generating process (numpy ``Generator``; factors from ``SeedSequence([seed, 0])`` so they do not
depend on ``items``, items and demand from ``[seed, 1]``):

- Rain (INMET A401 Salvador): seasonal wet-day probability and amount (wet season April-July),
  gamma amounts plus random storms, split over 24 hourly rows and quantised to 0.2 mm. The
  daily driver is exactly the sum of the written hourly rows (a few all-sensor outages, written
  ``-9999``, fall only on dry hours, so they do not change the sum).
- USD/BRL: mean-reverting log random walk on Brazilian business days (4 decimals), forward-
  filled over calendar days; IPCA monthly (dated the 1st); Selic target stepping at ~45-day
  meetings. Series start 30 days before ``start`` so the forward fill covers day one.
- 5G (Anatel): cumulative licensed sites follow an S-curve anchored in calendar time
  (midpoint 2024-09-01) with bursty daily additions; municipalities saturate at 417.
- Demand intensity per item and day = level x calendar (weekends, Bahia holidays low) x
  rainy-season rise (peak late May) x trend (cumulative 5G sites) x driver effect x noise.
  Driver effects (about a third of items, normalised to mean 1): ``rain`` rises with same-day
  and previous-days rain; ``fx`` falls as the BRL weakens (elasticity -5); ``5g`` follows the
  trailing 14-day mean of new-site additions.
- Patterns (Syntetos-Boylan labels, as generated): smooth (Poisson, 30%), erratic (gamma-
  Poisson, 20%), intermittent (rare occurrences of small sizes, 35%), lumpy (very rare, big
  log-normal sizes, 15%): half the items are slow movers with most days at zero. Drivers are
  assigned within each pattern (2/3 none, 1/9 each of rain, fx, 5g).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import holidays
import numpy as np
import polars as pl

__all__ = ["FAMILIES", "SITES", "demo_factors", "generate_demo"]

FAMILIES: dict[str, str] = {
    "CAB": "cables",
    "ELE": "electrical_material",
    "FIX": "fixings",
    "SAF": "safety_gear",
    "STL": "steel_parts",
}
SITES: dict[str, float] = {
    "Salvador": 0.40,
    "Feira de Santana": 0.25,
    "Vitoria da Conquista": 0.20,
    "Camacari": 0.15,
}
_FAMILY_SHARE = {"CAB": 0.15, "ELE": 0.25, "FIX": 0.25, "SAF": 0.15, "STL": 0.20}
_FAMILY_LEVEL = {"CAB": 1.5, "ELE": 1.0, "FIX": 2.5, "SAF": 1.0, "STL": 0.5}
_LEAD_TIME = {"CAB": (10, 30), "ELE": (7, 45), "FIX": (3, 15), "SAF": (5, 20), "STL": (20, 60)}
_UNIT_COST = {"CAB": (5, 40), "ELE": (20, 2500), "FIX": (0.5, 15), "SAF": (30, 400), "STL": (150, 3000)}
_PACK = {"CAB": [1, 10, 50], "ELE": [1, 10], "FIX": [10, 50, 100], "SAF": [1, 5, 10], "STL": [1]}
_PATTERN_SHARE = {"smooth": 0.30, "erratic": 0.20, "intermittent": 0.35, "lumpy": 0.15}
_DRIVER_SHARE = {"none": 6 / 9, "rain": 1 / 9, "fx": 1 / 9, "5g": 1 / 9}

PREFIX_DAYS = 30
_G5_MIDPOINT = np.datetime64("2024-09-01", "D")
_G5_TAU = 150.0
_G5_SITES = 5000.0
_G5_MUNICIPALITIES = 417

INMET_STATION = "A401"
INMET_STEM = "INMET_NE_BA_A401_SALVADOR"
INMET_METADATA = [
    "REGIAO:;NE",
    "UF:;BA",
    "ESTACAO:;SALVADOR",
    "CODIGO (WMO):;A401",
    "LATITUDE:;-13,01666666",
    "LONGITUDE:;-38,50638888",
    "ALTITUDE:;51,41",
    "DATA DE FUNDACAO:;13/05/00",
]
INMET_COLUMNS = [
    "Data",
    "Hora UTC",
    "PRECIPITAÇÃO TOTAL, HORÁRIO (mm)",
    "PRESSAO ATMOSFERICA AO NIVEL DA ESTACAO, HORARIA (mB)",
    "PRESSÃO ATMOSFERICA MAX.NA HORA ANT. (AUT) (mB)",
    "PRESSÃO ATMOSFERICA MIN. NA HORA ANT. (AUT) (mB)",
    "RADIACAO GLOBAL (Kj/m²)",
    "TEMPERATURA DO AR - BULBO SECO, HORARIA (°C)",
    "TEMPERATURA DO PONTO DE ORVALHO (°C)",
    "TEMPERATURA MÁXIMA NA HORA ANT. (AUT) (°C)",
    "TEMPERATURA MÍNIMA NA HORA ANT. (AUT) (°C)",
    "TEMPERATURA ORVALHO MAX. NA HORA ANT. (AUT) (°C)",
    "TEMPERATURA ORVALHO MIN. NA HORA ANT. (AUT) (°C)",
    "UMIDADE REL. MAX. NA HORA ANT. (AUT) (%)",
    "UMIDADE REL. MIN. NA HORA ANT. (AUT) (%)",
    "UMIDADE RELATIVA DO AR, HORARIA (%)",
    "VENTO, DIREÇÃO HORARIA (gr) (° (gr))",
    "VENTO, RAJADA MAXIMA (m/s)",
    "VENTO, VELOCIDADE HORARIA (m/s)",
]

# Hourly INMET value columns after date/hour, in order: (key, decimals).
_HOURLY_FIELDS: list[tuple[str, int]] = [
    ("precip", 1),
    ("pres", 1),
    ("pres_max", 1),
    ("pres_min", 1),
    ("rad", 1),
    ("temp", 1),
    ("dew", 1),
    ("temp_max", 1),
    ("temp_min", 1),
    ("dew_max", 1),
    ("dew_min", 1),
    ("rh_max", 0),
    ("rh_min", 0),
    ("rh", 0),
    ("wind_dir", 0),
    ("gust", 1),
    ("wind", 1),
]


@dataclass
class _Factors:
    """Simulated external factors; ``hourly`` values are integers in tenths (or units), -1 = missing."""

    dates: np.ndarray  # datetime64[D], the demand days
    hourly: dict[str, np.ndarray]  # (days, 24) int64
    fx_dates: np.ndarray
    fx: np.ndarray
    ipca_dates: np.ndarray
    ipca: np.ndarray
    selic_dates: np.ndarray
    selic: np.ndarray
    g5_dates: np.ndarray  # demand days with PREFIX_DAYS before
    g5_sites: np.ndarray
    g5_munis: np.ndarray
    daily: pl.DataFrame


def _day_of_year(dates: np.ndarray) -> np.ndarray:
    years = dates.astype("datetime64[Y]")
    return (dates - years.astype("datetime64[D]")).astype(np.int64)


def _apportion(n: int, shares: dict[str, float]) -> list[str]:
    """``n`` labels split by ``shares`` (largest remainder), in key order."""
    keys = list(shares)
    raw = np.array([shares[k] for k in keys]) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return [k for k, c in zip(keys, counts, strict=True) for _ in range(c)]


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` shifted ``k`` days later, zeros first."""
    return np.r_[np.zeros(min(k, len(x))), x[: max(len(x) - k, 0)]]


def _tenths(a: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(a) * 10).astype(np.int64)


def _ffill_index(series_dates: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Index of the last ``series_dates`` entry on or before each of ``dates``."""
    return np.searchsorted(series_dates, dates, side="right") - 1


def _holiday_dates(years: range, subdiv: str | None) -> np.ndarray:
    cal = holidays.Brazil(subdiv=subdiv, years=list(years))
    return np.array(sorted(cal.keys()), dtype="datetime64[D]")


def _business_days(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    days = np.arange(first, last + 1, dtype="datetime64[D]")
    years = range(int(str(first)[:4]), int(str(last)[:4]) + 1)
    ok = np.is_busday(days) & ~np.isin(days, _holiday_dates(years, None))
    return days[ok]


def _simulate_factors(days: int, seed: int, start: str) -> _Factors:
    rng = np.random.default_rng([seed, 0])
    dates = np.arange(days) + np.datetime64(str(start), "D")
    doy = _day_of_year(dates).astype(float)
    hours = np.arange(24)

    # Rain: Salvador climatology (mm/month), wet season April-July, random storms.
    clim_month = np.array([90, 110, 150, 300, 330, 250, 180, 120, 100, 110, 110, 100], float) / 30.4
    mid = np.arange(12) * 30.44 + 15.2
    clim = np.interp(doy, np.r_[mid - 365.25, mid, mid + 365.25], np.tile(clim_month, 3))
    wet_idx = (clim - clim.min()) / max(clim.max() - clim.min(), 1e-9)
    p_wet = 0.35 + 0.35 * wet_idx
    wet = rng.random(days) < p_wet
    amount = rng.gamma(0.7, clim / (p_wet * 0.7))
    storm = rng.random(days) < 0.012 + 0.03 * wet_idx
    daily_rain = wet * amount + storm * rng.gamma(2.0, 25.0, days)
    w = rng.gamma(0.15, 1.0, (days, 24)) + 1e-12
    precip = np.round(daily_rain[:, None] * w / w.sum(1, keepdims=True) / 0.2).astype(np.int64) * 2

    # Temperature, dew point, humidity, pressure, radiation, wind (tenths / units).
    rain_day = precip.sum(1) / 10.0
    noise_day = np.convolve(rng.normal(0, 0.6, days + 4), np.ones(5) / np.sqrt(5), "valid")
    t_day = 26.3 + 1.5 * np.cos(2 * np.pi * (doy - 45) / 365.25) + noise_day - 0.04 * np.minimum(rain_day, 40)
    diurnal = 2.5 * np.cos(2 * np.pi * (hours - 18) / 24)
    temp = t_day[:, None] + diurnal[None, :] * (1 - 0.4 * (precip > 0)) + rng.normal(0, 0.3, (days, 24))
    dew = (21.5 + 1.0 * np.cos(2 * np.pi * (doy - 60) / 365.25))[:, None] + rng.normal(0, 0.6, (days, 24))
    dew = np.minimum(dew + 0.8 * (precip > 0), temp - 0.3)
    rh = 100 * np.exp(17.625 * dew / (243.04 + dew) - 17.625 * temp / (243.04 + temp))
    pres = (
        1011.0
        - 2.0 * np.cos(2 * np.pi * (doy - 20) / 365.25)[:, None]
        + 1.0 * np.cos(4 * np.pi * (hours - 10) / 24)[None, :]
        + rng.normal(0, 0.2, (days, 24))
        + np.repeat(rng.normal(0, 1.0, days)[:, None], 24, 1)
    )
    sun = np.clip(np.sin(np.pi * (hours - 8.5) / 12.5), 0, None)
    cloud = np.clip(1 - 0.06 * precip / 2 - rng.uniform(0, 0.4, (days, 24)), 0.05, 1)
    rad = 3600 * sun[None, :] * cloud
    night = (hours < 9) | (hours > 20)
    wind = rng.gamma(4.0, 0.75, (days, 24))
    hourly = {
        "precip": precip,
        "pres": _tenths(pres),
        "pres_max": _tenths(pres + rng.uniform(0.1, 0.4, (days, 24))),
        "pres_min": _tenths(pres - rng.uniform(0.1, 0.4, (days, 24))),
        "rad": np.where(night[None, :], -1, _tenths(rad)),
        "temp": _tenths(temp),
        "dew": _tenths(dew),
        "temp_max": _tenths(temp + rng.uniform(0.1, 0.6, (days, 24))),
        "temp_min": _tenths(temp - rng.uniform(0.1, 0.6, (days, 24))),
        "dew_max": _tenths(dew + rng.uniform(0.1, 0.5, (days, 24))),
        "dew_min": _tenths(dew - rng.uniform(0.1, 0.5, (days, 24))),
        "rh": np.clip(np.round(rh), 35, 100).astype(np.int64),
        "wind_dir": np.round(rng.normal(115, 30, (days, 24)) % 360).astype(np.int64),
        "gust": _tenths(wind + rng.gamma(2.0, 1.5, (days, 24))),
        "wind": _tenths(wind),
    }
    hourly["rh_max"] = np.minimum(hourly["rh"] + rng.integers(1, 4, (days, 24)), 100)
    hourly["rh_min"] = hourly["rh"] - rng.integers(1, 4, (days, 24))
    # A few station outages (every sensor -9999), only in dry hours so daily rain is unchanged.
    outage = (rng.random((days, 24)) < 0.002) & (precip == 0)
    for key in hourly:
        hourly[key] = np.where(outage, -1, hourly[key])

    # Banco Central series, from PREFIX_DAYS before start.
    first = dates[0] - PREFIX_DAYS
    bdays = _business_days(first, dates[-1])
    k = np.arange(len(bdays))
    phase = rng.uniform(0, 2 * np.pi)
    target = np.log(5.2) + 0.11 * np.sin(2 * np.pi * k / 520 + phase)
    shocks = rng.normal(0, 0.007, len(bdays))
    x = np.empty(len(bdays))
    x[0] = target[0] + rng.normal(0, 0.02)
    for i in range(1, len(bdays)):
        x[i] = x[i - 1] + 0.02 * (target[i] - x[i - 1]) + shocks[i]
    fx = np.round(np.exp(x), 4)

    months = np.arange(first.astype("datetime64[M]"), dates[-1].astype("datetime64[M]") + 1)
    ipca_dates = months.astype("datetime64[D]")
    mi = np.arange(len(months))
    ipca = np.round(0.38 + 0.22 * np.sin(2 * np.pi * mi / 12 + phase) + rng.normal(0, 0.12, len(months)), 2)

    meet = np.zeros(len(bdays), bool)
    meet[rng.integers(5, 25) :: 31] = True  # ~every 45 calendar days
    path = 12.25 + 2.5 * np.cos(2 * np.pi * k / 750 + rng.uniform(0, np.pi))
    selic = np.empty(len(bdays))
    level = np.round(path[0] * 4) / 4
    for i in range(len(bdays)):
        if meet[i]:
            step = np.clip(np.round((path[i] - level) * 4) / 4, -0.75, 0.75)
            level = level + step
        selic[i] = level
    selic = np.round(selic, 2)

    # Anatel 5G: S-curve in calendar time, bursty additions (none on weekends).
    g5_dates = np.arange(first, dates[-1] + 1, dtype="datetime64[D]")
    t_rel = (g5_dates - _G5_MIDPOINT).astype(float)
    expected = _G5_SITES / (1 + np.exp(-np.r_[t_rel[0] - 1, t_rel] / _G5_TAU))
    adds = rng.poisson(
        np.diff(expected) * 7 / 5 * np.is_busday(g5_dates) * rng.gamma(0.6, 1 / 0.6, len(g5_dates))
    )
    sites = np.round(expected[0]).astype(np.int64) + np.cumsum(adds)
    munis = np.minimum(np.floor(_G5_MUNICIPALITIES * (1 - np.exp(-sites / 1200.0))), _G5_MUNICIPALITIES)
    munis = np.maximum.accumulate(munis).astype(np.int64)

    # The daily table the ETL recovers from the raw files.
    valid = hourly["temp"] >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        temp_mean = np.where(valid, hourly["temp"], 0).sum(1) / valid.sum(1) / 10.0
        rh_valid = hourly["rh"] >= 0
        rh_mean = np.where(rh_valid, hourly["rh"], 0).sum(1) / rh_valid.sum(1)
    g5_idx = np.arange(days) + PREFIX_DAYS
    daily = pl.DataFrame(
        {
            "date": pl.Series(dates).cast(pl.Date),
            "rain_mm": np.where(precip >= 0, precip, 0).sum(1) / 10.0,
            "temp_mean_c": temp_mean,
            "humidity_mean_pct": rh_mean,
            "usd_brl": fx[_ffill_index(bdays, dates)],
            "ipca": ipca[_ffill_index(ipca_dates, dates)],
            "selic": selic[_ffill_index(bdays, dates)],
            "g5_municipios_5g": munis[g5_idx].astype(np.float64),
            "g5_estacoes_5g": sites[g5_idx].astype(np.float64),
            "g5_new_sites_14d": np.convolve(np.r_[0, np.diff(sites)], np.ones(14) / 14)[: len(sites)][g5_idx],
        }
    )
    return _Factors(dates, hourly, bdays, fx, ipca_dates, ipca, bdays, selic, g5_dates, sites, munis, daily)


def demo_factors(days: int = 1095, seed: int = 7, start: str = "2023-01-01") -> pl.DataFrame:
    """Daily external factors exactly as recoverable from the raw files ``generate_demo`` writes.

    Columns: date, rain_mm, temp_mean_c, humidity_mean_pct, usd_brl, ipca, selic (forward-filled),
    g5_municipios_5g, g5_estacoes_5g, g5_new_sites_14d (trailing mean of daily additions).
    They do not depend on the number of items.
    """
    return _simulate_factors(days, seed, start).daily


def _simulate_demand(factors: _Factors, n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Items table (ground truth) and the (items, days) quantity matrix."""
    rng = np.random.default_rng([seed, 1])
    dates = factors.dates
    days = len(dates)
    daily = factors.daily

    prefixes = _apportion(n, _FAMILY_SHARE)
    numbers: dict[str, int] = {}
    item_ids = []
    for p in prefixes:
        numbers[p] = numbers.get(p, 0) + 1
        item_ids.append(f"{p}-{numbers[p]:04d}")
    site_names = list(SITES)
    site = np.array(site_names)[rng.choice(len(site_names), n, p=list(SITES.values()))]
    pattern = rng.permutation(np.array(_apportion(n, _PATTERN_SHARE)))
    driver = np.empty(n, dtype=object)
    for p in _PATTERN_SHARE:  # drivers stratified by pattern
        group = pattern == p
        driver[group] = rng.permutation(np.array(_apportion(int(group.sum()), _DRIVER_SHARE)))
    driver = driver.astype(str)
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "family": [FAMILIES[p] for p in prefixes],
            "site": site.tolist(),
            "pattern": pattern.tolist(),
            "driver": driver.tolist(),
        }
    )

    # Calendar: weekends and Bahia holidays have fewer consumptions.
    years = range(int(str(dates[0])[:4]), int(str(dates[-1])[:4]) + 1)
    weekday = (dates.view(np.int64) + 3) % 7  # Monday = 0
    cal = np.array([1.1, 1.0, 1.0, 1.0, 0.95, 0.4, 0.15])[weekday]
    cal = np.where(np.isin(dates, _holiday_dates(years, "BA")), 0.15, cal)
    doy = _day_of_year(dates).astype(float)
    season = np.exp(3.0 * (np.cos(2 * np.pi * (doy - 150) / 365.25) - 1))  # peak late May
    sites_share = daily["g5_estacoes_5g"].to_numpy() / _G5_SITES

    rain = daily["rain_mm"].to_numpy()
    rain_eff = rain + 0.5 * _lag(rain, 1) + 0.25 * _lag(rain, 2)
    fx = daily["usd_brl"].to_numpy()
    adds = daily["g5_new_sites_14d"].to_numpy()
    effects = {
        "none": np.ones(days),
        "rain": 1 + 2.5 * (1 - np.exp(-rain_eff / 30)),
        "fx": (fx / fx.mean()) ** -5.0,
        "5g": 0.2 + adds / max(adds.mean(), 1e-9),
    }
    drv = np.stack([effects[k] / effects[k].mean() for k in _DRIVER_SHARE])
    drv_idx = np.array([list(_DRIVER_SHARE).index(d) for d in driver])

    level_mult = np.array([_FAMILY_LEVEL[p] for p in prefixes])
    a = rng.uniform(0.25, 0.6, n)
    b = rng.uniform(0.0, 0.5, n)
    intensity = (
        cal[None, :]
        * (1 + a[:, None] * season[None, :])
        * (1 + b[:, None] * sites_share[None, :])
        * drv[drv_idx]
    )
    intensity /= intensity.mean(1, keepdims=True)

    is_ = {p: pattern == p for p in _PATTERN_SHARE}
    mu = np.where(is_["smooth"], rng.uniform(3, 30, n), rng.uniform(1, 12, n)) * level_mult
    sigma = np.where(is_["smooth"], 0.15, 0.35)
    lam = (
        mu[:, None]
        * intensity
        * np.exp(rng.normal(0, 1, (n, days)) * sigma[:, None] - sigma[:, None] ** 2 / 2)
    )
    k = np.where(is_["erratic"], rng.uniform(0.3, 0.8, n), 1.0)
    lam = np.where(is_["erratic"][:, None], lam * rng.gamma(k[:, None], 1 / k[:, None], (n, days)), lam)
    qty = rng.poisson(lam).astype(np.float64)

    # Slow movers: occurrence probability driven by the same intensity, sizes per pattern.
    p0 = np.where(is_["lumpy"], rng.uniform(0.01, 0.06, n), rng.uniform(0.04, 0.30, n))
    occur = rng.random((n, days)) < 1 - np.exp(-(-np.log1p(-p0))[:, None] * intensity)
    small = 1 + rng.poisson(rng.uniform(0.3, 3.0, n)[:, None] * np.sqrt(level_mult)[:, None], (n, days))
    big_m = rng.uniform(15, 120, n) * np.sqrt(level_mult)
    big = np.round(np.exp(np.log(big_m)[:, None] + rng.normal(0, 0.8, (n, days))))
    slow_qty = occur * np.where(is_["lumpy"][:, None], np.maximum(big, 1), small)
    qty = np.where((is_["intermittent"] | is_["lumpy"])[:, None], slow_qty, qty)
    empty = np.flatnonzero(qty.sum(1) == 0)  # every item is consumed at least once
    qty[empty, rng.integers(0, days, len(empty))] = np.maximum(small[empty, 0], 1)
    return items, qty


def _stock(items: pl.DataFrame, qty: np.ndarray, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng([seed, 2])
    n = items.height
    prefixes = [i.split("-")[0] for i in items["item_id"].to_list()]
    recent = qty[:, -90:].mean(1)
    cover = rng.uniform(10, 120, n)
    urgent = rng.permutation(n)[: max(2, round(0.1 * n))]
    cover[urgent] = rng.uniform(0, 2, len(urgent))
    lead = np.array([rng.integers(*_LEAD_TIME[p], endpoint=True) for p in prefixes], dtype=np.int64)
    lo = np.array([_UNIT_COST[p][0] for p in prefixes])
    hi = np.array([_UNIT_COST[p][1] for p in prefixes])
    unit_cost = np.round(np.exp(rng.uniform(np.log(lo), np.log(hi))), 2)
    open_order = rng.random(n) < 0.25
    on_order = np.where(open_order, np.round(recent * lead * rng.uniform(0.5, 1.5, n)), 0.0)
    pack = np.array([_PACK[p][rng.integers(len(_PACK[p]))] for p in prefixes], dtype=np.float64)
    return pl.DataFrame(
        {
            "item_id": items["item_id"],
            "site": items["site"],
            "on_hand": np.round(recent * cover),
            "lead_time_days": lead,
            "unit_cost": unit_cost,
            "on_order": on_order,
            "order_cost": np.round(rng.uniform(80, 400, n), 2),
            "holding_cost_rate": np.round(rng.uniform(0.18, 0.30, n), 3),
            "min_order_qty": pack * rng.choice([1, 1, 2, 5], n),
            "pack_size": pack,
        }
    )


def _fmt_dec(col: str, decimals: int) -> pl.Expr:
    """INMET number: decimal comma, trailing ``,0`` dropped, -1 -> ``-9999``."""
    v = pl.col(col)
    if decimals == 0:
        text = v.cast(pl.String)
    else:
        frac = v % 10
        text = (v // 10).cast(pl.String) + pl.when(frac == 0).then(pl.lit("")).otherwise(
            pl.lit(",") + frac.cast(pl.String)
        )
    return pl.when(v < 0).then(pl.lit("-9999")).otherwise(text)


def _write_inmet(factors: _Factors, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    years = factors.dates.astype("datetime64[Y]")
    written: dict[str, Path] = {}
    header = ";".join(INMET_COLUMNS) + ";"
    for year in np.unique(years):
        sel = years == year
        d = factors.dates[sel]
        cols: dict[str, object] = {
            "date": pl.Series(np.repeat(d, 24)).cast(pl.Date),
            "hour": np.tile(np.arange(24) * 100, len(d)),
        }
        cols.update({key: factors.hourly[key][sel].ravel() for key, _ in _HOURLY_FIELDS})
        lines = pl.DataFrame(cols).select(
            pl.concat_str(
                [
                    pl.col("date").dt.strftime("%Y/%m/%d"),
                    pl.col("hour").cast(pl.String).str.zfill(4) + pl.lit(" UTC"),
                    *[_fmt_dec(key, dec) for key, dec in _HOURLY_FIELDS],
                ],
                separator=";",
            )
            + pl.lit(";")
        )
        first, last = (x.astype(object).strftime("%d-%m-%Y") for x in (d[0], d[-1]))
        path = folder / f"{INMET_STEM}_{first}_A_{last}.CSV"
        text = "\n".join([*INMET_METADATA, header, *lines.to_series().to_list()]) + "\n"
        path.write_bytes(text.encode("latin-1"))
        written[f"inmet_{year}"] = path
    for stale in folder.glob(f"{INMET_STEM}_*.CSV"):
        if stale not in written.values():
            stale.unlink()
    return written


def _br_date(d: np.ndarray) -> list[str]:
    return [x.strftime("%d/%m/%Y") for x in d.astype(object)]


def _write_raw(factors: _Factors, raw: Path) -> dict[str, Path]:
    paths = _write_inmet(factors, raw / "inmet")
    bcb = raw / "bcb"
    anatel = raw / "anatel"
    bcb.mkdir(parents=True, exist_ok=True)
    anatel.mkdir(parents=True, exist_ok=True)

    def sgs_json(name: str, dates: np.ndarray, values: np.ndarray, fmt: str) -> None:
        rows = [{"data": d, "valor": fmt.format(v)} for d, v in zip(_br_date(dates), values, strict=True)]
        paths[name] = bcb / f"{name}.json"
        paths[name].write_text(json.dumps(rows, separators=(",", ":")), encoding="utf-8")

    sgs_json("usd_brl", factors.fx_dates, factors.fx, "{:.4f}")
    sgs_json("ipca", factors.ipca_dates, factors.ipca, "{:.2f}")
    selic_lines = ['"data";"valor"'] + [
        f'"{d}";"{v:.2f}"'.replace(".", ",")
        for d, v in zip(_br_date(factors.selic_dates), factors.selic, strict=True)
    ]
    paths["selic"] = bcb / "selic.csv"
    paths["selic"].write_text("\n".join(selic_lines) + "\n", encoding="utf-8")
    g5_lines = ["Data;Municipios_5G;Estacoes_5G"] + [
        f"{d};{m};{s}"
        for d, m, s in zip(_br_date(factors.g5_dates), factors.g5_munis, factors.g5_sites, strict=True)
    ]
    paths["5g_rollout"] = anatel / "5g_rollout.csv"
    paths["5g_rollout"].write_text("\n".join(g5_lines) + "\n", encoding="utf-8")
    return paths


QUICK_ITEMS = 60  # the Quick start's demo (Makefile DEMO_ITEMS): what a bare `forecast` writes


def generate_demo(
    out: str | Path,
    items: int = 200,
    days: int = 1095,
    seed: int = 7,
    start: str = "2023-01-01",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write the demo dataset into ``out``; return the written paths by name.

    Keys: ``demand``, ``stock``, ``items``, ``raw`` (folder), ``inmet_<year>``, ``usd_brl``,
    ``ipca``, ``selic``, ``5g_rollout``. Same arguments, same files.
    """
    if items < 1 or days < 1:
        raise ValueError("items and days must be >= 1")
    say = progress or (lambda _msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    say(f"simulating external factors for {days} days from {start}")
    factors = _simulate_factors(days, seed, start)
    say(f"simulating demand for {items} items")
    item_table, qty = _simulate_demand(factors, items, seed)

    say("writing demand.parquet")
    idx = np.repeat(np.arange(items), days)
    demand = pl.DataFrame(
        {
            "item_id": item_table["item_id"].gather(idx),
            "date": pl.Series(np.tile(factors.dates, items)).cast(pl.Date),
            "quantity": qty.ravel(),
            "site": item_table["site"].gather(idx),
            "family": item_table["family"].gather(idx),
        }
    )
    paths = {"demand": out / "demand.parquet", "stock": out / "stock.parquet", "items": out / "items.parquet"}
    demand.write_parquet(paths["demand"])
    say("writing stock.parquet and items.parquet")
    _stock(item_table, qty, seed).write_parquet(paths["stock"])
    item_table.write_parquet(paths["items"])

    say("writing raw external factors (INMET, BCB, Anatel)")
    paths["raw"] = out / "raw"
    paths.update(_write_raw(factors, paths["raw"]))
    say("demo data written to " + str(out))
    return paths
