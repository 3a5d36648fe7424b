"""`nova-ray doctor`: a pre-flight checklist of the set-up, with what to fix; exit 1 if a check failed."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from ..io.source import is_uri
from . import app
from .common import file_in_the_way, out

# module to import -> distributions that may provide it (first installed one gives the version)
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "ray": ("ray",),
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "polars": ("polars",),
    "pyarrow": ("pyarrow",),
    "statsforecast": ("statsforecast",),
    "prophet": ("prophet",),
    "pmdarima": ("pmdarima",),
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-gpu"),
    "statsmodels": ("statsmodels",),
    "fastapi": ("fastapi",),
}
MIN_PYTHON = (3, 10)
PROBE_MARK = "NOVA_RAY_PROBE "
PROBE_CODE = (
    "import json, sys\n"
    "from nova_ray.distributed import probe_ray\n"
    f"print({PROBE_MARK!r} + json.dumps(probe_ray(sys.argv[1] or None)), flush=True)\n"
)
INSTALL_FIX = "reinstall: .venv/bin/pip install -e '.[dev]' (or `make run`, which creates .venv)"


@dataclass
class Check:
    """One line of the checklist: status is ok, warn or fail; `fix` says what to do when not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(exc).__name__
    return msg if len(msg) <= 300 else msg[:297] + "..."


def _dist_version(dists: tuple[str, ...]) -> str | None:
    for d in dists:
        try:
            return version(d)
        except PackageNotFoundError:
            continue
    return None


def check_python() -> Check:
    v = sys.version_info
    text = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if (v.major, v.minor) < MIN_PYTHON:
        return Check("python", "fail", text, f"use Python >= {'.'.join(map(str, MIN_PYTHON))}")
    return Check("python", "ok", text)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C++ libraries' start-up chatter, e.g. TensorFlow's) for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_dependency(module: str, dists: tuple[str, ...]) -> Check:
    """Import `module` (ray: locate only; the Ray check imports it in a child process) and its version."""
    t0 = time.perf_counter()
    try:
        if module == "ray":
            if importlib.util.find_spec("ray") is None:
                raise ImportError("No module named 'ray'")
        else:
            with _quiet_stderr():
                importlib.import_module(module)
    except Exception as exc:  # a broken install raises all sorts of errors at import time
        return Check(module, "fail", f"cannot import: {_one_line(exc)}", INSTALL_FIX)
    ver = _dist_version(dists) or getattr(sys.modules.get(module), "__version__", None) or "?"
    took = time.perf_counter() - t0
    return Check(module, "ok", f"{ver}" + (f" (import {took:.1f} s)" if took >= 1 else ""))


def check_data(path: str, explicit: bool, columns: str = "") -> Check:
    """The demand history exists and passes validation (nova_ray.io.demand.read_demand)."""
    from ..io.demand import read_demand
    from ..io.errors import InputError, SourceMissing, SourceUnreachable

    p = path if is_uri(path) else Path(path)  # a URI (s3://...) as given: Path would mangle it
    if not explicit and isinstance(p, Path) and not p.exists() and p.parent.name == "demo":
        return Check(
            "demand data",
            "warn",
            f"{p} not found",
            f"`nova-ray forecast` writes the demo data there on its first run, or run "
            f"`nova-ray demo-data --out {p.parent}`; for your data pass --data PATH",
        )
    try:
        df = read_demand(p, columns=columns)
    except SourceUnreachable as exc:
        return Check("demand data", "fail", str(exc), "check the endpoint (AWS_ENDPOINT_URL_S3 or "
                     "AWS_ENDPOINT_URL), the AWS_* credentials and the network")
    except InputError as exc:
        fix = (
            "pass --data PATH or set paths.data in configs/default.toml (or NOVA_RAY_DATA)"
            if isinstance(exc, SourceMissing)
            else "fix the file at the place named (columns item_id, date, quantity >= 0)"
        )
        return Check("demand data", "fail", str(exc), fix)
    sites = f", {df['site'].nunique()} sites" if "site" in df.columns else ""
    return Check(
        "demand data",
        "ok",
        f"{p}: {len(df):,} rows, {df['item_id'].nunique():,} items{sites}, "
        f"{df['date'].min().date()} to {df['date'].max().date()}",
    )


def check_publish(to: str, endpoint_url: str | None = None) -> Check:
    """The publish target (`publish.to`): a folder must exist (sync never creates it: a share that
    is not mounted) and be writable; an S3 target's bucket must exist and be readable with the
    credentials in use (writing is checked when a run publishes)."""
    if not to:
        return Check("publish target", "ok", "none set (publish.to empty: runs are not published)")
    if is_uri(to):
        from ..io.location import PublishError, open_location
        from ..io.publish import check_target, read_pointer

        try:
            loc = open_location(to, endpoint_url)
            check_target(loc)
            pointer = read_pointer(loc)
        except PublishError as exc:
            return Check("publish target", "fail", str(exc), "create the bucket, or fix publish.to / --to")
        except OSError as exc:
            return Check("publish target", "fail", f"{to}: cannot reach it: {_one_line(exc)}",
                         "check the endpoint (publish.endpoint_url, AWS_ENDPOINT_URL), the credentials "
                         "and the network")
        what = f"publishes over run {pointer[1].get('run_id')}" if pointer else "no run published there yet"
        return Check("publish target", "ok", f"{to}: bucket found, {what} (writing is checked by the run)")
    p = Path(to).expanduser()
    if not p.is_dir():
        what = "is a file, not a folder" if p.exists() else "no such folder"
        return Check("publish target", "fail", f"{p}: {what}",
                     "mount the share, or create the folder for a new target (sync never creates it)")
    try:
        with tempfile.NamedTemporaryFile(dir=p, prefix=".nova-ray-doctor-"):
            pass
    except OSError as exc:
        return Check("publish target", "fail", f"{p}: not writable ({exc.strerror or exc})",
                     "fix the permissions of the target folder")
    return Check("publish target", "ok", f"{p}: writable")


def check_output(path: str, name: str = "results folder",
                 option: str = "--results (forecast: --output)") -> Check:
    """A folder the runs write to (the results folder, the model store), or the nearest existing
    parent it will be created in, is writable."""
    p = Path(path).expanduser()
    if (blocker := file_in_the_way(p)) is not None:
        return Check(name, "fail", f"{blocker} is a file, not a folder", f"pass {option} with a folder path")
    target = p
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".nova-ray-doctor-"):
            pass
    except OSError as exc:
        return Check(name, "fail", f"{target}: not writable ({exc.strerror or exc})",
                     f"fix the permissions or choose another folder with {option}")
    free = shutil.disk_usage(target).free / 1e9
    where = str(p) if target == p else f"{p} (will be created in {target})"
    if free < 1.0:
        return Check(name, "warn", f"{where}: writable, only {free:.1f} GB free",
                     "free disk space: a run writes staging copies before publishing")
    return Check(name, "ok", f"{where}: writable, {free:.0f} GB free")


def _tcp_check(address: str, timeout: float = 5.0) -> str | None:
    """None when HOST:PORT answers as a Ray head's GCS port would (a ray:// client address: when
    it takes a TCP connection), else why not: a port that takes connections and says nothing kept
    `doctor` silent until its probe's timeout. auto is left to Ray."""
    import socket

    from ..config import ConfigError
    from ..distributed import check_address

    if address.startswith("ray://"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            return None
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return None
        except OSError as exc:
            return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    try:
        check_address(address, timeout)
    except (ConnectionError, ConfigError) as exc:
        return str(exc)
    return None


def run_probe(address: str | None, timeout: float) -> dict[str, Any]:
    """Run nova_ray.distributed.probe_ray in a child process (ray.init can hang; the child can be killed)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="2")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE_CODE, address or ""],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"no answer within {timeout:.0f} s") from None
    for line in proc.stdout.splitlines():
        if line.startswith(PROBE_MARK):
            return json.loads(line[len(PROBE_MARK) :])
    err = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("[", " "))]
    raise RuntimeError(_one_line(err[-1] if err else f"probe exited with code {proc.returncode}"))


def check_ray(address: str | None, timeout: float) -> tuple[Check, dict[str, Any] | None]:
    """Ray starts (or the cluster at `address` answers) and runs a task; reports its resources."""
    try:
        from ..distributed import probe_ray  # noqa: F401  (run in a child process below)
    except ImportError:
        return Check(
            "ray runtime",
            "fail",
            "nova_ray.distributed has no probe_ray()",
            "update nova-ray: `nova-ray doctor` needs nova_ray.distributed.probe_ray",
        ), None
    from_env = not address and bool(os.environ.get("RAY_ADDRESS"))
    address = address or os.environ.get("RAY_ADDRESS") or None
    where = f"cluster at {address}" if address else "local Ray (1 CPU, started for this check)"
    if from_env:  # the user gave none: say where it came from, as a run does
        where += " (from the environment variable RAY_ADDRESS)"
    if address:
        fix = (
            f"is the cluster up? `ray status --address {address}` on the head node; check the address, "
            "the firewall (GCS port, default 6379), RAY_AUTH_TOKEN and that Ray/Python versions match"
        )
    else:
        fix = (
            "see the Ray logs under /tmp/nova-ray-probe-*; check free memory and /tmp space, "
            "and that no firewall blocks localhost ports"
        )
    if address and (why := _tcp_check(address)):
        return Check("ray runtime", "fail", f"{where}: {why}", fix), None
    try:
        info = run_probe(address, timeout)
    except Exception as exc:
        return Check("ray runtime", "fail", f"{where}: {_one_line(exc)}", fix), None
    text = (
        f"ray {info.get('ray_version', '?')}, {where}: {info.get('nodes', '?')} node(s), "
        f"{info.get('cpus', 0):g} CPU, {info.get('gpus', 0):g} GPU; a task ran on {info.get('worker', '?')}; "
        f"{info.get('seconds', 0):.1f} s"
    )
    if problem := node_problem(info.get("node_checks") or []):
        fix = "install the same nova-ray on every node (cluster.yaml's setup commands: `ray up` again)"
        return Check("ray runtime", "fail", f"{text}; {problem}", fix), info
    return Check("ray runtime", "ok", text), info


def node_problem(nodes: list[dict[str, str]]) -> str | None:
    """What is wrong with the nodes' own installs (`probe_ray`'s `node_checks`), or None: a node
    where nova-ray's models do not import, or whose nova-ray differs from this one's."""
    from .. import __version__

    broken = [f"{n['node']}: {n['error']}" for n in nodes if n.get("error")]
    if broken:
        return f"{len(broken)} of {len(nodes)} node(s) cannot run nova-ray's tasks: " + "; ".join(broken[:3])
    other = [f"{n['node']} has nova-ray {n['nova_ray']}" for n in nodes if n.get("nova_ray") != __version__]
    if other:
        return f"this driver has nova-ray {__version__}, " + "; ".join(other[:3])
    return None


def check_gpu(ray_gpus: float | None) -> Check:
    """GPUs TensorFlow sees (the LSTM trains there); warns when Ray has GPUs that TensorFlow cannot use."""
    try:
        with _quiet_stderr():
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
    except Exception as exc:
        return Check("gpu", "warn", f"cannot ask TensorFlow: {_one_line(exc)}", INSTALL_FIX)
    if gpus:
        return Check(
            "gpu",
            "ok",
            f"{len(gpus)} GPU(s) visible to TensorFlow: "
            + ", ".join(g.name for g in gpus)
            + "; the LSTM trains on a GPU",
        )
    if ray_gpus:
        return Check(
            "gpu",
            "warn",
            f"Ray reports {ray_gpus:g} GPU(s) but TensorFlow sees none",
            "the CPU build of TensorFlow is installed (the LSTM trains on CPU): on GPU nodes run "
            "pip uninstall -y tensorflow-cpu && pip install 'tensorflow[and-cuda]==2.21.*', and "
            "check the CUDA driver with nvidia-smi",
        )
    return Check("gpu", "ok", "none visible: the LSTM trains on CPU (fine for small runs)")


def check_features(cfg: Any, data: str) -> Check:
    """Where a run's external factors come from: the feature table (its days; sources that end
    over a month before it, from its data dictionary), the raw/ folder beside `data`, or none."""
    from ..config import Forecast
    from ..exog import STALE_FEATURE_DAYS
    from ..io.features import observed_until
    from ..run_inputs import features_path

    name = "external factors"
    if not cfg.forecast.exog:
        return Check(name, "ok", "switched off (exog = false / --no-exog)")
    path = features_path(cfg)
    if path and path != Forecast().features and not Path(path).is_file():  # a run stops on it (exit 2)
        return Check(name, "fail", f"setting 'features': {path} not found",
                     "write it with `nova-ray etl`, or leave the setting at its default")
    if path and Path(path).is_file():
        import pandas as pd
        import pyarrow.parquet as pq

        try:
            dates = pd.to_datetime(pq.read_table(path, columns=["date"]).column("date").to_pandas())
        except Exception as exc:  # noqa: BLE001 - any unreadable table: one line
            return Check(name, "fail", f"{path}: not a feature table: {_one_line(exc)}",
                         "write it again with `nova-ray etl`")
        if dates.empty:
            return Check(name, "fail", f"{path}: no rows", "write it again with `nova-ray etl`")
        last = dates.max()
        detail = f"{path}: {dates.min().date()} to {last.date()}"
        late = {c: d for c, d in observed_until(path).items() if (last - d).days > STALE_FEATURE_DAYS}
        if late:
            ends = ", ".join(f"{c} {d.date()}" for c, d in sorted(late.items()))
            fix = "run `nova-ray etl` on their newer files (`etl --fetch`, or `run --fetch` nightly)"
            return Check(name, "warn", f"{detail}; sources that end over {STALE_FEATURE_DAYS} days before "
                         f"it: {ends}", fix)
        return Check(name, "ok", detail)
    raw = Path(data).parent / "raw" if not is_uri(data) else None
    if raw is not None and raw.is_dir():
        return Check(name, "ok", f"built from {raw} at each run (the demo layout)")
    return Check(name, "warn", f"none: no {path or 'feature table'} and no raw/ folder beside the demand: "
                 "the models run without them", "run `nova-ray etl` (docs/etl.md)")


MARK = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}


@app.command("doctor")
def doctor(
    results: str = typer.Option(
        None, "--results", help="Results folder to check (default data/ml_results, i.e. paths.output)."
    ),
    data: str = typer.Option(None, "--data", help="Demand history to check (default: paths.data)."),
    address: str = typer.Option(
        None,
        "--address",
        help="Ray cluster to check: auto or HOST:PORT (default: "
        "start a local Ray with 1 CPU; RAY_ADDRESS also works).",
    ),
    no_ray: bool = typer.Option(False, "--no-ray", help="Skip the Ray check (it starts Ray: ~10-20 s)."),
    timeout: float = typer.Option(120.0, "--timeout", min=5, help="Seconds to wait for Ray."),
    config: str = typer.Option(
        None, "--config", help="Config TOML (default configs/default.toml).", envvar="NOVA_RAY_CONFIG"
    ),
) -> None:
    """Check Python, dependencies, demand data, external factors, Ray, GPU, the results folder, the
    model store and the publish target; exit 1 if a check failed."""
    from ..config import DEFAULT_CONFIG, Config, ConfigError, load_config

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)  # "Importing plotly failed" is no problem
    checks: list[Check] = [check_python()]
    try:
        cfg = load_config(config, {})
        source = config or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else "built-in defaults")
        checks.append(Check("config", "ok", f"{source} (+ NOVA_RAY_* environment, .env)"))
    except ConfigError as exc:
        cfg = Config()
        checks.append(Check("config", "fail", str(exc), "fix the setting named (see configs/default.toml)"))
    checks += [check_dependency(m, d) for m, d in DEPENDENCIES.items()]
    checks.append(check_data(data or cfg.paths.data, explicit=data is not None, columns=cfg.paths.columns))
    checks.append(check_features(cfg, data or cfg.paths.data))
    info = None
    if no_ray:
        checks.append(Check("ray runtime", "warn", "skipped (--no-ray)"))
    else:
        ray_check, info = check_ray(address or cfg.ray.address or None, timeout)
        checks.append(ray_check)
    checks.append(check_gpu((info or {}).get("gpus")))
    checks.append(check_output(results or cfg.paths.output))
    checks.append(check_output(cfg.paths.models_dir, "model store", "--models-dir (paths.models_dir)"))
    checks.append(check_publish(cfg.publish.to, cfg.publish.endpoint_url or None))

    table = Table(title="nova-ray doctor", title_justify="left", show_lines=False)
    table.add_column("", width=1)
    table.add_column("check", no_wrap=True)
    table.add_column("result", overflow="fold")
    fixes = any(c.fix for c in checks)
    if fixes:
        table.add_column("how to fix", overflow="fold")
    for c in checks:
        # plain text: a fix's `pip install -e '.[dev]'` or `tensorflow[and-cuda]` is no markup
        table.add_row(MARK[c.status], c.name, Text(c.detail), *([Text(c.fix)] if fixes else []))
    out.print(table)
    failed = [c.name for c in checks if c.status == "fail"]
    warned = [c.name for c in checks if c.status == "warn"]
    if failed:
        out.print(f"[red]✗ {len(failed)} check(s) failed:[/] {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)
    extra = f" ({len(warned)} warning(s): {', '.join(warned)})" if warned else ""
    out.print(
        f"[green]✓ ready:[/] {len(checks) - len(warned)} of {len(checks)} checks passed{extra}",
        highlight=False,
    )
