"""One place for paths and URIs: local folders, file://, s3:// and any fsspec filesystem.

S3-compatible endpoints (MinIO, moto, ...) come from the standard `AWS_ENDPOINT_URL`
(or `AWS_ENDPOINT_URL_S3`) variable; credentials from the usual AWS chain. Nothing here
prints or stores credentials.
"""

from __future__ import annotations

import glob
import os
import uuid
from pathlib import Path

import fsspec


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def _s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec filesystem, path inside it) for any URI or local path."""
    uri = str(uri)
    kwargs = {}
    if uri.startswith(("s3://", "s3a://")) and _s3_endpoint():
        kwargs["client_kwargs"] = {"endpoint_url": _s3_endpoint()}
    if uri.startswith(("s3://", "s3a://")):
        kwargs["use_listings_cache"] = False  # watchers re-list; never serve stale listings
    fs, path = fsspec.core.url_to_fs(uri, **kwargs)
    return fs, path


def pyarrow_filesystem(uri: str):
    """(pyarrow filesystem, path) — faster than s3fs for Ray Data reads."""
    import pyarrow.fs as pafs

    uri = str(uri)
    if uri.startswith("s3://") and _s3_endpoint():
        endpoint = _s3_endpoint()
        scheme = "https" if endpoint.startswith("https") else "http"
        fs = pafs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[-1], scheme=scheme,
                               region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        return fs, uri[len("s3://"):]
    if not is_remote(uri):
        return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).resolve())
    return pafs.FileSystem.from_uri(uri)


def join(uri: str, *parts: str) -> str:
    uri = str(uri)
    if is_remote(uri):
        return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(uri.removeprefix("file://"), *parts))


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as f:
        return f.read()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_file(folder: Path, name: str, data: bytes) -> Path:
    """`data`, fsynced, in a new temp file `.<name>.<pid>.<random>.tmp` in `folder`, for the caller to
    rename or link into place. Its mode follows the umask (usually 0644, not mkstemp's 0600). A writer
    killed before the rename leaves its temp file; the next write of `name` removes the temp files of
    writers no longer alive on this host."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{glob.escape(name)}.*.tmp"):
        pid = stale.name[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Readers see the old object or the new one, never a partial write.

    Local: stage a complete temp file in the same folder (`stage_file`), rename it into place.
    Object stores: a single PUT is already atomic, so we upload the whole payload in one call.
    """
    uri = str(uri)
    if is_remote(uri):
        fs, path = filesystem(uri)
        fs.pipe_file(path, data)
        return
    path = Path(uri.removeprefix("file://"))
    tmp = stage_file(path.parent, path.name, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def makedirs(uri: str) -> None:
    if not is_remote(uri):
        Path(str(uri).removeprefix("file://")).mkdir(parents=True, exist_ok=True)


def require_exists(uri: str, what: str = "path") -> None:
    """Fail fast with a clear message when a bucket / prefix / file is missing."""
    try:
        fs, path = filesystem(uri)
        ok = fs.exists(path)
    except (FileNotFoundError, PermissionError, OSError) as e:
        raise FileNotFoundError(f"{what} {uri!r} is not reachable: {type(e).__name__}: {e}") from None
    if not ok:
        raise FileNotFoundError(f"{what} {uri!r} does not exist")
