"""External factors benchmark: do the regressors lower the error on the items they drive?

    python benchmarks/exog.py [--items 90] [--days 1095] [--seed 7] [--holdout 30] [--origins 1]
                              [--models arima,prophet] [--cpus 2] [--no-ray] [--no-oracle]
                              [--realised-backtests]

On the demo data (items.parquet says which items a factor drives: rain, fx, 5g or none) the last
`holdout` days are held out. The same models (plus their ensemble) forecast them three ways,
through the pipeline's engine on Ray:

- without:  no external factors (today's path);
- with:     factors known at the forecast origin only: calendar exact, rain from the
            day-of-year climatology, FX and the 5G pace carried forward (production setting;
            the backtest windows behind the ensemble weights see what their origins knew, too);
- oracle:   the realised factors of the held-out days and backtest windows: what the
            factors explain when they are known, an upper bound for better factor forecasts.

`--realised-backtests` adds "with" whose backtest windows see the realised factors (the
`backtest_exog = "realised"` setting): the ensemble weights learned from oracle backtests.

Prints the mean holdout MASE (MAE over the in-sample seasonal-naive MAE) per item group and
model, with ratios against `without` and the share of items that got better. `--origins 3` repeats
it on the two 30-day windows before as well (refitting each time) and averages per item: one
month of weather is a small sample.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from nova_ray.series import SeriesSet

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Stage:
    def stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def holdout_mase(fc: pl.DataFrame, series: SeriesSet, test: pl.DataFrame) -> dict[tuple[str, str], float]:
    """(item, model) -> MASE of the forecast over the held-out days."""
    import numpy as np

    from nova_ray.models.base import seasonal_error_scale

    scale = {
        str(series.item_ids[i]): seasonal_error_scale(series.values_of(i), series.frequency.season_length)
        for i in range(len(series))
    }
    joined = fc.join(test, on=["item_id", "date"], how="inner")
    out = {}
    for (item, model), g in joined.group_by("item_id", "model"):
        err = float(np.mean(np.abs(g["forecast"].to_numpy() - g["quantity"].to_numpy())))
        s = scale.get(item, float("nan"))
        if s > 0:
            out[(item, model)] = err / s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=90)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--holdout", type=int, default=30)
    ap.add_argument("--models", default="arima,prophet")
    ap.add_argument("--backtest-windows", type=int, default=2, help="for the ensemble weights")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--data", default="", help="demo folder to reuse (written there when absent)")
    ap.add_argument("--no-ray", action="store_true", help="run the engine in this process")
    ap.add_argument("--no-oracle", action="store_true", help="skip the oracle-factor run")
    ap.add_argument(
        "--realised-backtests",
        action="store_true",
        help="also run 'with' on backtests that see the realised factors (oracle ensemble weights)",
    )
    ap.add_argument(
        "--origins", type=int, default=1, help="consecutive holdout windows, newest first (scores averaged)"
    )
    args = ap.parse_args()

    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from nova_ray.assemble import assemble
    from nova_ray.config import load_config
    from nova_ray.demo import generate_demo
    from nova_ray.engine import EngineSpec
    from nova_ray.etl import build_features, read_features
    from nova_ray.exog import attach_exog
    from nova_ray.fit_stage import run_engine
    from nova_ray.models import parse_models
    from nova_ray.series import build_series
    from nova_ray.windows import window_backs

    console = Console(width=120)
    demo = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="nova-ray-exog-"))
    if not args.data:
        atexit.register(shutil.rmtree, demo, True)
    if not (demo / "demand.parquet").exists():
        generate_demo(demo, items=args.items, days=args.days, seed=args.seed)
    demand = pl.read_parquet(demo / "demand.parquet").with_columns(pl.col("date").cast(pl.Date))
    truth = pl.read_parquet(demo / "items.parquet").select("item_id", "driver", "pattern")
    first, last = demand["date"].min(), demand["date"].max()
    with tempfile.TemporaryDirectory() as tmp:
        features = read_features(build_features(demo / "raw", tmp, str(first), str(last)).path)
    h = args.holdout
    cfg = load_config(None, {"num_cpus": args.cpus}, env={}, dotenv=None)
    spec = EngineSpec(
        horizon=h, models=parse_models(args.models), backtest_windows=args.backtest_windows, seed=args.seed
    )
    days = demand["date"].unique().sort()
    extra = ["with, realised bt"] if args.realised_backtests else []
    extra += [] if args.no_oracle else ["oracle"]
    names = ["without", "with", *extra]
    backs = window_backs(h, args.backtest_windows, spec.step)  # backtest windows before the cut
    rows, walls = [], dict.fromkeys(names, 0.0)
    for k in range(args.origins):  # the newest holdout first; older ones end where the next starts
        cut = days[-h * (k + 1) - 1]
        train = demand.filter(pl.col("date") <= cut)
        test = demand.filter((pl.col("date") > cut) & (pl.col("date") <= days[-h * k - 1]))
        series = build_series(train.to_pandas(), "D")
        with_x, ex = attach_exog(series, features, h, backs, known_until=str(cut))
        variants = {"without": series, "with": with_x}
        if args.realised_backtests:
            variants["with, realised bt"] = attach_exog(series, features, h, known_until=str(cut))[0]
        if not args.no_oracle:
            variants["oracle"] = attach_exog(series, features, h)[0]
        console.print(
            f"{len(series)} items x {len(series.values_of(0))} days, holdout {h} days after {cut}; "
            f"features {', '.join(ex.names)}"
        )
        scores = {}
        for name, s in variants.items():
            t0 = time.perf_counter()
            results, backend, _ = run_engine(s, spec, cfg, _Stage(), use_ray=not args.no_ray)
            fc = assemble(results)[0]
            walls[name] += time.perf_counter() - t0
            scores[name] = holdout_mase(fc, s, test.select("item_id", "date", "quantity"))
            console.print(f"  {name}: {time.perf_counter() - t0:.0f} s on {backend}")
        rows += [
            {"origin": str(cut), "item_id": i, "model": m, **{v: scores[v].get((i, m)) for v in variants}}
            for (i, m) in scores["without"]
        ]
    # one score per item and model: the mean over the holdout windows
    scores_df = pl.DataFrame(rows).drop_nulls().group_by("item_id", "model").agg(pl.col(names).mean())
    df = scores_df.join(truth, on="item_id")
    groups = [
        ("driven (all)", pl.col("driver") != "none"),
        ("  rain", pl.col("driver") == "rain"),
        ("  fx", pl.col("driver") == "fx"),
        ("  5g", pl.col("driver") == "5g"),
        (
            "  driven smooth+erratic",
            (pl.col("driver") != "none") & pl.col("pattern").is_in(["smooth", "erratic"]),
        ),
        ("not driven", pl.col("driver") == "none"),
    ]
    span = f"last {h} days" if args.origins == 1 else f"{args.origins} windows of {h} days"
    table = Table(title=f"holdout MASE, {span} (mean over items; ratio = with / without)")
    for col in ["items", "model", "without", "with", "ratio", "better"] + [
        c for v in extra for c in (v, f"ratio ({v})")
    ]:
        table.add_column(col, justify="left" if col in ("items", "model") else "right")
    models = [*parse_models(args.models), "ensemble"]
    for label, cond in groups:
        for model in models:
            g = df.filter(cond & (pl.col("model") == model))
            if g.height == 0:
                continue
            wo, wi = g["without"].mean(), g["with"].mean()
            cells = [
                label,
                model,
                f"{wo:.3f}",
                f"{wi:.3f}",
                f"{wi / wo:.3f}",
                f"{int((g['with'] < g['without']).sum())}/{g.height}",
            ]
            for v in extra:
                cells += [f"{g[v].mean():.3f}", f"{g[v].mean() / wo:.3f}"]
            table.add_row(*cells)
    console.print(table)
    if args.origins > 1:
        per = pl.DataFrame(rows).drop_nulls().join(truth, on="item_id")
        for (origin,), g in sorted(per.group_by("origin"), key=lambda t: t[0][0], reverse=True):
            parts = []
            for label, cond in (
                ("driven", pl.col("driver") != "none"),
                ("not driven", pl.col("driver") == "none"),
            ):
                e = g.filter(cond & (pl.col("model") == "ensemble"))
                txt = f"{label} {e['with'].mean() / e['without'].mean():.3f}"
                for v in extra:
                    txt += f" ({v} {e[v].mean() / e['without'].mean():.3f})"
                parts.append(txt)
            console.print(f"holdout after {origin}: ensemble MASE ratio " + ", ".join(parts))
    walls_txt = ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())
    console.print(f"wall time: {walls_txt}; cpus {args.cpus}; models {args.models}; seed {args.seed}")
    out = Path(tempfile.gettempdir()) / "nova-ray-exog-benchmark.csv"
    pl.DataFrame(rows).join(truth, on="item_id").write_csv(out)
    console.print(f"per-item scores: {out}")


if __name__ == "__main__":
    main()
