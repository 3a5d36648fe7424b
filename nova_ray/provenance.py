"""What a run records about how its forecasts were made: model versions and the config hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import polars as pl

from . import __version__
from .config import Config
from .engine import FALLBACK
from .models import MODELS, parse_models


def model_versions(
    cfg: Config, meta: dict[str, str], metrics: pl.DataFrame, models: list[str], dataset: str, run_id: str
) -> dict[str, Any]:
    """The seed-style metadata: versions per model with aggregate backtest accuracy."""
    out: dict[str, Any] = {
        "model_version": meta["model_version"],
        "generated_at": meta["generated_at"],
        "source": "nova-ray",
        "nova_ray_version": __version__,
        "dataset_id": dataset,
        "run_id": run_id,
        "horizon": cfg.forecast.horizon,
        "freq": cfg.forecast.freq,
        "models": {},
    }
    for name in models:
        lib = MODELS[name].library if name in MODELS else "polars"
        entry: dict[str, Any] = {
            "version": MODELS[name].version if name in MODELS else "1",
            "library": lib,
            "library_version": _lib_version(lib),
        }
        m = metrics.filter(pl.col("model") == name) if metrics.height else metrics
        if m.height:
            wape = pooled_wape(m)
            entry |= {
                "mape": m["mape"].mean(),
                "rmse": m["rmse"].mean(),
                "mase": m["mase"].median(),
                "wape": wape,
                "accuracy": max(0.0, 1.0 - wape) if wape is not None else None,
            }
        out["models"][name] = entry
    return out


def pooled_wape(metrics: pl.DataFrame) -> float | None:
    """Total absolute error over total demand across the backtest windows of `metrics` (each
    window's from its MAE x n and WAPE; windows without demand left out). The mean of per-window
    WAPEs is dominated by intermittent items' windows of little demand (a WAPE of 3 on 2 units)."""
    w = metrics.filter(pl.col("wape") > 0)
    if not w.height:
        return None
    err = w["mae"] * w["n"]
    demand = float((err / w["wape"]).sum())
    return float(err.sum()) / demand if demand > 0 else None


def _lib_version(lib: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    dist = {"tensorflow": "tensorflow-cpu"}.get(lib, lib)
    try:
        return version(dist)
    except PackageNotFoundError:
        try:
            return version(lib)
        except PackageNotFoundError:
            return None


def config_hash(cfg: Config, exog_names: tuple[str, ...] = ()) -> str:
    """Hash of what changes the forecasts or the stored models' meaning: the settings (the
    feature set included; paths, and how long or how a stored fit is reused, not), the versions
    of the model libraries (a stored state read by another statsforecast, or weights by another
    TensorFlow, is not the model that was stored) and of nova-ray's models (`ModelDef.version`).
    With a list of models (not "auto"), those of models the run never fits are left out: another
    `[lstm]` setting, or a new TensorFlow, for a run without the LSTM kept every item's stored
    choices from being reused the next night."""
    d = cfg.to_dict()
    models = str(d["forecast"].get("models", ""))  # "ets,naive" is "naive,ets": the same store
    d["forecast"]["models"] = ",".join(sorted({m.strip().lower() for m in models.split(",") if m.strip()}))
    chosen = parse_models(models)  # None: "auto", any model by demand class
    used = sorted(MODELS) if chosen is None else sorted({*chosen, FALLBACK})  # an item whose models failed
    for key in ("exog", "features", "future_features", "cache_max_age_days"):
        d["forecast"].pop(key, None)
    if "arima" not in used:
        d["forecast"].pop("arima_engine", None)
    if "lstm" not in used:
        d.pop("lstm", None)
    d.get("lstm", {}).pop("warm_epochs", None)  # how a stored network is used, not what it is
    d["libraries"] = {lib: _lib_version(lib) for lib in sorted({MODELS[m].library for m in used})}
    # and nova-ray's own model versions: a stored fit's backtests made by an older Croston (its
    # bands) or window rule were reused for a week after the upgrade
    d["model_versions"] = {name: MODELS[name].version for name in used}
    if exog_names:
        d["exog_features"] = list(exog_names)
    d.pop("paths", None)
    d.pop("recommend", None)  # a policy change does not change the forecasts' model version
    d.pop("etl", None)
    d.pop("publish", None)
    d["ray"] = {}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
