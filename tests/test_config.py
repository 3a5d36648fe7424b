"""Config precedence and errors."""

from pathlib import Path

import pytest

from nova_ray.config import Config, ConfigError, load_config


def test_defaults_match_default_toml() -> None:
    assert load_config("configs/default.toml", env={}, dotenv=None).to_dict() == Config().to_dict()


def test_precedence_toml_env_dotenv_cli(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[forecast]\nhorizon = 10\nfreq = "W"\n[paths]\noutput = "from_toml"\n')
    dotenv = tmp_path / ".env"
    dotenv.write_text("# seed keys\nML_RESULTS_PATH=from_dotenv\nMODELS_DIR='m'\n")
    env = {"NOVA_RAY_HORIZON": "20", "NOVA_RAY_OUTPUT": "from_env", "NOVA_RAY_FREQ": "m"}
    cfg = load_config(toml, env=env, dotenv=dotenv)
    assert cfg.forecast.horizon == 20 and cfg.forecast.freq == "M"
    assert cfg.paths.output == "from_dotenv" and cfg.paths.models_dir == "m"
    cfg = load_config(toml, {"horizon": 5, "output": "cli"}, env=env, dotenv=dotenv)
    assert cfg.forecast.horizon == 5 and cfg.paths.output == "cli"


def test_the_servers_variables_are_not_settings(tmp_path: Path) -> None:
    """A nightly job sharing the server's environment (file) is not stopped by its variables."""
    dotenv = tmp_path / ".env"
    toml = tmp_path / "c.toml"
    toml.write_text("[forecast]\nhorizon = 12\nbacktest_windows = 2\n")
    dotenv.write_text(f"NOVA_RAY_SERVE_RESULTS=/srv/shared\nNOVA_RAY_CONFIG={toml}\nNOVA_RAY_HORIZON=9\n")
    env = {"NOVA_RAY_SERVE_POLL_SECONDS": "5", "NOVA_RAY_SERVE_ENDPOINT_URL": "http://x",
           "NOVA_RAY_CONFIG": "c"}
    cfg = load_config(None, env=env, dotenv=dotenv)
    # NOVA_RAY_CONFIG in .env names the config file (it was silently ignored); .env's settings win
    assert cfg.forecast.horizon == 9 and cfg.forecast.backtest_windows == 2
    dotenv.write_text("NOVA_RAY_CONFIG=missing.toml\n")
    with pytest.raises(ConfigError, match=r"\.env \(NOVA_RAY_CONFIG\): missing.toml: config file not found"):
        load_config(None, env={}, dotenv=dotenv)


@pytest.mark.parametrize(
    "env,match",
    [
        ({"NOVA_RAY_HORIZON": "ten"}, "environment variable NOVA_RAY_HORIZON: setting 'horizon' must be int"),
        ({"NOVA_RAY_NOPE": "1"}, "unknown setting 'nope'"),
        ({"NOVA_RAY_FREQ": "X"}, "setting 'freq' must be one of"),
        ({"NOVA_RAY_HORIZON": "0"}, "variable NOVA_RAY_HORIZON: setting 'horizon' must be >= 1, got 0"),
        ({"NOVA_RAY_ARIMA_ENGINE": "r"}, "arima_engine"),
        ({"NOVA_RAY_RATE_DAYS": "400"}, r"RATE_DAYS: setting 'rate_days' must be in \[1, 'history_days'\]"),
        # checked when the config loads, before any input is read: they once failed after the run
        ({"NOVA_RAY_MODELS": "arima,foo"}, "NOVA_RAY_MODELS: setting 'models': unknown model 'foo'"),
        ({"NOVA_RAY_KEEP": "-1"}, "NOVA_RAY_KEEP: setting 'keep' must be >= 0"),
        ({"NOVA_RAY_TO": "ftp://x/y"}, "setting 'to' must be a folder or an s3:// URI"),
        ({"NOVA_RAY_ENDPOINT_URL": "minio:9000"}, "setting 'endpoint_url' must start with http"),
        ({"NOVA_RAY_NUM_CPUS": "-3"}, "setting 'num_cpus' must be >= 0"),
        ({"NOVA_RAY_UNITS": "0"}, "setting 'units' must be >= 1"),
        # written or read as local files: a URI became a local folder named `s3:`, exit 0
        ({"NOVA_RAY_OUTPUT": "s3://b/res"}, "NOVA_RAY_OUTPUT: setting 'output' must be a local .*run --to"),
        ({"NOVA_RAY_MODELS_DIR": "s3://b/m"}, "setting 'models_dir' must be a local"),
        ({"NOVA_RAY_RAW": "s3://b/raw"}, "setting 'raw' must be a local"),
        ({"NOVA_RAY_PROCESSED": "s3://b/p"}, "setting 'processed' must be a local"),
        ({"NOVA_RAY_FEATURES": "s3://b/f.parquet"}, "setting 'features' must be a local"),
        ({"NOVA_RAY_FUTURE_FEATURES": "s3://b/f.csv"}, "setting 'future_features' must be a local"),
    ],
)
def test_bad_settings_are_clear(env: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, env=env, dotenv=None)


def test_a_range_error_names_where_the_value_came_from(tmp_path: Path) -> None:
    """The config file, .env or an option: the last source of the bad value is named."""
    toml = tmp_path / "c.toml"
    toml.write_text("[forecast]\nbacktest_windows = -1\n")
    with pytest.raises(ConfigError, match=r"c.toml: setting 'backtest_windows' must be >= 0, got -1"):
        load_config(toml, env={}, dotenv=None)
    dotenv = tmp_path / ".env"
    dotenv.write_text("NOVA_RAY_HIGH_DAYS=3\n")
    with pytest.raises(ConfigError, match=r"\.env \(NOVA_RAY_HIGH_DAYS\): setting 'high_days' must be >= "):
        load_config(None, env={}, dotenv=dotenv)
    with pytest.raises(ConfigError, match=r"option --horizon: setting 'horizon' must be >= 1"):
        load_config(None, {"horizon": -5}, env={}, dotenv=None)
    assert load_config(None, {"horizon": 5}, env={}, dotenv=None).to_dict() == load_config(
        None, env={"NOVA_RAY_HORIZON": "5"}, dotenv=None).to_dict()  # sources are not settings


def test_bad_toml(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[forecast]\nhorizont = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown setting 'horizont' in \[forecast\]"):
        load_config(p, env={}, dotenv=None)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", env={}, dotenv=None)
    # a setting above every section, or in another's: where it belongs is said ("unknown section")
    p.write_text("horizon = 14\n")
    outside = r"c.toml: setting 'horizon' outside a section: put it under \[forecast\]"
    with pytest.raises(ConfigError, match=outside):
        load_config(p, env={}, dotenv=None)
    p.write_text("[ray]\nhorizon = 14\n")
    elsewhere = r"unknown setting 'horizon' in \[ray\] \(it belongs in \[forecast\]\)"
    with pytest.raises(ConfigError, match=elsewhere):
        load_config(p, env={}, dotenv=None)


def test_recommend_section_matches_policy() -> None:
    from dataclasses import fields

    from nova_ray.config import Recommend
    from nova_ray.recommend import Policy

    # the policy's names are the section's, plus cap_outliers from [forecast] (the models' capping)
    assert [f.name for f in fields(Recommend)] == [f.name for f in fields(Policy) if f.name != "cap_outliers"]
    assert Policy.from_config(load_config(None, {}, env={}, dotenv=None)) == Policy()
    off = load_config(None, {"cap_outliers": False}, env={}, dotenv=None)
    assert not Policy.from_config(off).cap_outliers


def test_backtest_refit_and_search_window_are_checked() -> None:
    with pytest.raises(ConfigError, match="backtest_refit"):
        load_config(None, {"backtest_refit": "sometimes"}, env={}, dotenv=None)
    with pytest.raises(ConfigError, match="series_start.*must be item or file"):
        load_config(None, {"series_start": "export"}, env={}, dotenv=None)
    with pytest.raises(ConfigError, match=r"'columns' expected FILE_NAME=NAME pairs .*got 'data'"):
        load_config(None, {"columns": "codigo_item=item_id,data"}, env={}, dotenv=None)
    with pytest.raises(ConfigError, match="'backtest_exog' must be known or realised"):
        load_config(None, {"backtest_exog": "oracle"}, env={}, dotenv=None)
    assert load_config(None, {}, env={}, dotenv=None).forecast.backtest_exog == "known"
    with pytest.raises(ConfigError, match="search_window"):
        load_config(None, {"search_window": -1}, env={}, dotenv=None)
    cfg = load_config(None, {"backtest_refit": "all", "search_window": 0}, env={}, dotenv=None)
    assert (cfg.forecast.backtest_refit, cfg.forecast.search_window) == ("all", 0)


def test_models_none_of_which_fit_the_frequency_are_a_config_error() -> None:
    """`--models lstm --freq Q`: every item fell back to naive with exit 0."""
    from nova_ray.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="must include a model for frequency Q .lstm cannot forecast it"):
        load_config(None, {"models": "lstm", "freq": "Q"}, env={}, dotenv=None)
    assert load_config(None, {"models": "lstm,naive", "freq": "Q"}, env={}, dotenv=None).forecast.models


def test_a_ray_job_with_relative_output_or_models_dir_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Inside `ray job submit` the working folder is a temporary copy: the default data/ml_results
    and models/ were written there and lost with the job (exit 0)."""
    from nova_ray.config import RAY_JOB_ENV, job_paths_problem

    cfg = load_config(None, {}, env={}, dotenv=None)
    assert job_paths_problem(cfg, env={}) is None  # not a job: relative paths are fine
    problem = job_paths_problem(cfg, env={RAY_JOB_ENV: "{}"})
    assert problem is not None and "give --output and --models-dir as absolute paths" in problem
    shared = load_config(None, {"output": str(tmp_path / "out"), "models_dir": str(tmp_path / "m")},
                         env={}, dotenv=None)
    assert job_paths_problem(shared, env={RAY_JOB_ENV: "{}"}) is None
    from nova_ray.pipeline import run_forecast

    monkeypatch.setenv(RAY_JOB_ENV, "{}")  # as Ray's job supervisor sets it for the job's driver
    with pytest.raises(ConfigError, match="give --output and --models-dir as absolute"):
        run_forecast(cfg, use_ray=False)  # before reading anything


def test_a_model_version_changes_the_stores_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new model version (Croston's bands, the seasonal windows) left the model store's key as it
    was: stored backtests made by the old model were reused for a week. The key now holds them."""
    import dataclasses

    from nova_ray.config import load_config
    from nova_ray.models import MODELS
    from nova_ray.provenance import config_hash

    cfg = load_config(None, {}, env={}, dotenv=None)
    before = config_hash(cfg)
    monkeypatch.setitem(MODELS, "croston", dataclasses.replace(MODELS["croston"], version="99"))
    assert config_hash(cfg) != before


def test_settings_of_models_a_run_never_fits_leave_the_stores_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with a list of models kept its key on the settings, library and version of models it
    never fits: another `[lstm] epochs` (or a new TensorFlow) for a run without the LSTM fitted
    every item cold the next night. Those of the models it fits, and of seasonal naive (an item
    whose models failed), still change it; "auto" may fit any model, so every one counts."""
    import dataclasses

    from nova_ray.config import load_config
    from nova_ray.models import MODELS
    from nova_ray.provenance import config_hash

    def key(models: str, **over: object) -> str:
        return config_hash(load_config(None, {"models": models, **over}, env={}, dotenv=None))

    stat = "ets,theta"
    assert key(stat, epochs=3) == key(stat) and key(stat, arima_engine="statsmodels") == key(stat)
    assert key("ets,lstm", epochs=3) != key("ets,lstm")
    assert key("auto", epochs=3) != key("auto")
    assert key(stat, search_window=365) != key(stat)
    before = key(stat), key("auto")
    monkeypatch.setitem(MODELS, "lstm", dataclasses.replace(MODELS["lstm"], version="99"))
    assert key(stat) == before[0] and key("auto") != before[1]
    monkeypatch.setitem(MODELS, "naive", dataclasses.replace(MODELS["naive"], version="99"))
    assert key(stat) != before[0]
