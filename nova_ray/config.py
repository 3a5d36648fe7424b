"""One typed config: configs/default.toml < NOVA_RAY_* env < .env < CLI options."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A setting is missing, unknown or has the wrong type."""


@dataclass
class Paths:
    data: str = "data/demo/demand.parquet"
    stock: str = ""
    output: str = "data/ml_results"
    models_dir: str = "models"
    data_dir: str = "data"
    log_dir: str = "logs"
    columns: str = ""  # input columns renamed: "codigo_item=item_id,data=date,quantidade=quantity"

    def is_demo_data(self) -> bool:
        """`data` is the built-in demo data set (its default path; `forecast` generates it there)."""
        return Path(self.data).resolve() == Path(Paths.data).resolve()


@dataclass
class Forecast:
    horizon: int = 30
    freq: str = "D"
    models: str = "auto"
    arima_engine: str = "statsforecast"
    backtest_windows: int = 3
    backtest_step: int = 0
    backtest_refit: str = "first"
    search_window: int = 730
    annual_harmonics: int = 2
    cap_outliers: bool = True
    seed: int = 7
    cache_max_age_days: int = 7
    exog: bool = True
    backtest_exog: str = "known"
    features: str = "data/processed/features.parquet"
    future_features: str = ""
    series_start: str = "item"  # item: each series from its first row; file: from the file's first date


@dataclass
class RayConf:
    address: str = ""
    num_cpus: int = 0
    batch_seconds: float = 10.0
    task_timeout_seconds: float = 1800.0  # a task (a batch, or one item) past this is cancelled; 0: none


@dataclass
class Lstm:
    lookback: int = 28
    epochs: int = 8
    units: int = 32
    batch_size: int = 256
    max_windows_per_item: int = 200
    warm_epochs: int = 0  # incremental runs: 0 forecasts with the stored network, N fine-tunes it
    max_windows: int = 100_000  # training windows in all: past 500 items, fewer per item


@dataclass
class Etl:
    raw: str = "data/raw"
    processed: str = "data/processed"
    bcb_base_url: str = "https://api.bcb.gov.br/dados/serie/bcdata.sgs.{code}/dados"
    bcb_series: str = "usd_brl:1,ipca:433,selic:432"
    inmet_base_url: str = "https://apitempo.inmet.gov.br"
    inmet_stations: str = "A401"
    inmet_token: str = ""  # INMET's API key (NOVA_RAY_INMET_TOKEN, or .env): its data answers need one
    fetch_retries: int = 3
    fetch_timeout_s: float = 30.0


@dataclass
class Publish:
    to: str = ""
    endpoint_url: str = ""
    keep: int = 0
    keep_local: int = 0  # `run`: run dates kept in the results folder (0: all)


@dataclass
class Recommend:
    """Inventory policy for purchasing recommendations (nova_ray.recommend.Policy, same names)."""

    service_level_a: float = 0.98
    service_level_b: float = 0.95
    service_level_c: float = 0.90
    holding_cost_rate: float = 0.25
    critical_days: int = 7
    high_days: int = 14
    medium_days: int = 30
    review_days: int = 14
    abc_a: float = 0.80
    abc_b: float = 0.95
    min_residual_days: int = 28
    bootstrap_samples: int = 2000
    block_days: int = 7
    history_days: int = 365
    rate_days: int = 365
    min_history_days: int = 28
    bootstrap_seed: int = 7
    undershoot: bool = True
    excess_days: int = 180


@dataclass
class Config:
    """All settings of a run, grouped as in configs/default.toml."""

    paths: Paths = field(default_factory=Paths)
    forecast: Forecast = field(default_factory=Forecast)
    ray: RayConf = field(default_factory=RayConf)
    lstm: Lstm = field(default_factory=Lstm)
    etl: Etl = field(default_factory=Etl)
    recommend: Recommend = field(default_factory=Recommend)
    publish: Publish = field(default_factory=Publish)

    def sections(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_of(self, key: str) -> Any:
        """The section that holds setting `key` (keys are unique across sections), or None."""
        return next((sec for sec in self.sections().values() if key in {f.name for f in fields(sec)}), None)

    def set(self, key: str, value: Any, source: str) -> None:
        """Set a key (unique across sections), converting `value` to the field's type."""
        section = self.section_of(key)
        if section is None:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        setattr(section, key, _convert(value, type(getattr(section, key)), key, source))
        # not a field: the config's hash and dict stay those of its values
        self.__dict__.setdefault("_sources", {})[key] = source

    def source(self, key: str) -> str:
        """Where the value of `key` came from (the last of file, environment, .env, option)."""
        return self.__dict__.get("_sources", {}).get(key, "default")


# The seed's .env.ml keys and where they land.
DOTENV_KEYS = {
    "ML_RESULTS_PATH": "output",
    "MODELS_DIR": "models_dir",
    "DATA_DIR": "data_dir",
    "LOG_DIR": "log_dir",
}
ENV_PREFIX = "NOVA_RAY_"
DEFAULT_CONFIG = Path("configs/default.toml")


def _convert(value: Any, typ: type, key: str, source: str) -> Any:
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    try:
        if typ is bool:
            text = str(value).strip().lower()
            if text not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(text)
            return text in {"1", "true", "yes"}
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return typ(value) if typ is not int else int(str(value).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: setting {key!r} must be {typ.__name__}, got {value!r}") from None


def _apply_toml(cfg: Config, path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    sections = cfg.sections()
    owner = {f.name: sec for sec, cls in sections.items() for f in fields(cls)}
    for name, values in data.items():
        if not isinstance(values, dict) and name in owner:  # a setting above every section
            raise ConfigError(f"{path}: setting {name!r} outside a section: put it under [{owner[name]}]")
        if name not in sections or not isinstance(values, dict):
            raise ConfigError(f"{path}: unknown section [{name}]")
        for key, value in values.items():
            if key not in {f.name for f in fields(sections[name])}:
                where = f" (it belongs in [{owner[key]}])" if key in owner else ""
                raise ConfigError(f"{path}: unknown setting {key!r} in [{name}]{where}")
            cfg.set(key, value, str(path))


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments and blank lines skipped."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{n}: expected KEY=VALUE, got {line!r}")
        key, value = line.split("=", 1)
        out[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return out


# NOVA_RAY_* variables that are not settings: the config file's path and the server's own options
# (`nova-ray serve` needs no config; a nightly job may share its environment file)
NOT_SETTINGS = ("NOVA_RAY_CONFIG",)
NOT_SETTINGS_PREFIX = "NOVA_RAY_SERVE_"


def _is_setting(name: str) -> bool:
    return name.startswith(ENV_PREFIX) and not (name in NOT_SETTINGS or name.startswith(NOT_SETTINGS_PREFIX))


def load_config(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    dotenv: str | Path | None = ".env",
) -> Config:
    """Build the config: defaults, the TOML file, NOVA_RAY_* env, .env, then `overrides` (CLI).
    The TOML file is `config_file` (--config, or the NOVA_RAY_CONFIG environment variable), else
    NOVA_RAY_CONFIG in .env, else configs/default.toml."""
    cfg = Config()
    dotenv_values = read_dotenv(Path(dotenv)) if dotenv and Path(dotenv).is_file() else {}
    if not config_file and dotenv_values.get("NOVA_RAY_CONFIG"):
        config_file = dotenv_values["NOVA_RAY_CONFIG"]
        if not Path(config_file).exists():
            raise ConfigError(f"{dotenv} (NOVA_RAY_CONFIG): {config_file}: config file not found")
    path = Path(config_file) if config_file else DEFAULT_CONFIG
    if config_file and not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.exists():
        _apply_toml(cfg, path)
    env = dict(os.environ) if env is None else env
    for name, value in env.items():
        if _is_setting(name):
            cfg.set(name[len(ENV_PREFIX) :].lower(), value, f"environment variable {name}")
    if dotenv_values:
        for name, value in dotenv_values.items():
            if name in DOTENV_KEYS:
                cfg.set(DOTENV_KEYS[name], value, f"{dotenv} ({name})")
            elif _is_setting(name):
                cfg.set(name[len(ENV_PREFIX) :].lower(), value, f"{dotenv} ({name})")
    for key, value in (overrides or {}).items():
        if value is not None:
            cfg.set(key, value, f"option --{key.replace('_', '-')}")
    validate(cfg)
    return cfg


RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for a job's driver


def job_paths_problem(cfg: Config, env: dict[str, str] | None = None) -> str | None:
    """Why a run inside a Ray job (`ray job submit`) would lose what it writes (None when it would
    not): the job's working folder is a temporary copy that Ray removes, so a relative output
    folder or model store vanishes with it (exit 0, nothing published where anyone looks)."""
    if RAY_JOB_ENV not in (os.environ if env is None else env):
        return None
    paths = (("--output", cfg.paths.output), ("--models-dir", cfg.paths.models_dir))
    relative = [flag for flag, path in paths
                if "://" not in path and not os.path.isabs(os.path.expanduser(path))]
    if not relative:
        return None
    return (f"inside a Ray job the working folder is temporary: give {' and '.join(relative)} as absolute "
            "paths on shared storage (an NFS folder), or the results and the model store are lost with the "
            "job")


def address_problem(address: str) -> str | None:
    """Why a Ray cluster address cannot work (None when it may): a URL (an http:// address is the
    dashboard's, which `ray job submit` takes) or not HOST:PORT. "auto" and ray:// are left to Ray."""
    if not address or address == "auto" or address.startswith("ray://"):
        return None
    if "://" in address:
        return ("give the cluster's GCS address HOST:PORT (port 6379 by default), not a URL (an http:// "
                "address is the dashboard's, for `ray job submit`)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or " " in host:
        return "expected HOST:PORT, e.g. 10.0.0.5:6379, or auto"
    if ":" in host.strip("[]") and not (host.startswith("[") and host.endswith("]")):
        return "an IPv6 host goes in brackets, e.g. [fd00::5]:6379"
    if not 1 <= int(port) <= 65535:  # a socket wraps it: :112547 reached port 47011
        return f"port {port} is not one (1-65535)"
    return None


# settings that name local files or folders; s3:// works where REMOTE_HINT says
LOCAL_ONLY = ("output", "models_dir", "raw", "processed", "features", "future_features")
REMOTE_HINT = ("s3:// is read for the demand history and the stock snapshot, and written by publishing: "
               "run --to, sync --to")


def validate(cfg: Config) -> None:
    """Range checks that types alone do not catch; a failure names the setting and where its value
    came from (the config file, an environment variable, .env or an option)."""
    from .frequency import FREQUENCIES
    from .io.columns import parse_renames
    from .io.source import is_uri
    from .models import parse_models

    def check(ok: bool, key: str, rule: str) -> None:
        if not ok:
            value = getattr(cfg.section_of(key), key)
            raise ConfigError(f"{cfg.source(key)}: setting {key!r} {rule}, got {value!r}")

    f = cfg.forecast
    check(f.horizon >= 1, "horizon", "must be >= 1")
    bad_address = address_problem(cfg.ray.address)
    check(bad_address is None, "address", f"must be a Ray cluster address: {bad_address}")
    check(f.freq.upper() in FREQUENCIES, "freq", f"must be one of {', '.join(FREQUENCIES)}")
    f.freq = f.freq.upper()
    try:
        names = parse_models(f.models)
    except ValueError as exc:
        raise ConfigError(f"{cfg.source('models')}: setting 'models': {exc}") from None
    if names is not None:  # none of them fits this frequency: every item would fall back, exit 0
        from .models import MODELS

        unfit = [n for n in names if f.freq not in MODELS[n].freqs]
        fits = ", ".join(sorted(n for n in MODELS if f.freq in MODELS[n].freqs))
        check(len(unfit) < len(names), "models", f"must include a model for frequency {f.freq} "
              f"({', '.join(unfit)} cannot forecast it; these can: {fits})")
    check(f.arima_engine in {"statsforecast", "pmdarima", "statsmodels"}, "arima_engine",
          "must be statsforecast, pmdarima or statsmodels")
    check(f.backtest_windows >= 0, "backtest_windows", "must be >= 0")
    check(f.backtest_step >= 0, "backtest_step", "must be >= 0 (0: the horizon)")
    check(f.backtest_exog in {"known", "realised"}, "backtest_exog", "must be known or realised")
    check(f.backtest_refit in {"first", "all"}, "backtest_refit", "must be first or all")
    check(f.series_start in {"item", "file"}, "series_start", "must be item or file")
    try:
        parse_renames(cfg.paths.columns)
    except ValueError as exc:
        check(False, "columns", str(exc))
    check(f.search_window >= 0, "search_window", "must be >= 0 (0: all history)")
    check(0 <= f.annual_harmonics <= 6, "annual_harmonics", "must be 0-6 (0: no annual cycle)")
    check(f.cache_max_age_days >= 0, "cache_max_age_days", "must be >= 0")
    check(cfg.ray.batch_seconds > 0, "batch_seconds", "must be > 0")
    check(cfg.ray.task_timeout_seconds >= 0, "task_timeout_seconds", "must be >= 0 (0: no limit)")
    check(cfg.ray.num_cpus >= 0, "num_cpus", "must be >= 0 (0: all cores)")
    lstm = cfg.lstm
    check(lstm.lookback >= 2, "lookback", "must be >= 2")
    check(lstm.epochs >= 1, "epochs", "must be >= 1")
    check(lstm.warm_epochs >= 0, "warm_epochs", "must be >= 0")
    check(lstm.units >= 1, "units", "must be >= 1")
    check(lstm.batch_size >= 1, "batch_size", "must be >= 1")
    check(lstm.max_windows_per_item >= 1, "max_windows_per_item", "must be >= 1")
    check(lstm.max_windows >= 1, "max_windows", "must be >= 1")
    for key in LOCAL_ONLY:  # read or written as local files: a URI became a folder named `s3:`
        value = str(getattr(cfg.section_of(key), key))
        check(not is_uri(value), key, f"must be a local (or mounted) path, not a URI ({REMOTE_HINT})")
    p = cfg.publish
    check(p.keep >= 0, "keep", "must be >= 0 (0: keep every run)")
    check(p.keep_local >= 0, "keep_local", "must be >= 0 (0: keep every run date)")
    check(not p.to or "://" not in p.to or p.to.startswith("s3://"), "to",
          "must be a folder or an s3:// URI")
    check(not p.endpoint_url or p.endpoint_url.startswith(("http://", "https://")), "endpoint_url",
          "must start with http:// or https://")
    r = cfg.recommend
    for key in ("service_level_a", "service_level_b", "service_level_c"):
        check(0 < getattr(r, key) < 1, key, "must be between 0 and 1 (exclusive)")
    check(r.holding_cost_rate > 0, "holding_cost_rate", "must be > 0")
    check(r.critical_days >= 0, "critical_days", "must be >= 0")
    check(r.critical_days <= r.high_days, "high_days", "must be >= 'critical_days'")
    check(r.high_days <= r.medium_days, "medium_days", "must be >= 'high_days'")
    check(0 < r.abc_a < 1, "abc_a", "must be in (0, 1)")
    check(r.abc_a < r.abc_b <= 1, "abc_b", "must be in ('abc_a', 1]")
    check(r.review_days >= 0, "review_days", "must be >= 0")
    check(r.excess_days >= 1, "excess_days", "must be >= 1")
    check(r.min_residual_days >= 1, "min_residual_days", "must be >= 1")
    check(r.block_days >= 1, "block_days", "must be >= 1")
    check(r.bootstrap_samples >= 100, "bootstrap_samples", "must be >= 100")
    check(r.history_days >= 1, "history_days", "must be >= 1")
    check(1 <= r.min_history_days <= r.history_days, "min_history_days", "must be in [1, 'history_days']")
    check(1 <= r.rate_days <= r.history_days, "rate_days", "must be in [1, 'history_days']")
