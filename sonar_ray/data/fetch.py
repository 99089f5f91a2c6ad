"""Open one object from any URI as a seekable file, with bounded retries; a failure becomes BadAudio('unreadable').

Decoders read through the handle (a seek, then only the frames they need), so a 10 s crop of a
two-hour file reads 10 s of it. Remote objects are read by ranged requests behind a 1 MiB buffer.
A clip inside a tar shard (`<shard>.tar#<member>`, see `shards`) opens as a view of that member's bytes.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import time
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from sonar_ray import storage
from sonar_ray.data import shards
from sonar_ray.data.decode import UNSUPPORTED_SUFFIXES, BadAudio

T = TypeVar("T")
_FILESYSTEMS: dict[tuple[str, str | None], object] = {}
_BUFFER = 1 << 20
# Shard indexes a reader process keeps (~100 KB each for 1,000 members); a miss reads the stored index.
SHARD_INDEXES = 256


def _filesystem(uri: str):
    """pyarrow filesystems (faster than s3fs, PLATFORM.md), one per scheme and endpoint per process."""
    scheme = uri.split("://", 1)[0]
    key = (scheme, os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = storage.pyarrow_filesystem(uri)[0]
    return _FILESYSTEMS[key]


def _path(uri: str) -> str:
    return storage.pyarrow_filesystem(uri)[1] if not uri.startswith("s3://") else uri[len("s3://"):]


def open_raw(uri: str) -> BinaryIO:
    """An unbuffered seekable handle on one object: each read is one read call (on S3, one ranged GET)."""
    if not storage.is_remote(uri):
        return open(uri.removeprefix("file://"), "rb", buffering=0)  # noqa: SIM115 - the caller closes it
    return _filesystem(uri).open_input_file(_path(uri))


def open_audio(uri: str) -> BinaryIO:
    """A seekable binary handle on `uri` (for `<shard>.tar#<member>`, on that member's bytes). Local
    paths are opened as given (no resolving), so a symlink loop or a dangling link fails here, as an
    OSError, like any unreadable file."""
    if member := shards.split_member(uri):
        return _open_member(*member)
    if shards.is_shard(uri):  # listed as a row of its own only when part of it could not be read
        with open_raw(uri) as f:
            problem = _cached_index(uri, f.seek(0, io.SEEK_END)).problem
        raise BadAudio("unreadable", f"tar shard: {problem or 'its members are listed as clips of their own'}")
    if not storage.is_remote(uri):
        return open(uri.removeprefix("file://"), "rb")  # noqa: SIM115 - the caller closes it
    return io.BufferedReader(open_raw(uri), _BUFFER)


def shard_index(shard: str, size: int, tag: str | None = None, cache_dir: str | None = None) -> shards.ShardIndex:
    """The index of a shard of `size` bytes: a stored one that still matches, else a walk of its tar
    headers (one small read per member), stored for next time."""
    index = shards.stored_index(shard, size, tag, cache_dir)
    if index is None:
        # The whole shard as a view: a seek past its end (a truncated shard) reads nothing, on S3 too.
        with io.BufferedReader(shards.MemberView(open_raw(shard), 0, size), shards.HEADER_BUFFER) as f:
            walked = shards.scan(f, size)
        index = shards.ShardIndex(size, tag or "", walked.members, walked.problem)
        shards.store_index(shard, index, cache_dir)
    return index


@functools.lru_cache(maxsize=SHARD_INDEXES)
def _cached_index(shard: str, size: int) -> shards.ShardIndex:
    return shard_index(shard, size)  # keyed by size: a shard cut or rewritten since is indexed afresh


def _open_member(shard: str, name: str) -> BinaryIO:
    raw = open_raw(shard)
    try:
        index = _cached_index(shard, raw.seek(0, io.SEEK_END))
        if name not in index.members:
            damage = f" ({index.problem})" if index.problem else ""
            raise BadAudio("unreadable", f"no member {name!r} in {shard}{damage}")
        return io.BufferedReader(shards.MemberView(raw, *index.members[name]), _BUFFER)
    except BaseException:
        raw.close()
        raise


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
