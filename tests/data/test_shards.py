"""Tar shards as a source, on real files, local and on S3: packing, listing (with the stored index
reused), member crops equal to the original files, and damaged shards / missing members skipped and
counted by the inspection pass, never fatal.

Tests that use Ray ask for `s3_server` first (see test_inspection.py).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sonar_ray import storage
from sonar_ray.data import BadAudio, decode, shards
from sonar_ray.data.fetch import fetch_bytes, read_audio
from sonar_ray.data.inspect import inspect_files
from sonar_ray.data.manifest import list_audio, load_source

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clips(tiny_corpus, tmp_path_factory) -> Path:
    """12 real clips (WAV / FLAC / OGG, 1-2 s) under `<root>/<domain>/...`."""
    root = tmp_path_factory.mktemp("clips")
    for domain in ("speech", "music"):
        shutil.copytree(Path(tiny_corpus) / "audio" / domain / "train", root / domain / "train")
    return root


def pack_local(clips: Path, dst: Path) -> list[str]:
    return shards.pack(str(clips), str(dst), clips_per_shard=8)


def crop(uri: str) -> np.ndarray:
    return read_audio(uri, lambda f: decode(f, start=0.3, seconds=0.5)).wave


def original(clips_root, member_uri: str) -> str:
    return storage.join(str(clips_root), shards.split_member(member_uri)[1])


def test_the_pack_command_then_a_listing_gives_one_row_per_clip_with_the_source_layout(clips, tmp_path):
    run = subprocess.run([sys.executable, "-W", "error", "-m", "sonar_ray.data.shards", "pack", str(clips),
                          str(tmp_path / "shards"), "--clips-per-shard", "8"], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.stdout.strip() == f"wrote 2 shards under {tmp_path / 'shards'}"
    written = sorted(str(p) for p in (tmp_path / "shards").glob("*.tar"))
    assert [Path(s).name for s in written] == ["shard-000000.tar", "shard-000001.tar"]
    assert all(Path(s + shards.INDEX_SUFFIX).exists() for s in written)
    listed, source = list_audio(str(tmp_path / "shards")), list_audio(str(clips))
    assert len(listed) == len(source) == 12
    assert listed["path"].str.split("#").str[1].tolist() == source["path"].tolist()
    assert listed["domain"].tolist() == source["domain"].tolist()  # `<domain>/...` inside a shard at the top
    assert listed["size"].tolist() == source["size"].tolist()
    assert listed["uri"].str.startswith(str(tmp_path / "shards") + "/shard-00000").all()


def test_a_member_reads_exactly_its_bytes_and_its_crop_equals_the_original(clips, tmp_path):
    pack_local(clips, tmp_path / "shards")
    listed = list_audio(str(tmp_path / "shards"))
    for uri in listed["uri"]:
        assert fetch_bytes(uri) == Path(original(clips, uri)).read_bytes()
        np.testing.assert_array_equal(crop(uri), crop(original(clips, uri)))


def test_a_second_listing_reads_the_stored_index_not_the_headers(clips, tmp_path):
    shard = Path(pack_local(clips, tmp_path / "shards")[0])
    first = list_audio(str(tmp_path / "shards"))
    stat = shard.stat()
    shard.write_bytes(np.random.default_rng(0).bytes(stat.st_size))  # same size and mtime: the index still fits
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    pd.testing.assert_frame_equal(list_audio(str(tmp_path / "shards")), first)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a rewrite: walked again
    again = list_audio(str(tmp_path / "shards"))
    assert again["uri"].tolist() == [str(shard)] + first["uri"].tolist()[8:]  # only the damage is left of it


def test_an_unwritable_shard_folder_keeps_its_index_in_the_cache_folder(clips, tmp_path):
    shard = Path(pack_local(clips, tmp_path / "shards")[0])
    Path(str(shard) + shards.INDEX_SUFFIX).unlink()
    Path(str(shard) + shards.INDEX_SUFFIX).mkdir()  # cannot be written (root ignores file modes)
    listed = load_source(str(tmp_path / "shards"), cache_dir=str(tmp_path / "cache"))
    assert len(listed) == 12
    [stored] = (tmp_path / "cache" / "shards").iterdir()
    assert stored.name.startswith("shard-000000.tar-") and len(json.loads(stored.read_text())["members"]) == 8


def test_a_shard_cut_after_listing_or_a_missing_member_is_unreadable_not_fatal(clips, tmp_path):
    shard = Path(pack_local(clips, tmp_path / "shards")[0])
    listed = list_audio(str(tmp_path / "shards"))
    with pytest.raises(BadAudio, match="no member 'speech/nope.wav'") as e:
        crop(shards.member_uri(str(shard), "speech/nope.wav"))
    assert e.value.reason == "unreadable"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    last = listed["uri"].tolist()[7]
    with pytest.raises(BadAudio, match="truncated or damaged") as e:
        crop(last)
    assert e.value.reason == "unreadable"
    crop(listed["uri"].tolist()[0])  # the members before the cut still read


def damaged_source(clips: Path, root: Path) -> None:
    """Two good shards plus a truncated copy of one and a file that is not a tar; a manifest naming a
    good member and a missing one."""
    written = pack_local(clips, root / "good")
    good = shards.split_member(list_audio(str(root / "good"))["uri"][0])[1]  # in shard-000000
    half = Path(written[1]).read_bytes()
    (root / "good" / "cut.tar").write_bytes(half[: len(half) // 2])
    (root / "good" / "junk.tar").write_bytes(np.random.default_rng(0).bytes(3000))
    rows = [{"path": f"good/shard-000000.tar#{name}"} for name in (good, "speech/train/nope.wav")]
    (root / "named.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_inspection_skips_and_counts_damaged_shards_and_missing_members(where, s3_server, ray_local, clips,
                                                                         tmp_path, request):
    damaged_source(clips, tmp_path)
    root = str(tmp_path)
    if where == "s3":
        root = request.getfixturevalue("s3_bucket") + "/data"
        fs, _ = storage.filesystem(root)
        for p in tmp_path.rglob("*"):
            if p.is_file() and not p.name.endswith(shards.INDEX_SUFFIX):  # walked from S3 and stored there
                fs.pipe_file(f"{root[5:]}/{p.relative_to(tmp_path)}", p.read_bytes())
    listed = load_source(f"{root}/good")
    named = load_source(f"{root}/named.jsonl")
    found = inspect_files(pd.concat([listed, named], ignore_index=True), f"{root}/.sonar_cache", clip_seconds=1.0,
                          min_seconds=0.1, max_seconds=3600.0)
    bad = found[found["reason"] != ""]
    bad = dict(zip(bad["uri"].str.split("/good/").str[-1], bad["reason"]))
    assert bad == {"cut.tar": "unreadable", "junk.tar": "unreadable",
                   "shard-000000.tar#speech/train/nope.wav": "unreadable"}
    good = found[found["reason"] == ""]
    members_of_cut = good["uri"].str.contains("/cut.tar#").sum()
    assert len(good) == 12 + 1 + members_of_cut and 0 < members_of_cut < 4  # the whole members before the cut
    source = inspect_files(list_audio(str(clips)), str(tmp_path / "src-cache"), clip_seconds=1.0, min_seconds=0.1,
                           max_seconds=3600.0).set_index("path")["duration"]
    in_shards = good[~good["uri"].str.contains("/cut.tar#")]
    assert np.allclose(in_shards["duration"], source.loc[in_shards["uri"].str.split("#").str[1]].to_numpy())
    if where == "s3":
        assert storage.exists(f"{root}/good/shard-000000.tar{shards.INDEX_SUFFIX}")


def test_pack_writes_to_s3_and_the_prefix_lists_and_reads_the_same(s3_bucket, clips):
    written = shards.pack(str(clips), f"{s3_bucket}/shards", clips_per_shard=8)
    assert all(storage.exists(s + shards.INDEX_SUFFIX) for s in written)
    listed = list_audio(f"{s3_bucket}/shards")
    assert len(listed) == 12 and listed["uri"].str.startswith(f"{s3_bucket}/shards/shard-00000").all()
    for uri in listed["uri"][::3]:
        np.testing.assert_array_equal(crop(uri), crop(original(clips, uri)))


def test_member_view_is_a_bounded_seekable_file(tmp_path):
    (tmp_path / "f").write_bytes(bytes(range(100)))
    with shards.MemberView(open(tmp_path / "f", "rb", buffering=0), 10, 20) as v:
        assert v.read(5) == bytes(range(10, 15)) and v.tell() == 5
        assert v.seek(-3, 2) == 17 and v.read() == bytes(range(27, 30)) and v.read(4) == b""
        assert v.seek(100) == 100 and v.read(1) == b""
        with pytest.raises(OSError):
            v.seek(-1)


def test_shards_on_s3_feed_the_training_stream_like_any_source(s3_server, ray_local, s3_bucket, clips, tmp_path):
    import torch

    from sonar_ray.data import DataConfig, build_train_dataset, iter_train_batches, prepare_data

    shards.pack(str(clips), f"{s3_bucket}/shards", clips_per_shard=8)
    cfg = DataConfig(new_uri=f"{s3_bucket}/shards", new_domain="new", prior_uri=f"{s3_bucket}/shards",
                     replay_ratio=0.25, policy="uniform", batch_size=8, num_batches=2, clip_seconds=1.0,
                     cache_uri=str(tmp_path / "cache"), seed=3)
    prepared = prepare_data(cfg)
    assert len(prepared.new) == len(prepared.prior) == 12 and prepared.bad.empty
    assert prepared.new["uri"].str.contains(r"/shard-00000[01]\.tar#").all() and prepared.new["duration"].ge(1).all()
    batches = list(iter_train_batches(build_train_dataset(cfg, prepared=prepared).iterator()))
    assert [b["batch_index"] for b in batches] == [0, 1]
    for b in batches:
        assert b["fbank"].shape == (8, 98, 128) and torch.isfinite(b["fbank"]).all()
        assert int(b["is_prior"].sum()) == 2
