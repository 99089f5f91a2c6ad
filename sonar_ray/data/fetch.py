"""Open one object from any URI as a seekable file, with bounded retries; a failure becomes BadAudio('unreadable').

Decoders read through the handle (a seek, then only the frames they need), so a 10 s crop of a
two-hour file reads 10 s of it. Remote objects are read by ranged requests behind a 1 MiB buffer.
"""

from __future__ import annotations

import errno
import io
import os
import time
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from sonar_ray import storage
from sonar_ray.data.decode import UNSUPPORTED_SUFFIXES, BadAudio

T = TypeVar("T")
_FILESYSTEMS: dict[tuple[str, str | None], object] = {}
_BUFFER = 1 << 20


def _filesystem(uri: str):
    """pyarrow filesystems (faster than s3fs, PLATFORM.md), one per scheme and endpoint per process."""
    scheme = uri.split("://", 1)[0]
    key = (scheme, os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = storage.pyarrow_filesystem(uri)[0]
    return _FILESYSTEMS[key]


def _path(uri: str) -> str:
    return storage.pyarrow_filesystem(uri)[1] if not uri.startswith("s3://") else uri[len("s3://"):]


def open_audio(uri: str) -> BinaryIO:
    """A seekable binary handle on `uri`. Local paths are opened as given (no resolving), so a
    symlink loop or a dangling link fails here, as an OSError, like any unreadable file."""
    if not storage.is_remote(uri):
        return open(uri.removeprefix("file://"), "rb")  # noqa: SIM115 - the caller closes it
    return io.BufferedReader(_filesystem(uri).open_input_file(_path(uri)), _BUFFER)


def read_audio(uri: str, read: Callable[[BinaryIO], T], retries: int = 3) -> T:
    """`read(handle)` on `uri`. Missing files, links that loop or dangle and unsupported formats fail
    at once; other I/O errors are retried `retries` times with backoff."""
    if uri.lower().endswith(UNSUPPORTED_SUFFIXES):
        raise BadAudio("unsupported_format", uri.rsplit(".", 1)[-1])
    attempt = 0
    while True:
        try:
            with open_audio(uri) as f:
                return read(f)
        except (FileNotFoundError, IsADirectoryError) as e:
            raise BadAudio("unreadable", f"not found: {e}") from None
        except OSError as e:
            if e.errno == errno.ELOOP or attempt >= retries:
                raise BadAudio("unreadable", f"{type(e).__name__}: {e}") from None
            time.sleep(0.2 * 2 ** attempt)
            attempt += 1


def fetch_bytes(uri: str, retries: int = 3) -> bytes:
    """The whole object (for small files, e.g. evaluation clips)."""
    return read_audio(uri, lambda f: f.read(), retries)
