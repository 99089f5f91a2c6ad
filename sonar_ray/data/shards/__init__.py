"""Tar shards: many clips per object (WebDataset-style `shard-000000.tar` holding `*.wav`, `*.flac`, ...).

A clip inside a shard is the URI `<shard>.tar#<member name>`. A shard's index (each regular member's
data offset and size) comes from its tar headers alone, walked by seeking over the member data, and
is stored as `<shard>.idx.json` beside it (or in the inspection cache folder when the data location is
read-only), so listing it again reads one small file. Reading a clip hands the decoder a view of just
that member's bytes (`MemberView`): a remote shard is read by ranged requests of that member only.
Uncompressed tar only: a compressed one cannot be read at an offset.

    python -m sonar_ray.data.shards pack SRC_DIR DST_DIR --clips-per-shard 1000
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from sonar_ray import storage

log = logging.getLogger(__name__)
SHARD_SUFFIX = ".tar"
INDEX_SUFFIX = ".idx.json"
INDEX_VERSION = 1
# Walking headers: one read per member fills this buffer, which covers the next header (PAX ones too).
HEADER_BUFFER = 4096


def split_member(uri: str) -> tuple[str, str] | None:
    """(shard, member name) of `<shard>.tar#<member>`, else None."""
    shard, sep, member = str(uri).partition(SHARD_SUFFIX + "#")
    return (shard + SHARD_SUFFIX, member) if sep else None


def member_uri(shard: str, name: str) -> str:
    return f"{shard}#{name}"


def is_shard(uri: str) -> bool:
    return str(uri).endswith(SHARD_SUFFIX)


def stamp(info: dict) -> str:
    """What tells a rewritten shard of the same size from the one indexed: its ETag, else its mtime."""
    return str(info.get("ETag") or info.get("mtime") or "")


@dataclass(frozen=True)
class ShardIndex:
    size: int                              # bytes of the shard described
    tag: str                               # its `stamp` when indexed ("" = unknown)
    members: dict[str, tuple[int, int]]    # regular member -> (data offset, size), all inside the shard
    problem: str = ""                      # why the header walk stopped before the end ("" = it did not)

    def to_json(self) -> bytes:
        return json.dumps({"version": INDEX_VERSION, "size": self.size, "tag": self.tag, "problem": self.problem,
                           "members": [[n, o, s] for n, (o, s) in self.members.items()]}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ShardIndex:
        d = json.loads(data)
        if d.get("version") != INDEX_VERSION:
            raise ValueError(f"index version {d.get('version')}, want {INDEX_VERSION}")
        return cls(int(d["size"]), str(d["tag"]), {n: (int(o), int(s)) for n, o, s in d["members"]}, str(d["problem"]))


def scan(f: BinaryIO, size: int) -> ShardIndex:
    """Walk the tar headers of an open shard of `size` bytes; member data is seeked over, never read.

    A damaged or truncated shard keeps the members before the damage (whole ones only) and says where
    the walk stopped in `problem`."""
    members, problem = {}, ""
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:  # closing it leaves `f` open
            for m in tar:
                if m.isfile() and m.offset_data + m.size <= size:
                    members[m.name] = (m.offset_data, m.size)
            end = tar.offset
        f.seek(end)
        if f.read(2 * tarfile.BLOCKSIZE).strip(b"\0"):  # tarfile ends quietly at a bad header mid-shard
            problem = f"damaged tar header at byte {end}"
    except tarfile.ReadError as e:
        problem = f"not an uncompressed tar, or truncated or damaged after {len(members)} members ({e})"
    return ShardIndex(size, "", members, problem)


def index_uris(shard: str, cache_dir: str | None = None) -> list[str]:
    """Where a shard's index is looked for and stored, in order: beside it, then in `cache_dir`."""
    places = [shard + INDEX_SUFFIX]
    if cache_dir:
        name = shard.rstrip("/").rsplit("/", 1)[-1]
        places.append(storage.join(cache_dir, "shards", f"{name}-{hashlib.sha1(shard.encode()).hexdigest()[:12]}"
                                   f"{INDEX_SUFFIX}"))
    return places


def stored_index(shard: str, size: int, tag: str | None, cache_dir: str | None = None) -> ShardIndex | None:
    """A stored index that still describes the shard (same size, and same tag unless `tag` is None)."""
    for uri in index_uris(shard, cache_dir):
        try:
            index = ShardIndex.from_json(storage.read_bytes(uri))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as e:  # unreadable, damaged or older: rebuilt, not trusted
            log.warning("ignoring index %s: %s", uri, e)
            continue
        if index.size == size and (tag is None or index.tag == tag):
            return index
    return None


def store_index(shard: str, index: ShardIndex, cache_dir: str | None = None) -> None:
    """Beside the shard if that location is writable, else in `cache_dir`; a failure only costs a re-walk."""
    for uri in index_uris(shard, cache_dir):
        try:
            storage.write_bytes_atomic(uri, index.to_json())
            return
        except OSError as e:
            log.info("cannot store the index of %s at %s: %s", shard, uri, e)
    log.warning("index of %s not stored (read-only data and no writable cache folder); it is re-walked", shard)


class MemberView(io.RawIOBase):
    """Bytes [offset, offset + size) of a seekable raw file, as a file of its own: reads stop at the
    member's end, so a buffer on top never fetches the next member. Closing it closes `raw`."""

    def __init__(self, raw: BinaryIO, offset: int, size: int):
        super().__init__()
        self.raw, self.offset, self.size, self.pos = raw, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        target = pos + {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if target < 0:
            raise OSError(22, f"negative seek position {target}")
        self.pos = target
        return target

    def readinto(self, b) -> int:
        n = max(0, min(len(b), self.size - self.pos))
        if not n:
            return 0
        self.raw.seek(self.offset + self.pos)
        got = self.raw.readinto(memoryview(b)[:n])
        self.pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


def _write_tar(f: BinaryIO, names: list[str], uris: list[str]) -> None:
    with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, uri in zip(names, uris):
            data = storage.read_bytes(uri)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644  # mtime 0: the same clips make the same shard
            tar.addfile(info, io.BytesIO(data))


def pack(src: str, dst: str, clips_per_shard: int = 1000) -> list[str]:
    """Every audio file under `src` (folder or URI), in listing order, into `dst/shard-NNNNNN.tar`, its path
    below `src` as member name (so listing `dst` finds the domains of `<src>/<domain>/...` again). Each shard
    appears whole (written aside, then renamed or uploaded), with its index beside it. Returns the shard URIs."""
    from sonar_ray.data.manifest import list_audio  # the listing expands shards: it imports this module

    if clips_per_shard < 1:
        raise ValueError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
    files = list_audio(src)
    if any(split_member(u) or is_shard(u) for u in files["uri"]):
        raise ValueError(f"{src!r} holds tar shards already; pack a folder of plain audio files")
    storage.makedirs(dst)
    written = []
    for number, first in enumerate(range(0, len(files), clips_per_shard)):
        rows = files.iloc[first:first + clips_per_shard]
        shard = storage.join(dst, f"shard-{number:06d}{SHARD_SUFFIX}")
        fs, path = storage.filesystem(shard)
        remote = storage.is_remote(shard)
        with tempfile.NamedTemporaryFile(dir=None if remote else os.path.dirname(path), prefix=".shard-",
                                         suffix=".tmp", delete=False) as tmp:
            try:
                _write_tar(tmp, rows["path"].tolist(), rows["uri"].tolist())
                tmp.flush()
                size = tmp.tell()
                tmp.seek(0)
                index = scan(tmp, size)
                if remote:
                    fs.put_file(tmp.name, path)
                else:
                    os.fsync(tmp.fileno())
                    os.replace(tmp.name, path)
            finally:
                if os.path.exists(tmp.name):
                    os.unlink(tmp.name)
        store_index(shard, ShardIndex(size, stamp(fs.info(path)), index.members, index.problem))
        written.append(shard)
    return written
