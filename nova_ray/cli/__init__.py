"""The nova-ray command line: thin wrappers that parse options, load config and call the pipeline."""

from __future__ import annotations

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


def _resume_hint() -> str:
    """How to continue the interrupted command (its checkpoints are kept)."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    if command in ("forecast", "train"):
        return "rerun with --resume to continue"
    if command == "run":
        return "rerun `nova-ray run` to continue (it resumes)"
    return "rerun to start again"


def main() -> None:
    """Console entry point: bad input and bad settings exit 2 with a one-line message."""
    try:
        rc = app(standalone_mode=False)  # returns the exit code of typer.Exit instead of raising
        sys.exit(rc if isinstance(rc, int) else 0)
    except (InputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print(f"aborted: nothing was published; {_resume_hint()}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print(f"interrupted: nothing was published; {_resume_hint()}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # usage errors (a bad or missing option) carry their own exit code
        # typer >= 0.24 raises its own copy of click's exceptions, which click's classes do not
        # match: recognised by what they do instead
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
