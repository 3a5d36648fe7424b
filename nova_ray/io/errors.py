"""The error raised for bad input files, and how its messages say where a row is."""

from __future__ import annotations

from collections.abc import Callable

Locate = Callable[[int], str]  # a data row (0-based) -> where it is in its file: "line N" (CSV) or "row N"


class InputError(ValueError):
    """Bad input: the message is one line naming the file and the row or column."""

    exit_code = 2


class SourceMissing(InputError):
    """An input file (or its bucket) that does not exist."""


class SourceUnreachable(InputError):
    """An input on a store that could not be reached or read (the network, credentials): not bad
    data; exit 1, and a rerun once the store is back goes on."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a library's may run over many), or its type's
    name when it has none: for one-line messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
