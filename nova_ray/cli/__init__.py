"""The nova-ray command line: thin wrappers that parse options, load config and call the pipeline."""

from __future__ import annotations

import inspect
import shlex
import signal
import sys

import typer

from ..config import ConfigError
from ..io.errors import InputError

app = typer.Typer(
    name="nova-ray",
    help="Forecast spare-parts demand on Ray and turn it into purchasing recommendations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import demo as _demo  # noqa: E402,F401  (registers commands)
from . import doctor as _doctor  # noqa: E402,F401
from . import etl as _etl  # noqa: E402,F401
from . import forecast as _forecast  # noqa: E402,F401
from . import recommend as _recommend  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401
from . import runs as _runs  # noqa: E402,F401
from . import serve as _serve  # noqa: E402,F401
from . import sync as _sync  # noqa: E402,F401

for _info in app.registered_commands:  # the command list: each docstring's first paragraph on one
    _doc = inspect.getdoc(_info.callback) or ""  # line (Rich kept the docstring's line breaks)
    _info.short_help = _info.short_help or " ".join(_doc.split("\n\n")[0].split())


def _resume_hint() -> str:
    """How to continue the interrupted command (its checkpoints are kept): the command as it was
    given, with what makes it resume (`--resume`; `run`'s date, which a rerun after midnight
    would otherwise change)."""
    args = sys.argv[1:]
    command = next((a for a in args if not a.startswith("-")), "")
    results = sys.modules.get("nova_ray.io.results")  # imported once a run opened its checkpoints
    if command in ("forecast", "train") and not getattr(results, "CHECKPOINTED", 0):
        return "nothing was checkpointed yet: rerun to start again"  # read, Ray's start, a hang
    if command in ("forecast", "train"):
        again = [a for a in args if a != "--resume"] + ["--resume"]
        return f"rerun `nova-ray {shlex.join(again)}` to continue (the same day or the next)"
    if command == "run":  # without --fetch: files downloaded between the two would start it afresh
        started = getattr(sys.modules.get("nova_ray.cli.run"), "RUN_DATE", None)
        dated = any(a == "--date" or a.startswith("--date=") for a in args)
        again = [a for a in args if a != "--fetch"]
        again = again if dated or started is None else [*again, "--date", str(started)]
        return f"rerun `nova-ray {shlex.join(again)}` to continue (it resumes)"
    return "rerun to start again"


def usage_line(exc: Exception) -> str | None:
    """A usage error (a bad, unknown or missing option or command) on one line, with where to read
    more: `error: MESSAGE (see nova-ray CMD --help)`; None for other exceptions. Click's exceptions
    and typer's own copy of them (typer >= 0.24, which click's classes do not match) are recognised
    by what they carry: an int exit_code, format_message() and, for usage errors, ctx."""
    code, fmt = getattr(exc, "exit_code", None), getattr(exc, "format_message", None)
    if not (isinstance(code, int) and callable(fmt)):
        return None
    msg = " ".join(str(fmt()).split()).removesuffix(".")
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None)
    return f"error: {msg}" + (f" (see {command} --help)" if command else "")


_TERMINATED: list[int] = []  # set by the SIGTERM handler: typer reports both signals as exit 130


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (`timeout`, `kill`, a service manager stopping the job) ends a run as Ctrl-C does."""
    _TERMINATED.append(signum)
    raise KeyboardInterrupt


def _interrupted() -> None:
    what = "terminated" if _TERMINATED else "interrupted"
    saved = getattr(sys.modules.get("nova_ray.cli.run"), "SAVED_RUN", None)
    done = (f"run {saved} is saved in the results folder, its publish was cut short" if saved
            else "nothing was published")  # `run` stopped while it synced its saved run
    print(f"{what}: {done}; {_resume_hint()}", file=sys.stderr)
    sys.exit(143 if _TERMINATED else 130)


def main() -> None:
    """Console entry point: bad input, bad settings and usage errors exit 2 with a one-line message;
    Ctrl-C (exit 130) and SIGTERM (exit 143) say that nothing was published and how to go on."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = app(standalone_mode=False, prog_name="nova-ray")  # returns typer.Exit's code, not raising
        if rc == 130:  # typer turns a KeyboardInterrupt into exit code 130 before it reaches us
            _interrupted()
        sys.exit(rc if isinstance(rc, int) else 0)
    except (InputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))  # 1: an input's store could not be reached
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print(f"aborted: nothing was published; {_resume_hint()}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `nova-ray`: the help, as it was
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        line = usage_line(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
