"""`nova-ray forecast`: the end-to-end forecast run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ..config import Config, ConfigError
from ..io.errors import InputError
from ..io.lock import LockedError
from . import app
from .common import (
    BarProgress,
    config_or_exit,
    console,
    console_logging,
    fail,
    folder_or_exit,
    out,
    ray_failure,
    ray_unreachable,
    setting_label,
    warn,
    write_failure,
)

if TYPE_CHECKING:
    from ..pipeline import RunSummary

RESUME_AGAIN = "rerun with --resume (it goes on from its checkpoints; without it the run starts afresh)"


def _items(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def ensure_demo(data: str) -> None:
    """Write the embedded demo data when the default demo path is asked for and absent (another
    missing file, even in a folder named demo, is an error of the run, never replaced)."""
    from ..config import Paths

    p = Path(data)
    if not p.exists() and Paths(data=data).is_demo_data():
        from ..demo import QUICK_ITEMS, generate_demo

        console.print(f"{p} not found: writing the demo data set ({QUICK_ITEMS} items) to {p.parent}")
        generate_demo(p.parent, items=QUICK_ITEMS)


def prepare_run(cfg: Config, data: str | None) -> None:
    """Before a run reads or writes anything: exit 2 when a file stands where its results folder
    or model store would be; without --data on the demo default, warn that the run forecasts the
    generated demo data (written first when absent)."""
    folder_or_exit(cfg.paths.output, setting_label(cfg, "output", "--output"), write=True)
    folder_or_exit(cfg.paths.models_dir, setting_label(cfg, "models_dir", "--models-dir"), write=True)
    warn(_cpus_notes(cfg))
    if data is None and cfg.paths.is_demo_data():
        warn([f"no --data and no paths.data of your own: forecasting the generated DEMO data in "
              f"{cfg.paths.data} (invented demand, not yours); pass --data PATH or set paths.data"])
        ensure_demo(cfg.paths.data)


def _cpus_notes(cfg: Config) -> list[str]:
    """`--num-cpus` that does not do what it says: ignored on a cluster, or above this machine's
    cores (Ray runs that many tasks at once anyway, each slower)."""
    import os

    n = cfg.ray.num_cpus
    if not n:
        return []
    src = cfg.source("num_cpus")
    label = "--num-cpus" if src.startswith("option ") else f"ray.num_cpus ({src})"
    if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
        return [f"{label} {n} applies to a local Ray only: a cluster's runs use its CPUs"]
    from ..distributed import local_cpus  # its affinity mask and a container's CPU quota, as Ray counts

    cores = local_cpus()
    return [f"{label} {n} is more than the {cores} CPU(s) this machine gives it: tasks share them"
            ] if n > cores else []


# options that `forecast` and `train` share (one definition each)
DATA = typer.Option(
    None,
    "--data",
    help="Demand history, CSV, Parquet or .xlsx (item_id, date, quantity; "
    "optional site, family). Default: paths.data in the config.",
)
ITEMS = typer.Option(None, "--items", help="Comma-separated item ids to forecast (default: all).")
HORIZON = typer.Option(None, "--horizon", min=1, help="Periods to forecast (default 30).")
FREQ = typer.Option(None, "--freq", help="Data frequency: D, W, M, Q or Y (default D).")
MODELS = typer.Option(
    None,
    "--models",
    help="auto (by demand class) or a list of prophet, arima, lstm, ets, theta, naive, croston, tsb.",
)
ADDRESS = typer.Option(
    None,
    "--address",
    help="Ray cluster to join: auto or HOST:PORT (default: start local Ray; RAY_ADDRESS also works).",
)
NUM_CPUS = typer.Option(None, "--num-cpus", min=1, help="CPUs for local Ray (default: all).")
NO_EXOG = typer.Option(
    False, "--no-exog", help="Do not use external factors (holidays, rain, USD/BRL, 5G) as regressors."
)
FEATURES = typer.Option(
    None,
    "--features",
    help="Daily feature table from `nova-ray etl` (default: \\[forecast] features, "
    "data/processed/features.parquet, or the one `etl` wrote into \\[etl] processed; absent: a raw/ "
    "folder next to the demand file is used).",
)
FUTURE_FEATURES = typer.Option(
    None,
    "--future-features",
    help="CSV or Parquet of known future feature values (date + columns) for the horizon.",
)
MODELS_DIR = typer.Option(None, "--models-dir", help="Stored models (default models/).")
BACKTEST_WINDOWS = typer.Option(
    None, "--backtest-windows", min=0, help="Rolling-origin backtest windows (default 3; 0 = off)."
)
BACKTEST_STEP = typer.Option(
    None, "--backtest-step", min=0, help="Periods between backtest origins (default 0 = the horizon)."
)
ARIMA_ENGINE = typer.Option(
    None, "--arima-engine", help="statsforecast (fast, default), pmdarima or statsmodels."
)
CONFIG = typer.Option(
    None, "--config", help="Config TOML (default configs/default.toml).", envvar="NOVA_RAY_CONFIG"
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")
RESUME = typer.Option(
    False,
    "--resume",
    help="Continue an interrupted run of the same data and settings from its checkpoints (one of today, "
    "or of the day before).",
)


def _overrides(**kw: object) -> dict[str, object]:
    """Config overrides from the shared options (`no_exog` becomes exog = false)."""
    no_exog = kw.pop("no_exog", False)
    return {**kw, "exog": False if no_exog else None}


@app.command()
def forecast(
    data: str = DATA,
    items: str = ITEMS,
    horizon: int = HORIZON,
    freq: str = FREQ,
    models: str = MODELS,
    output: str = typer.Option(None, "--output", help="Results folder (default data/ml_results)."),
    stock: str = typer.Option(
        None,
        "--stock",
        help="Stock snapshot for purchasing recommendations, CSV, Parquet or .xlsx, a path or s3:// URI "
        "(default: paths.stock, else stock.parquet or stock.csv next to the demand file; none found: "
        "no recommendations).",
    ),
    address: str = ADDRESS,
    num_cpus: int = NUM_CPUS,
    backtest_windows: int = BACKTEST_WINDOWS,
    backtest_step: int = BACKTEST_STEP,
    only_forecasts: bool = typer.Option(
        False, "--only-forecasts", help="Publish forecasts, items and ensemble weights only (no metrics, "
        "backtests or recommendations). The backtests still run: the ensemble weights are learned from "
        "them (--backtest-windows 0 skips them, with equal weights)."
    ),
    only_metrics: bool = typer.Option(
        False, "--only-metrics", help="Backtests only: metrics, backtests, items and ensemble weights (no "
        "final fit, forecasts or recommendations)."
    ),
    arima_engine: str = ARIMA_ENGINE,
    config: str = CONFIG,
    resume: bool = RESUME,
    no_exog: bool = NO_EXOG,
    features: str = FEATURES,
    future_features: str = FUTURE_FEATURES,
    full_refit: bool = typer.Option(
        False,
        "--full-refit",
        help="Ignore stored model choices (MODELS_DIR): search and backtest everything.",
    ),
    models_dir: str = MODELS_DIR,
    no_ray: bool = typer.Option(False, "--no-ray", help="Run in this process without Ray (debugging)."),
    quiet: bool = QUIET,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the run's log on the terminal."),
) -> None:
    """Forecast every item on Ray, backtest and ensemble, and write partitioned Parquet
    (a log of the run goes to <output>/logs/)."""
    from ..pipeline import run_forecast
    from ..recommend import orders_text

    console_logging(verbose)
    overrides = _overrides(
        data=data,
        horizon=horizon,
        freq=freq,
        models=models,
        output=output,
        stock=stock,
        address=address,
        num_cpus=num_cpus,
        backtest_windows=backtest_windows,
        backtest_step=backtest_step,
        arima_engine=arima_engine,
        models_dir=models_dir,
        no_exog=no_exog,
        features=features,
        future_features=future_features,
    )
    if only_forecasts and only_metrics:
        fail("--only-forecasts and --only-metrics exclude each other")
    only = "forecasts" if only_forecasts else "metrics" if only_metrics else None
    cfg = config_or_exit(config, overrides)  # the models too: an unknown one names its source
    prepare_run(cfg, data)
    try:
        with BarProgress(quiet) as bars:
            summary = run_forecast(
                cfg,
                _items(items),
                progress=bars,
                use_ray=not no_ray,
                only=only,
                resume=resume,
                full_refit=full_refit,
            )
    except (InputError, ConfigError) as exc:
        fail(str(exc), code=getattr(exc, "exit_code", 2))  # 1: an input's store could not be reached
    except LockedError as exc:
        fail(str(exc), code=3)
    except ConnectionError as exc:
        fail(ray_unreachable(cfg, exc), code=1)
    except OSError as exc:  # a disk or the network (an output folder that cannot be written): one line
        fail(write_failure(cfg, exc, RESUME_AGAIN), code=1)
    except Exception as exc:
        if (line := ray_failure(exc)) is None:
            raise
        fail(line, code=1)
    table = Table(title=f"nova-ray run {summary.run_id}", show_header=False)
    table.add_row("items", str(summary.items))
    table.add_row("models", ", ".join(summary.models))
    table.add_row("items with a failed model", str(summary.failures))
    table.add_row("fell back to naive", str(len(summary.fallbacks)))
    table.add_row("backend", summary.backend)
    ex = summary.exog
    table.add_row(
        "external factors",
        ", ".join(ex.get("features", [])) if ex.get("enabled") else f"off ({ex.get('reason', 'none')})",
    )
    if summary.resumed_items:
        table.add_row("resumed", f"{summary.resumed_items} items from the interrupted run's checkpoints")
    if summary.warm_items or summary.cold_items or summary.resumed_items:
        table.add_row("incremental", summary.incremental())
    attempt = "; this attempt only" if summary.resumed_items else ""
    cpu = f"task CPU {summary.cpu_seconds:.1f} s{attempt}"
    table.add_row("wall time", f"{summary.wall_seconds:.1f} s ({cpu})")
    if summary.stage_seconds:
        table.add_row("stages", ", ".join(f"{k} {v:.1f} s" for k, v in summary.stage_seconds.items()))
    if summary.ensemble_error:
        e = summary.ensemble_error
        table.add_row(
            "ensemble backtest",
            f"MASE {e.get('mase', float('nan')):.3f}  sMAPE "
            f"{e.get('smape', float('nan')):.1f}  80% coverage {e.get('coverage_80', float('nan')):.2f}",
        )
    for cls, b in sorted(summary.best_by_class.items()):
        ens = b.get("ensemble_mase")
        table.add_row(
            f"best for {cls}",
            f"{b['model']} (MASE {b['mase']:.3f}; ensemble {ens:.3f})"
            if ens is not None
            else f"{b['model']} (MASE {b['mase']:.3f})",
        )
    if summary.recommendations:
        r = summary.recommendations
        table.add_row(
            "recommendations",
            ", ".join(f"{k} {v}" for k, v in r["urgency"].items()) + f"; {orders_text(r)}",
        )
        urgent = [
            f"{m['item_id']}{'@' + m['site'] if m['site'] else ''} ({m['days_to_stockout']:.1f} d)"
            for m in r["most_urgent"]
            if m["urgency"] == "critical"
        ]
        if urgent:
            table.add_row("critical (first)", ", ".join(urgent))
    table.add_row("rows", ", ".join(f"{k} {v}" for k, v in summary.rows.items()))
    out.print(table)
    print_paths(summary, cfg.paths.data)
    warn(summary.warnings, 20)


def print_paths(summary: RunSummary, data: str) -> None:
    """The run's data, output folder and log under the summary table, one line each: a path is
    never cut or wrapped (in a table it was, in an 80-column cron log)."""
    demo = " (DEMO data: generated, not real demand)" if summary.demo_data else ""
    log = str(Path(summary.log_path).resolve())
    for name, value in (("data", f"{data}{demo}"), ("output", summary.output), ("log", log)):
        out.print(f"{name:<7}{value}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def train(
    data: str = DATA,
    items: str = ITEMS,
    horizon: int = HORIZON,
    freq: str = FREQ,
    models: str = MODELS,
    models_dir: str = MODELS_DIR,
    output: str = typer.Option(None, "--output", help="Results folder for the run's log, lock and "
                               "checkpoints (default data/ml_results); nothing is published there."),
    address: str = ADDRESS,
    num_cpus: int = NUM_CPUS,
    backtest_windows: int = BACKTEST_WINDOWS,
    backtest_step: int = BACKTEST_STEP,
    arima_engine: str = ARIMA_ENGINE,
    no_exog: bool = NO_EXOG,
    features: str = FEATURES,
    future_features: str = FUTURE_FEATURES,
    config: str = CONFIG,
    resume: bool = RESUME,
    quiet: bool = QUIET,
) -> None:
    """Fit, backtest and store every item's model choices in MODELS_DIR without publishing forecasts;
    a later `forecast` with the same settings reuses them."""
    from ..pipeline import run_forecast

    overrides = _overrides(
        data=data,
        horizon=horizon,
        freq=freq,
        models=models,
        models_dir=models_dir,
        output=output,
        address=address,
        num_cpus=num_cpus,
        backtest_windows=backtest_windows,
        backtest_step=backtest_step,
        arima_engine=arima_engine,
        no_exog=no_exog,
        features=features,
        future_features=future_features,
    )
    cfg = config_or_exit(config, overrides)
    prepare_run(cfg, data)
    try:
        with BarProgress(quiet) as bars:
            summary = run_forecast(
                cfg, _items(items), progress=bars, resume=resume, full_refit=True, publish=False
            )
    except (InputError, ConfigError) as exc:
        fail(str(exc), code=getattr(exc, "exit_code", 2))  # 1: an input's store could not be reached
    except LockedError as exc:
        fail(str(exc), code=3)
    except ConnectionError as exc:
        fail(ray_unreachable(cfg, exc), code=1)
    except OSError as exc:
        fail(write_failure(cfg, exc, RESUME_AGAIN), code=1)
    except Exception as exc:
        if (line := ray_failure(exc)) is None:
            raise
        fail(line, code=1)
    out.print(
        f"stored model choices for {summary.items} items in {cfg.paths.models_dir} "
        f"({summary.wall_seconds:.1f} s)", soft_wrap=True
    )
    if summary.log_path:
        out.print(f"log {summary.log_path}", highlight=False, soft_wrap=True, markup=False)
