"""The model registry: name -> pure forecast function (and optional order/form search)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from .base import LEVELS, Forecast, ModelError

__all__ = ["LEVELS", "Forecast", "ModelError", "ModelDef", "MODELS", "get_model", "parse_models"]


@dataclass(frozen=True)
class ModelDef:
    """Where a model lives and how the engine calls it."""

    name: str
    module: str
    forecast: str = "forecast"
    search: str | None = None
    backtest: str | None = None  # forecasts from several origins with one estimation (optional)
    roll: str | None = None  # stored params for a history that lost its oldest periods (optional)
    library: str = "numpy"
    version: str = "1"
    is_global: bool = False
    freqs: tuple[str, ...] = ("D", "W", "M", "Q", "Y")

    def forecast_fn(self) -> Callable[..., Forecast]:
        return getattr(import_module(self.module, __package__), self.forecast)

    def search_fn(self) -> Callable[..., dict] | None:
        return getattr(import_module(self.module, __package__), self.search) if self.search else None

    def backtest_fn(self) -> Callable[..., list[Forecast]] | None:
        return getattr(import_module(self.module, __package__), self.backtest) if self.backtest else None

    def rolled(self, params: dict, dropped: int) -> dict:
        """Stored `params` for today's history, which lost its `dropped` oldest periods since they
        were fitted (a rolling export window): a state tied to a period of the series moves."""
        if not self.roll or not dropped:
            return params
        return getattr(import_module(self.module, __package__), self.roll)(params, dropped)


MODELS: dict[str, ModelDef] = {
    "naive": ModelDef("naive", ".naive", library="numpy"),
    "arima": ModelDef(  # version 2: daily series less their annual cycle (annual.py)
        "arima", ".arima", search="search", backtest="backtest", library="statsforecast", version="2"
    ),
    # ets version 2: multiplicative-season intervals widen per step (ets_class3); 3: daily series
    # less their annual cycle (annual.py)
    "ets": ModelDef(
        "ets", ".ets", search="search", backtest="backtest", roll="rolled", library="statsforecast",
        version="3",
    ),
    "theta": ModelDef("theta", ".theta", backtest="backtest", library="statsforecast"),
    # version 2: intervals from the smoothed size (Croston's SBA factor shrank every size by 5%);
    # 3: the rate takes in a long open gap, and starts from the mean gap on a series that starts on a demand
    "croston": ModelDef("croston", ".intermittent", forecast="croston_forecast", library="numpy",
                        version="3"),
    "tsb": ModelDef("tsb", ".intermittent", forecast="tsb_forecast", library="numpy", version="2"),
    "prophet": ModelDef(  # version 2: the fitted parameters stored, a warm run starts from them;
        # 3: a stiffer trend with regressors; 4: daily regressors scaled by the weekday profile
        "prophet", ".prophet", library="prophet", freqs=("D", "W", "M", "Q"), version="4"
    ),
    "lstm": ModelDef(  # version 3: outliers capped in its inputs, at least 200 steps of a cold training
        "lstm", ".lstm", library="tensorflow", is_global=True, freqs=("D", "W", "M"), version="3"
    ),
}


def get_model(name: str) -> ModelDef:
    """The registered model `name`."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


def parse_models(text: str | None) -> tuple[str, ...] | None:
    """'prophet,arima' -> ('prophet', 'arima'); 'auto' or empty -> None (models by demand class)."""
    if text is None or text.strip().lower() in {"", "auto"}:
        return None
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    for n in names:
        get_model(n)
    return names
