"""What has arrived under `<incoming>/<domain>/...`, identified by key + ETag so rewrites count as new.

One listing per poll: S3 ListObjectsV2 returns key, ETag and size 1,000 objects per request, so no
per-object requests are needed to tell new from consumed. Local folders use size + mtime_ns as the
ETag. Objects still being uploaded are invisible: S3 lists a multipart upload only once it is
completed, and local names that look like temp files (leading '.', .tmp/.part/.partial) are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from sonar_ray import storage

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST_SUFFIX = ".jsonl"
_TEMP_SUFFIXES = (".tmp", ".part", ".partial")


@dataclass(frozen=True)
class ObjectInfo:
    key: str   # relative to the incoming root, '/'-separated: "<domain>/<...>"
    etag: str
    size: int
    uri: str

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
    return name.lower().endswith(AUDIO_SUFFIXES + (MANIFEST_SUFFIX,))


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


def _list_local(incoming: str) -> list[ObjectInfo]:
    root = Path(incoming.removeprefix("file://")).resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath, name)
            key = path.relative_to(root).as_posix()
            if _wanted(key):
                st = path.stat()
                out.append(ObjectInfo(key, f"{st.st_size:x}-{st.st_mtime_ns:x}", st.st_size, str(path)))
    return out


def list_incoming(incoming: str) -> list[ObjectInfo]:
    """Every audio / manifest object under `incoming`, sorted by key."""
    incoming = str(incoming)
    if incoming.startswith("s3://"):
        objects = _list_s3(incoming)
    elif storage.is_remote(incoming):
        raise ValueError(f"{incoming!r}: the watcher lists s3:// prefixes and local folders")
    else:
        objects = _list_local(incoming)
    return sorted(objects, key=lambda o: o.key)


def _resolve(folder: str, path: str) -> str:
    if "://" in path or path.startswith("/"):
        return path
    scheme, sep, rest = storage.join(folder, path).rpartition("://")
    return f"{scheme}{sep}{posixpath.normpath(rest)}" if sep else os.path.normpath(rest)


def training_rows(objects: list[ObjectInfo], domain: str) -> list[dict]:
    """Manifest rows for exactly these objects: audio objects as-is, arriving manifests expanded.

    Paths in an arriving manifest are taken relative to that manifest's folder (or are full URIs).
    """
    rows = []
    for o in objects:
        if not o.is_manifest:
            rows.append({"path": o.uri, "domain": domain})
            continue
        folder = o.uri.rsplit("/", 1)[0]
        for line in storage.read_bytes(o.uri).decode().splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append({**row, "path": _resolve(folder, row["path"]), "domain": domain})
    return rows


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
        fs, path = storage.filesystem(row["path"])
        try:
            with fs.open(path, "rb") as f:
                seconds += sf.info(f).duration
        except Exception as e:  # noqa: BLE001 - any decode error: counted as 0, reported by the data layer
            log.warning("cannot read the header of %s (%s): counted as 0 s", row["path"], e)
    return seconds / 3600.0
