"""Input files named by a local path or a URI (``s3://bucket/key``, ``file://...``): one way to
open, test and name them, so that a demand history on S3, the stock snapshot beside it and the
checks on both agree. S3-compatible stores take the standard AWS_* credentials and region;
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL points at MinIO (as for publishing, `io.location`). An
s3:// key is taken as written (spaces and accents too, no percent-encoding)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .errors import InputError, SourceMissing, SourceUnreachable, first_line

UNREACHABLE = "check the endpoint, the credentials and the network, then rerun"


def is_uri(path: str | Path) -> bool:
    """Whether `path` is a URI (``scheme://...``) rather than a local path."""
    return "://" in str(path)


def location(path: str) -> str:
    """A local path made absolute (as a run record names its data), a URI as given."""
    return path if not path or is_uri(path) else str(Path(path).resolve())


def _filesystem(path: str) -> tuple[object, str]:
    import pyarrow.fs as pafs

    from .location import PublishError, s3_filesystem

    if path.startswith("s3://"):
        bucket, _, key = path[5:].partition("/")
        if not bucket or not key:
            raise InputError(f"{path}: expected s3://bucket/key")
        try:
            return s3_filesystem(), f"{bucket}/{key}"
        except PublishError as exc:  # a malformed endpoint variable
            raise InputError(f"{path}: {exc}") from None
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), str(Path(path).resolve())


def open_source(path: str | Path) -> tuple[object, str, int]:
    """(pyarrow filesystem, path inside it, size) of an input file. SourceMissing naming it when it
    (or its bucket) does not exist, SourceUnreachable when its store cannot be reached, InputError
    for a path that cannot name a file."""
    import pyarrow.fs as pafs

    path = str(path)
    try:
        fs, inner = _filesystem(path)
    except ValueError as exc:
        raise InputError(f"{path}: cannot open: {first_line(exc)}") from None
    try:
        info = fs.get_file_info(inner)  # type: ignore[attr-defined]
        if info.type == pafs.FileType.NotFound and path.startswith("s3://"):
            bucket = inner.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:  # type: ignore[attr-defined]
                from .location import s3_endpoint

                raise SourceMissing(f"{path}: bucket {bucket!r} not found (at {s3_endpoint() or 'AWS'})")
    except OSError as exc:
        if is_uri(path):
            raise SourceUnreachable(f"{path}: cannot reach it: {first_line(exc)}; {UNREACHABLE}") from None
        raise InputError(f"{path}: cannot open: {first_line(exc)}") from None
    if info.type == pafs.FileType.NotFound:
        raise SourceMissing(f"{path}: file not found")
    if info.type != pafs.FileType.File:
        raise InputError(f"{path}: not a file")
    return fs, inner, int(info.size or 0)


def read_failed(path: str | Path, exc: Exception) -> InputError:
    """The error for a read that failed midway: a store that went away (SourceUnreachable), or a
    file that cannot be parsed."""
    if is_uri(path) and isinstance(exc, OSError):
        return SourceUnreachable(f"{path}: reading failed: {first_line(exc)}; {UNREACHABLE}")
    return InputError(f"{path}: cannot read file: {first_line(exc)}")


def source_exists(path: str | Path) -> bool:
    """Whether the input file exists. A store that cannot be reached raises SourceUnreachable:
    "no file" would quietly drop what it holds (tonight's stock snapshot)."""
    if not is_uri(path):
        return Path(path).is_file()
    try:
        open_source(path)
    except SourceUnreachable:
        raise
    except InputError:
        return False
    return True


def read_source(path: str | Path) -> bytes:
    """The whole file."""
    fs, inner, _ = open_source(path)
    try:
        with fs.open_input_stream(inner) as fh:  # type: ignore[attr-defined]
            return fh.read()
    except OSError as exc:
        raise read_failed(path, exc) from None


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
