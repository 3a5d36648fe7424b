"""Shared CLI helpers: config loading with error handling, progress bars, console."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.segment import Segments
from rich.table import Table

from ..config import Config, ConfigError, load_config
from ..io.errors import InputError
from ..io.source import is_uri

console = Console(stderr=True)
out = Console()


def fail(msg: str, code: int = 2) -> None:
    """Print a one-line error and exit."""
    console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(messages: list[str], most: int | None = None) -> None:
    """Print warnings, one line each (`most` of them, then how many more), as plain text: a path
    or an item id with [brackets] is not rich markup."""
    shown = messages if most is None else messages[:most]
    for w in shown:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    if len(messages) > len(shown):
        console.print(f"[yellow]warning:[/] ... and {len(messages) - len(shown)} more", highlight=False)


def print_table(table: Table) -> None:
    """Print `table` on stdout at the console's width, or wider when its `no_wrap` columns (run ids,
    paths) need more: their values are never cut or wrapped (a narrower terminal wraps the long
    lines itself; a non-TTY, e.g. a cron log, is 80 columns wide by default)."""
    wide = out.options.update_width(100_000)
    need = Measurement.get(out, wide, table).maximum
    for col in table.columns:  # a wrapping column can shrink to its longest word
        if not col.no_wrap:
            cells = [Measurement.get(out, wide, c) for c in (col.header, *col.cells)]
            need -= max(m.maximum for m in cells) - max(m.minimum for m in cells)
    if need <= out.width:
        out.print(table)
    else:  # print(width=) is capped at the console's width: rendered at `need` here instead
        out.print(Segments(out.render(table, out.options.update_width(need))), crop=False)


def one_line(exc: BaseException, named: bool = False) -> str:
    """An exception's message on one line (`named`: after its type, for OS and network errors)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if named else text


def ray_target(cfg: Config) -> str:
    """The Ray a run joins or starts, for messages: `--address`, RAY_ADDRESS (inside a Ray job),
    else a local Ray."""
    import os

    return cfg.ray.address or os.environ.get("RAY_ADDRESS") or "a local Ray (started here)"


def ray_unreachable(cfg: Config, exc: Exception) -> str:
    """The one-line error for a Ray that could not be joined, with the likely cause when this
    shell lacks RAY_AUTH_MODE: a token cluster refuses it even with the token at hand (Ray turns
    token mode on by itself only for a local cluster it finds; nova-ray does not guess, since a
    driver in token mode cannot run actors on a cluster without it)."""
    import os

    from ..distributed import HeadUnreachable  # only on this failure path: the CLI starts without it

    msg = f"cannot reach Ray at {ray_target(cfg)}: {one_line(exc)}"
    cluster = (cfg.ray.address or os.environ.get("RAY_ADDRESS")) and not isinstance(exc, HeadUnreachable)
    if cluster and "RAY_AUTH_MODE" not in os.environ:
        msg += ("; if the cluster uses token authentication, export RAY_AUTH_MODE=token here too "
                "(with ~/.ray/auth_token or RAY_AUTH_TOKEN)")
    elif cluster:  # the port answered: a token the head refused?
        msg += ("; the head answered: check that this shell's token (RAY_AUTH_TOKEN or ~/.ray/auth_token) "
                "is the cluster's")
    return msg


def ray_failure(exc: BaseException, again: str = "rerun with --resume") -> str | None:
    """The one-line error for Ray failing mid-run (a task out of retries, the LSTM actor dead
    after its restarts, a lost object), or None for another exception. The finished batches are
    checkpointed: the run goes on from them (`again`)."""
    errors = sys.modules.get("ray.exceptions")  # loaded when Ray ran: no import for other errors
    if errors is None or not isinstance(exc, errors.RayError):
        return None
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")[:300]
    return (f"Ray failed during the run ({type(exc).__name__}: {first}); nothing was published and "
            f"the finished batches are checkpointed: {again} (the run's log has the details)")


REFUSED = ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden")


def full_disk(exc: BaseException) -> bool:
    """Whether `exc` is a full disk or quota (ENOSPC, EDQUOT; pyarrow's errors carry only the text)."""
    import errno

    codes = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    text = str(exc)
    said = "No space left on device" in text or "quota exceeded" in text
    return getattr(exc, "errno", None) in codes or said


def write_failure(cfg: Config, exc: OSError, again: str = "rerun (it resumes from its checkpoints)") -> str:
    """The one-line error of a run that could not write: a full disk names the folders it writes to
    (the error names no path) and says what to do (`again`: how the command goes on); anything else
    as it is."""
    if not full_disk(exc):
        return one_line(exc, named=True)
    import tempfile

    return (f"no space left on a device the run writes to (results {cfg.paths.output}, models "
            f"{cfg.paths.models_dir}, temp {tempfile.gettempdir()}): {one_line(exc)}; free space there, "
            f"then {again}")


def sync_failure(target: str, exc: OSError) -> str:
    """The one-line error of a publish to `target` that failed: a refusal (permissions, a read-only
    folder, credentials) or a full target that a rerun will not get past until it is fixed, or an
    interruption (the network) that a rerun resumes. Either way the published run is the one before."""
    import errno

    text = one_line(exc)
    if full_disk(exc):
        return (f"publishing to {target} failed: the target is full: {text}; free space there, then rerun "
                "(the previously published run is intact)")
    refused = isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    if refused or any(code in text for code in REFUSED):
        return (f"publishing to {target} was refused: {text}; fix the permissions or credentials, "
                "then rerun (the previously published run is intact)")
    return (f"publishing to {target} was interrupted: {text}; the previously published run is intact, "
            "rerun to resume")


def file_in_the_way(path: str | Path) -> Path | None:
    """The file at `path`, or at the nearest existing parent of it, that keeps a folder from being
    made there; None when `path` is a folder or can be created."""
    p = Path(path).expanduser()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p if p.exists() and not p.is_dir() else None


def setting_label(cfg: Config, key: str, option: str) -> str:
    """How a message names the path setting `key` of [paths]: `OPTION VALUE`, or
    `paths.KEY VALUE (where it was set)` when no option set it."""
    value = getattr(cfg.paths, key)
    src = cfg.source(key)
    return f"{option} {value}" if src.startswith("option ") else f"paths.{key} {value} ({src})"


def local_or_exit(path: str | Path, label: str) -> None:
    """Exit 2 with one line when `path` (named by `label`) is a URI where a local (or mounted)
    path is needed: `Path("s3://b/k")` is the local folder `s3:/b/k`, written without a word."""
    from ..config import REMOTE_HINT

    if is_uri(path):
        fail(f"{label}: a local (or mounted) path is needed here, not a URI ({REMOTE_HINT})")


def folder_or_exit(path: str | Path, label: str, remote_ok: bool = False, write: bool = False) -> None:
    """Exit 2 with one line, before anything is written, when a file stands where the folder
    `path` (named by `label`, e.g. `--output PATH`) is or would be created, when `path` is a
    URI (unless `remote_ok`: a publish target, s3://, is the publisher's to check), or, for a
    folder the command writes (`write`), when it cannot be written."""
    if not str(path):
        return
    if is_uri(path):
        if not remote_ok:
            local_or_exit(path, label)
        return
    blocker = file_in_the_way(path)
    if blocker is None:
        if write:
            _writable_or_exit(Path(path).expanduser(), label)
        return
    if blocker == Path(path).expanduser():
        fail(f"{label} is a file, not a folder")
    fail(f"{label}: {blocker} is a file, not a folder")


def _writable_or_exit(path: Path, label: str) -> None:
    """Exit 2 naming `label` when the folder `path`, or the nearest folder above it that exists
    (where it would be created), cannot be written: the run failed later with a bare
    `PermissionError` (exit 1) naming no option."""
    import os

    here = path.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    if here.is_dir() and not os.access(here, os.W_OK | os.X_OK):
        where = "" if here == path.absolute() else f" (it would be created in {here})"
        fail(f"{label}: {here} cannot be written{where}: permission denied or a read-only file system")


def console_logging(verbose: bool) -> None:
    """--verbose: nova-ray's log (debug and up) on the terminal too; the run's log file always has it."""
    import logging

    from rich.logging import RichHandler

    log = logging.getLogger("nova_ray")
    if verbose and not any(isinstance(h, RichHandler) for h in log.handlers):
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setLevel(logging.DEBUG)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def config_or_exit(config_file: str | None, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(config_file, overrides)
    except ConfigError as exc:
        fail(str(exc))
    raise AssertionError  # unreachable


class BarProgress:
    """Rich progress bars, one per pipeline stage, with counts and ETA."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet or not sys.stderr.isatty() and False
        self._p = Progress(
            TextColumn("[bold]{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=False,
        )
        self._task: Any = None

    def __enter__(self) -> BarProgress:
        self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self._p.__exit__(*exc)

    def _finish(self) -> None:
        if self._task is not None:
            t = self._p.tasks[self._task]
            self._p.update(self._task, completed=t.total or 1, total=t.total or 1)

    def stage(self, name: str, total: int | None = None) -> None:
        self._finish()
        self._task = self._p.add_task(name, total=total or 1)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._p.advance(self._task, n)


__all__ = [
    "BarProgress",
    "InputError",
    "config_or_exit",
    "console",
    "fail",
    "file_in_the_way",
    "folder_or_exit",
    "out",
    "print_table",
    "setting_label",
    "sync_failure",
]
