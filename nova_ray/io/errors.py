"""The error raised for bad input files."""


class InputError(ValueError):
    """Bad input: the message is one line naming the file and the row or column."""
