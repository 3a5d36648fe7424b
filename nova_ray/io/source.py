"""Input files named by a local path or a URI (``s3://bucket/key``, ``file://...``): one way to
open, test and name them, so that a demand history on S3, the stock snapshot beside it and the
checks on both agree. S3-compatible stores take the standard AWS_* credentials;
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL points at MinIO."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import InputError, first_line


def is_uri(path: str | Path) -> bool:
    """Whether `path` is a URI (``scheme://...``) rather than a local path."""
    return "://" in str(path)


def open_source(path: str | Path) -> tuple[object, str, int]:
    """(pyarrow filesystem, path inside it, size) of an input file; InputError naming it when it
    cannot be reached or does not exist."""
    import pyarrow.fs as pafs

    path = str(path)
    try:
        if is_uri(path):
            fs, inner = pafs.FileSystem.from_uri(path)
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            if isinstance(fs, pafs.S3FileSystem) and endpoint:
                fs = pafs.S3FileSystem(endpoint_override=endpoint)
        else:
            fs, inner = pafs.LocalFileSystem(), str(Path(path).resolve())
        info = fs.get_file_info(inner)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot open: {first_line(exc)}") from None
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{path}: file not found")
    if info.type != pafs.FileType.File:
        raise InputError(f"{path}: not a file")
    return fs, inner, int(info.size or 0)


def source_exists(path: str | Path) -> bool:
    """Whether the input file exists (False also when its store cannot be reached: reading it
    then says why)."""
    if not is_uri(path):
        return Path(path).is_file()
    try:
        open_source(path)
    except InputError:
        return False
    return True


def read_source(path: str | Path) -> bytes:
    """The whole file."""
    fs, inner, _ = open_source(path)
    with fs.open_input_stream(inner) as fh:  # type: ignore[attr-defined]
        return fh.read()


def sibling(path: str | Path, name: str) -> str:
    """`name` in the folder (or under the prefix) of `path`."""
    path = str(path)
    if is_uri(path):
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{PurePosixPath(rest).parent / name}"
    return str(Path(path).parent / name)


def suffix(path: str | Path) -> str:
    """The file's extension, lower case (`.csv`, `.parquet`, ...)."""
    return PurePosixPath(str(path).split("://", 1)[-1]).suffix.lower()
