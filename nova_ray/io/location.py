"""Where runs are published and read: a local folder or an S3-compatible prefix (`Location`),
with atomic writes and checked paths. Light on purpose (pyarrow and the standard library only):
the serving side imports it."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

CHUNK = 4 << 20
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SEGMENT_RE = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class PublishError(ValueError):
    """A run cannot be published or read back; the message is one line."""


def check_run_id(run_id: str) -> str:
    """`run_id` if it is a plain name (it becomes part of paths), else PublishError."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise PublishError(f"invalid run id {run_id!r}: expected letters, digits, '.', '_' or '-'")
    return run_id


def safe_relpath(path: str) -> str:
    """`path` if it is a relative POSIX path of plain segments (no '..', no absolute), else PublishError."""
    parts = PurePosixPath(path).parts if isinstance(path, str) and path else ()
    if not parts or path.startswith("/") or "\\" in path or any(
        p in (".", "..") or not _SEGMENT_RE.match(p) for p in parts
    ):
        raise PublishError(f"unsafe path {path!r} in run metadata")
    return "/".join(parts)


@dataclass(frozen=True)
class Location:
    """A folder or an S3 prefix: a pyarrow filesystem, a base path in it, and how it was named."""

    fs: pafs.FileSystem
    base: str
    uri: str
    is_local: bool

    def path(self, rel: str = "") -> str:
        """Filesystem path of `rel` under the base."""
        return f"{self.base.rstrip('/')}/{rel}" if rel else self.base

    def size(self, rel: str) -> int | None:
        """Size of file `rel`, or None when absent."""
        info = self.fs.get_file_info(self.path(rel))
        return info.size if info.type == pafs.FileType.File else None

    def read(self, rel: str) -> bytes | None:
        """Whole file `rel`, or None when absent (no listing: one HEAD + GET on S3)."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def checksum(self, rel: str) -> tuple[int, str] | None:
        """(size, sha256) of file `rel` read back in chunks, or None when absent."""
        h, n = hashlib.sha256(), 0
        try:
            with self.fs.open_input_stream(self.path(rel)) as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    n += len(chunk)
        except FileNotFoundError:
            return None
        return n, h.hexdigest()

    def upload(self, src: Path, rel: str) -> tuple[int, str]:
        """Copy local file `src` to `rel`; return (size, sha256) of the bytes sent.

        Folder: written to a temp name, fsynced, renamed into place. S3: one object write (an object
        only becomes visible once complete).
        """
        final = self.path(rel)
        h, n = hashlib.sha256(), 0
        dest = final
        if self.is_local:  # a dot name: dataset readers (pyarrow, polars) skip a temp file left by a kill
            folder, name = final.rsplit("/", 1)
            self.fs.create_dir(folder, recursive=True)
            dest = f"{folder}/.{name}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            with open(src, "rb") as fin, self.fs.open_output_stream(dest) as out:
                while chunk := fin.read(CHUNK):
                    h.update(chunk)
                    n += len(chunk)
                    out.write(chunk)
            if self.is_local:
                _fsync(dest)
                self.fs.move(dest, final)
        except BaseException:
            if self.is_local:
                _remove_quietly(dest)
            raise
        return n, h.hexdigest()

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Replace `rel` with `data` atomically: temp + fsync + os.replace on a folder; on S3 a temp
        object, then a server-side copy onto `rel` (one request: the old object or the new one).
        Written straight to `rel`, an interrupted write was published as far as it got: pyarrow's
        stream completes its upload when closed by an exception (a Ctrl-C before the write put an
        empty pointer in place of a valid one)."""
        if not self.is_local:
            folder, name = self.path(rel).rsplit("/", 1)
            tmp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex[:12]}"
            try:
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.copy_file(tmp, self.path(rel))
            finally:
                try:
                    self.fs.delete_file(tmp)
                except OSError:  # never written, or the store refuses: a dot name no reader lists
                    pass
            return
        final = Path(self.path(rel))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            _remove_quietly(str(tmp))
            raise
        _fsync_dir(final.parent)

    def subdirs(self, rel: str) -> list[str]:
        """Names of the folders directly under `rel` (used by the publisher only, never by readers)."""
        sel = pafs.FileSelector(self.path(rel), recursive=False, allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.Directory)

    def delete_dir(self, rel: str) -> None:
        self.fs.delete_dir(self.path(rel))


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(str(path))
    except OSError:  # not supported everywhere; the rename is still atomic
        pass


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def s3_endpoint(endpoint_url: str | None = None) -> str | None:
    """`endpoint_url`, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL (None: AWS itself)."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_filesystem(endpoint_url: str | None = None) -> pafs.S3FileSystem:
    """An S3 filesystem that never creates or deletes buckets, at `s3_endpoint(endpoint_url)`
    (checked: http(s)://host[:port], else PublishError) in AWS_REGION / AWS_DEFAULT_REGION."""
    kwargs: dict[str, Any] = {"allow_bucket_creation": False, "allow_bucket_deletion": False,
                              "allow_delayed_open": True}  # small objects: one PutObject
    endpoint = s3_endpoint(endpoint_url)
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise PublishError(f"endpoint URL {endpoint!r}: expected http(s)://host[:port]")
        kwargs |= {"endpoint_override": parts.netloc, "scheme": parts.scheme}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def open_location(uri: str, endpoint_url: str | None = None) -> Location:
    """A folder path or ``s3://bucket/prefix`` as a Location.

    S3 credentials and region come from the standard AWS environment variables (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION/AWS_DEFAULT_REGION) or the AWS config
    files; they are never logged. `endpoint_url` (e.g. ``http://minio:9000``) selects an
    S3-compatible store; AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL are used when it is not given.
    Buckets are never created.
    """
    uri = str(uri).strip()
    if not uri:
        raise PublishError("empty location: give a folder or s3://bucket/prefix")
    if uri.startswith("s3://"):
        rest = "/".join(p for p in uri[5:].split("/") if p)
        bucket = rest.split("/", 1)[0]
        if not _BUCKET_RE.match(bucket):
            raise PublishError(f"{uri}: expected s3://bucket/prefix with a valid bucket name")
        for seg in rest.split("/")[1:]:
            if seg in (".", ".."):
                raise PublishError(f"{uri}: '.' and '..' are not allowed in the prefix")
        return Location(s3_filesystem(endpoint_url), rest, f"s3://{rest}", False)
    if "://" in uri:
        raise PublishError(f"{uri}: unsupported location (use a folder path or s3://bucket/prefix)")
    path = Path(uri).expanduser().resolve()
    return Location(pafs.LocalFileSystem(), path.as_posix(), str(path), True)
