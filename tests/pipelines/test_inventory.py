"""Listing arrivals: keys + ETags, rewrites, uploads in progress, temp files, arriving manifests."""

from __future__ import annotations

import json

import boto3

from sonar_ray import storage
from sonar_ray.pipelines.inventory import list_incoming, probe_hours, training_rows

from watch_helpers import clip_bytes, upload


def test_lists_domains_with_etags_and_a_rewrite_changes_the_etag(root):
    incoming = storage.join(root, "incoming")
    upload(incoming, "birds", ["a.wav", "b.wav"])
    upload(incoming, "speech", ["c.wav"])
    storage.write_bytes_atomic(storage.join(incoming, "birds", "notes.txt"), b"not audio")
    before = {o.key: o for o in list_incoming(incoming)}
    assert sorted(before) == ["birds/a.wav", "birds/b.wav", "speech/c.wav"]
    assert {o.domain for o in before.values()} == {"birds", "speech"}
    upload(incoming, "birds", ["a.wav"], seed=7)  # rewritten with different content
    after = {o.key: o for o in list_incoming(incoming)}
    assert after["birds/a.wav"].etag != before["birds/a.wav"].etag
    assert after["birds/b.wav"].etag == before["birds/b.wav"].etag


def test_multipart_upload_in_progress_is_invisible_until_completed(s3_bucket):
    incoming = storage.join(s3_bucket, "incoming")
    bucket = s3_bucket[len("s3://"):]
    s3 = boto3.client("s3")
    mp = s3.create_multipart_upload(Bucket=bucket, Key="incoming/birds/big.wav")
    part = s3.upload_part(Bucket=bucket, Key="incoming/birds/big.wav", UploadId=mp["UploadId"],
                          PartNumber=1, Body=clip_bytes(1))
    assert list_incoming(incoming) == []
    s3.complete_multipart_upload(Bucket=bucket, Key="incoming/birds/big.wav", UploadId=mp["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert [o.key for o in list_incoming(incoming)] == ["birds/big.wav"]


def test_local_temp_files_and_hidden_folders_are_skipped(tmp_path):
    upload(str(tmp_path), "birds", ["ok.wav", ".ok.wav.swp", "partial.wav.part"])
    (tmp_path / "birds" / ".staging").mkdir()
    (tmp_path / "birds" / ".staging" / "x.wav").write_bytes(clip_bytes(2))
    assert [o.key for o in list_incoming(str(tmp_path))] == ["birds/ok.wav"]


def test_a_local_file_still_being_copied_waits_until_it_settles(tmp_path):
    import os
    import time

    target = tmp_path / "birds" / "long.wav"
    target.parent.mkdir()
    with target.open("wb") as f:
        f.write(clip_bytes(0)[:1000])  # a copy in progress
        f.flush()
        assert list_incoming(str(tmp_path), settle_seconds=30) == []
        f.write(clip_bytes(0)[1000:])
    assert list_incoming(str(tmp_path), settle_seconds=30) == []
    past = time.time() - 60
    os.utime(target, (past, past))  # untouched for a minute: the copy is done
    (found,) = list_incoming(str(tmp_path), settle_seconds=30)
    assert found.key == "birds/long.wav" and found.size == len(clip_bytes(0))


def test_arriving_manifest_expands_to_rows_relative_to_its_folder(root):
    incoming = storage.join(root, "incoming")
    upload(storage.join(root, "archive"), "birds", ["x.wav"])
    rows = [{"path": "../../archive/birds/x.wav", "duration": 1800.0},
            {"path": storage.join(root, "archive", "birds", "x.wav")}]
    storage.write_bytes_atomic(storage.join(incoming, "birds", "batch1.jsonl"),
                               "".join(json.dumps(r) + "\n" for r in rows).encode())
    upload(incoming, "birds", ["direct.wav"])
    objects = list_incoming(incoming)
    assert [o.is_manifest for o in objects] == [True, False]
    got = training_rows(objects, "birds")
    assert [r["domain"] for r in got] == ["birds"] * 3
    assert got[0]["path"] == got[1]["path"] == storage.join(root, "archive", "birds", "x.wav")
    assert got[2]["path"] == objects[1].uri
    # 1800 s declared + two 0.5 s clips read from their headers
    assert abs(probe_hours(got) - (1800 + 1.0) / 3600) < 1e-6


def test_an_arriving_tar_shard_expands_to_its_audio_members_read_in_place(root, tmp_path):
    from sonar_ray.data import shards

    src = tmp_path / "src"
    for i, name in enumerate(["a.wav", "b.wav", "c.wav"]):
        (src / "birds").mkdir(parents=True, exist_ok=True)
        (src / "birds" / name).write_bytes(clip_bytes(i, seconds=0.5 + 0.25 * i))
    incoming = storage.join(root, "incoming")
    (shard,) = shards.pack(str(src), storage.join(incoming, "birds"), clips_per_shard=8)
    objects = list_incoming(incoming)  # the index stored beside the shard is not an arrival
    assert [o.key for o in objects] == ["birds/" + shard.rsplit("/", 1)[-1]]
    rows = training_rows(objects, "birds")
    assert [r["path"].rsplit("#", 1)[-1] for r in rows] == ["birds/a.wav", "birds/b.wav", "birds/c.wav"]
    assert all(r["path"].startswith(objects[0].uri + "#") and r["domain"] == "birds" for r in rows)
    assert abs(probe_hours(rows) - (0.5 + 0.75 + 1.0) / 3600) < 1e-6  # headers read inside the shard


def test_a_tar_shard_that_holds_no_readable_audio_is_poison(tmp_path):
    import pytest

    from sonar_ray.pipelines.inventory import PoisonArrival

    (tmp_path / "birds").mkdir()
    (tmp_path / "birds" / "junk.tar").write_bytes(b"not a tar archive at all" * 100)
    with pytest.raises(PoisonArrival, match="tar shard"):
        training_rows(list_incoming(str(tmp_path)), "birds")
