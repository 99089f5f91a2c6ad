"""What has arrived under `<incoming>/<domain>/...`, identified by key + ETag so rewrites count as new.

One listing per poll: S3 ListObjectsV2 returns key, ETag and size 1,000 objects per request, so no
per-object requests are needed to tell new from consumed. Local folders use size + mtime_ns as the
ETag. Objects still being uploaded are invisible: S3 lists a multipart upload only once it is
completed; local names that look like temp files (leading '.', .tmp/.part/.partial) are skipped, and
so are local files modified within the last `settle_seconds` (a copy in progress keeps changing its
size and mtime; planning it would train on a partial file, then again on the whole one).

An arrival that can never be used (a dangling symlink, a manifest with a malformed line or a row
without `path`) raises `PoisonArrival` when read, so the watcher quarantines that one object and
plans the rest.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path

from sonar_ray import storage
from sonar_ray.data import shards
from sonar_ray.data.decode import UNSUPPORTED_SUFFIXES
from sonar_ray.data.fetch import read_audio, shard_index
from sonar_ray.data.manifest import AUDIO_SUFFIXES as DATA_AUDIO_SUFFIXES, audio_members

log = logging.getLogger(__name__)

# What the data layer lists, so an arrival it cannot decode (.m4a) is planned and reported, not ignored.
AUDIO_SUFFIXES = DATA_AUDIO_SUFFIXES + UNSUPPORTED_SUFFIXES
MANIFEST_SUFFIX = ".jsonl"
_TEMP_SUFFIXES = (".tmp", ".part", ".partial")


class PoisonArrival(ValueError):
    """This object can never yield training rows (the reason says why)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str   # relative to the incoming root, '/'-separated: "<domain>/<...>"
    etag: str
    size: int
    uri: str
    problem: str = ""  # why it cannot be read at all ("" = fine)

    @property
    def domain(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def is_manifest(self) -> bool:
        return self.key.endswith(MANIFEST_SUFFIX)

    @property
    def identity(self) -> tuple[str, str]:
        return self.key, self.etag


def _wanted(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    if "/" not in key or name.startswith(".") or name.endswith(_TEMP_SUFFIXES):
        return False
    return name.lower().endswith(AUDIO_SUFFIXES + (MANIFEST_SUFFIX, shards.SHARD_SUFFIX))


def _list_s3(incoming: str) -> list[ObjectInfo]:
    import boto3

    bucket, _, prefix = incoming[len("s3://"):].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    out = []
    for page in pages:
        for o in page.get("Contents", []):
            key = o["Key"][len(prefix):]
            if _wanted(key):
                out.append(ObjectInfo(key, o["ETag"].strip('"'), o["Size"], f"s3://{bucket}/{o['Key']}"))
    return out


def _list_local(incoming: str, settle_seconds: float) -> list[ObjectInfo]:
    root = Path(incoming.removeprefix("file://")).resolve()
    settled_before = time.time() - settle_seconds
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath, name)
            key = path.relative_to(root).as_posix()
            if not _wanted(key):
                continue
            problem = ""
            try:
                st = path.stat()
            except OSError as e:  # a dangling link or a link loop: identified by the link itself
                st, problem = path.lstat(), f"unreadable link: {e.strerror}"
            if st.st_mtime > settled_before:
                continue  # still being written, perhaps: the next poll sees it settled
            out.append(ObjectInfo(key, f"{st.st_size:x}-{st.st_mtime_ns:x}", st.st_size, str(path), problem))
    return out


def list_incoming(incoming: str, settle_seconds: float = 0.0) -> list[ObjectInfo]:
    """Every audio / manifest object under `incoming`, sorted by key (local files only once settled)."""
    incoming = str(incoming)
    if incoming.startswith("s3://"):
        objects = _list_s3(incoming)
    elif storage.is_remote(incoming):
        raise ValueError(f"{incoming!r}: the watcher lists s3:// prefixes and local folders")
    else:
        objects = _list_local(incoming, settle_seconds)
    return sorted(objects, key=lambda o: o.key)


def _resolve(folder: str, path: str) -> str:
    if "://" in path or path.startswith("/"):
        return path
    scheme, sep, rest = storage.join(folder, path).rpartition("://")
    return f"{scheme}{sep}{posixpath.normpath(rest)}" if sep else os.path.normpath(rest)


def arrival_rows(o: ObjectInfo, domain: str) -> list[dict]:
    """Manifest rows for one arrival: an audio object as-is, a tar shard as its audio members, an
    arriving manifest expanded.

    Paths in an arriving manifest are taken relative to that manifest's folder (or are full URIs).
    Raises PoisonArrival when the object can never be used.
    """
    if o.problem:
        raise PoisonArrival(o.problem)
    if shards.is_shard(o.uri):
        return _shard_rows(o, domain)
    if not o.is_manifest:
        return [{"path": o.uri, "domain": domain}]
    try:
        text = storage.read_bytes(o.uri).decode()
    except UnicodeDecodeError as e:
        raise PoisonArrival(f"manifest is not UTF-8 text: {e}") from None
    folder, rows = o.uri.rsplit("/", 1)[0], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PoisonArrival(f"manifest line {n} is not JSON: {e}") from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"]:
            raise PoisonArrival(f"manifest line {n} has no 'path'")
        rows.append({**row, "path": _resolve(folder, row["path"]), "domain": domain})
    return rows


def _shard_rows(o: ObjectInfo, domain: str) -> list[dict]:
    """A tar shard's audio members (from its headers; the index is stored beside it, keyed by ETag).
    A shard cut short keeps its intact members plus a row for itself, which the data layer reports."""
    try:
        index = shard_index(o.uri, o.size, o.etag)
    except OSError as e:
        raise PoisonArrival(f"tar shard unreadable: {type(e).__name__}: {e}") from None
    rows = [{"path": shards.member_uri(o.uri, name), "domain": domain} for name, _ in audio_members(index)]
    if index.problem:
        if not rows:
            raise PoisonArrival(f"tar shard holds no readable audio: {index.problem}")
        log.warning("tar shard %s: %s", o.uri, index.problem)
        rows.append({"path": o.uri, "domain": domain})
    return rows


def training_rows(objects: list[ObjectInfo], domain: str) -> list[dict]:
    """Manifest rows for exactly these objects (see `arrival_rows`)."""
    return [row for o in objects for row in arrival_rows(o, domain)]


def probe_hours(rows: list[dict]) -> float:
    """Total duration in hours: the rows' `duration` where given, else the audio header.

    A file whose header cannot be read counts as 0 s here; the data layer skips and reports it.
    """
    import soundfile as sf

    seconds = 0.0
    for row in rows:
        if "duration" in row:
            seconds += float(row["duration"])
            continue
        try:  # read_audio: a shard member (`shard.tar#name`) is read in place
            seconds += read_audio(row["path"], lambda f: sf.info(f).duration, retries=0)
        except Exception as e:  # noqa: BLE001 - any decode error: counted as 0, reported by the data layer
            log.warning("cannot read the header of %s (%s): counted as 0 s", row["path"], e)
    return seconds / 3600.0
