"""Read one object's bytes from any URI with bounded retries; a failure becomes BadAudio('unreadable')."""

from __future__ import annotations

import os
import time

from sonar_ray import storage
from sonar_ray.data.decode import BadAudio

_FILESYSTEMS: dict[tuple[str, str | None], object] = {}


def _filesystem(uri: str):
    """pyarrow filesystems (faster than s3fs, PLATFORM.md), one per scheme and endpoint per process."""
    scheme = uri.split("://", 1)[0] if storage.is_remote(uri) else "file"
    key = (scheme, os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = storage.pyarrow_filesystem(uri)[0]
    return _FILESYSTEMS[key]


def _path(uri: str) -> str:
    return storage.pyarrow_filesystem(uri)[1] if not uri.startswith("s3://") else uri[len("s3://"):]


def fetch_bytes(uri: str, retries: int = 3) -> bytes:
    """Missing files fail at once; transient I/O errors are retried `retries` times with backoff."""
    fs, path = _filesystem(uri), _path(uri)
    attempt = 0
    while True:
        try:
            with fs.open_input_stream(path) as f:
                return f.read()
        except FileNotFoundError as e:
            raise BadAudio("unreadable", f"not found: {e}") from None
        except OSError as e:
            if attempt >= retries:
                raise BadAudio("unreadable", f"{type(e).__name__}: {e}") from None
            time.sleep(0.2 * 2 ** attempt)
            attempt += 1
