"""Manifests: which audio files a dataset holds, as one typed table.

A source is a manifest file (JSONL, CSV or Parquet with at least `path`), a corpus root holding
`manifests/train.jsonl`, or a folder / bucket prefix of audio files and/or tar shards of them (each
audio member a row `<shard>.tar#<member>`, see `shards`); domain from the user or from the layout
`<root>/<domain>/...`. Every source becomes a DataFrame with an absolute `uri` column next to the
optional `domain`, `task`, `label`, `split`, `duration`, `stratum` columns; `clip_rows` turns an
inspected table into typed `ClipRow`s, what the sampler takes.
"""

from __future__ import annotations

import io
import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd

from sonar_ray import storage
from sonar_ray.data import shards
from sonar_ray.data.decode import UNSUPPORTED_SUFFIXES
from sonar_ray.data.fetch import shard_index

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".jsonl", ".csv", ".parquet")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
OPTIONAL_COLUMNS = ("domain", "task", "label", "split", "duration", "stratum")
TRAIN_MANIFEST = "manifests/train.jsonl"
PROBE_MANIFEST = "manifests/probes.jsonl"
SHARD_LISTERS = 16  # shards indexed at once (each a small read, or a walk of its headers)


@dataclass(frozen=True)
class ClipRow:
    """One usable clip as the sampler sees it (after inspection: its duration is measured)."""
    uri: str
    duration: float   # seconds
    domain: str = ""
    stratum: int = 0  # replay stratum of a prior clip (0 for new-domain clips and uniform replay)


def clip_rows(table: pd.DataFrame) -> list[ClipRow]:
    """Inspected rows (`uri`, `duration`, optional `domain`, `stratum`) -> typed rows, in table order."""
    domain = table["domain"].fillna("").astype(str) if "domain" in table else [""] * len(table)
    stratum = table["stratum"].astype(int) if "stratum" in table else [0] * len(table)
    return [ClipRow(str(u), float(d), dom, int(s))
            for u, d, dom, s in zip(table["uri"], table["duration"], domain, stratum)]


def _parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0] if storage.is_remote(uri) else posixpath.dirname(uri.rstrip("/"))


def _resolve(root: str, path: str) -> str:
    if "://" in path or path.startswith("/"):
        return path
    return storage.join(root, path)


def manifest_root(manifest_uri: str) -> str:
    """Relative paths are relative to the corpus root: the folder above `manifests/`, else the manifest's folder."""
    folder = _parent(manifest_uri)
    return _parent(folder) if folder.rstrip("/").endswith("/manifests") or folder == "manifests" else folder


def read_manifest(uri: str, root: str | None = None) -> pd.DataFrame:
    storage.require_exists(uri, "manifest")
    data = storage.read_bytes(uri)
    if uri.endswith(".jsonl"):
        df = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
    elif uri.endswith(".csv"):
        df = pd.read_csv(io.BytesIO(data), dtype={"path": str, "label": str, "split": str, "domain": str})
    elif uri.endswith(".parquet"):
        df = pd.read_parquet(io.BytesIO(data))
    else:
        raise ValueError(f"{uri}: a manifest must end in one of {MANIFEST_SUFFIXES}")
    if "path" not in df.columns:
        raise ValueError(f"manifest {uri} has no 'path' column (columns: {list(df.columns)})")
    root = root or manifest_root(uri)
    df["uri"] = [_resolve(root, str(p)) for p in df["path"]]
    return df


def _layout_domain(rel: str) -> str:
    """First folder of a relative path; for a shard at the top (`shard.tar#speech/a.wav`), the first
    folder inside it (what `shards.pack` keeps of `<src>/<domain>/...`)."""
    for part in shards.split_member(rel) or (rel,):
        if "/" in part:
            return part.split("/", 1)[0]
    return "default"


def audio_members(index: shards.ShardIndex) -> list[tuple[str, int]]:
    """(name, size) of a shard's audio members in name order, undecodable formats too (the inspection
    reports them): what a listing, or the watcher, takes of a shard."""
    return [(name, size) for name, (_, size) in sorted(index.members.items())
            if name.lower().endswith(AUDIO_SUFFIXES + UNSUPPORTED_SUFFIXES)]


def _shard_rows(paths: list[str], found: dict, base: str, prefix: str,
                cache_dir: str | None) -> list[tuple[str, str, int]]:
    """(path, uri, size) of every audio member of the shards at `paths`, plus a row for the shard itself
    where part of it is unreadable, so that the inspection reports it. A shard that cannot be read at all
    now is reported the same way (and nothing is stored for it)."""
    def index(p: str) -> shards.ShardIndex:
        try:
            return shard_index(prefix + p, found[p]["size"], shards.stamp(found[p]), cache_dir)
        except OSError as e:
            return shards.ShardIndex(found[p]["size"], "", {}, f"{type(e).__name__}: {e}")

    with ThreadPoolExecutor(SHARD_LISTERS) as pool:
        indexes = list(pool.map(index, paths))
    rows = []
    for p, ix in zip(paths, indexes):
        rel, uri = posixpath.relpath(p, base), prefix + p
        rows += [(shards.member_uri(rel, name), shards.member_uri(uri, name), size) for name, size in audio_members(ix)]
        if ix.problem:
            log.warning("tar shard %s: %s", uri, ix.problem)
            rows.append((rel, uri, found[p]["size"]))
    return rows


def list_audio(uri: str, domain: str | None = None, cache_dir: str | None = None) -> pd.DataFrame:
    """Audio files under a folder/prefix and the audio members of its tar shards (their indexes stored
    beside them, else in `cache_dir`); domain = `domain` or the first folder below `uri`.

    Files in formats we cannot decode are listed too, so that the inspection reports them."""
    storage.require_exists(uri, "audio folder")
    fs, base = storage.filesystem(uri)
    found = fs.find(base, detail=True)
    prefix = uri.split("://", 1)[0] + "://" if storage.is_remote(uri) else ""
    rows = [(posixpath.relpath(p, base), prefix + p, found[p]["size"]) for p in sorted(found)
            if p.lower().endswith(AUDIO_SUFFIXES + UNSUPPORTED_SUFFIXES)]
    rows += _shard_rows(sorted(p for p in found if shards.is_shard(p)), found, base, prefix, cache_dir)
    if not rows:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) or {shards.SHARD_SUFFIX} shards "
                                f"under {uri!r}")
    df = pd.DataFrame(rows, columns=["path", "uri", "size"])
    df["domain"] = domain if domain else [_layout_domain(r) for r in df["path"]]
    return df


def load_source(uri: str, domain: str | None = None, split: str | None = None,
                cache_dir: str | None = None) -> pd.DataFrame:
    """Any source -> manifest table, filtered to `domain` / `split` when those columns exist. `cache_dir`
    holds the indexes of tar shards whose own folder is read-only."""
    uri = str(uri).rstrip("/")
    if uri.endswith(MANIFEST_SUFFIXES):
        df = read_manifest(uri)
    elif storage.exists(storage.join(uri, TRAIN_MANIFEST)):
        df = read_manifest(storage.join(uri, TRAIN_MANIFEST))
    else:
        return list_audio(uri, domain, cache_dir).reset_index(drop=True)
    if domain is not None:
        if "domain" in df.columns:
            df = df[df["domain"] == domain]
        else:
            df["domain"] = domain
    if split is not None and "split" in df.columns:
        df = df[df["split"] == split]
    if df.empty:
        raise ValueError(f"source {uri!r} has no rows for domain={domain!r} split={split!r}")
    return df.reset_index(drop=True)
