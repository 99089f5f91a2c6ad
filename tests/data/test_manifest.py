"""Sources: JSONL / CSV / Parquet manifests, corpus roots, audio folders, missing buckets."""

import json

import pandas as pd
import pytest

from sonar_ray.data.manifest import load_source, read_manifest


def test_manifest_formats_agree_and_resolve_against_the_corpus_root(tiny_corpus, tmp_path):
    jsonl = read_manifest(f"{tiny_corpus}/manifests/probes.jsonl")
    assert jsonl["uri"].iloc[0] == f"{tiny_corpus}/{jsonl['path'].iloc[0]}"
    (tmp_path / "manifests").mkdir()
    table = jsonl.drop(columns="uri").assign(path=lambda d: tiny_corpus + "/" + d["path"])  # absolute paths too
    table.to_csv(tmp_path / "manifests/p.csv", index=False)
    table.to_parquet(tmp_path / "manifests/p.parquet")
    for name in ("p.csv", "p.parquet"):
        other = read_manifest(str(tmp_path / "manifests" / name))
        assert other["uri"].tolist() == jsonl["uri"].tolist()
        assert other["label"].tolist() == jsonl["label"].tolist()


def test_corpus_root_uses_train_manifest_and_filters_domain(tiny_corpus):
    speech = load_source(tiny_corpus, "speech")
    assert set(speech["domain"]) == {"speech"} and len(speech) == 6
    assert all("/audio/speech/train/" in u for u in speech["uri"])


def test_folder_listing_takes_domain_from_layout_or_user(tiny_corpus):
    listed = load_source(f"{tiny_corpus}/audio")
    assert set(listed["domain"]) == {"prior", "speech", "music", "bioacoustics", "environmental"}
    assert len(listed) == sum(1 for _ in open(f"{tiny_corpus}/manifests/train.jsonl")) + \
        sum(1 for _ in open(f"{tiny_corpus}/manifests/probes.jsonl"))
    one = load_source(f"{tiny_corpus}/audio/music/train", "my-music")
    assert set(one["domain"]) == {"my-music"} and len(one) == 6


def test_s3_prefix_and_manifest(tiny_corpus_s3):
    listed = load_source(f"{tiny_corpus_s3}/audio/speech/train", "speech")
    assert len(listed) == 6 and all(u.startswith("s3://tiny-corpus/v1/audio/speech/") for u in listed["uri"])
    assert load_source(tiny_corpus_s3, "speech")["uri"].tolist() == sorted(listed["uri"])


def test_missing_bucket_prefix_or_rows_fail_fast_with_a_clear_message(s3_server, tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-bucket"):
        load_source("s3://no-such-bucket/prefix")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_source(str(tmp_path / "nowhere"))
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "a.wav", "domain": "x"}) + "\n")
    with pytest.raises(ValueError, match="no rows"):
        load_source(str(tmp_path / "m.jsonl"), "speech")
    pd.DataFrame({"file": ["a.wav"]}).to_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="no 'path' column"):
        load_source(str(tmp_path / "bad.csv"))


def test_inspected_rows_become_typed_clip_rows_for_the_sampler():
    from sonar_ray.data.manifest import ClipRow, clip_rows

    table = pd.DataFrame({"uri": ["s3://b/a.wav", "/x/b.flac"], "duration": [1.5, 2], "domain": ["prior", None],
                          "stratum": [2, 0], "reason": ["", ""]})
    assert clip_rows(table) == [ClipRow("s3://b/a.wav", 1.5, "prior", 2), ClipRow("/x/b.flac", 2.0, "", 0)]
    assert clip_rows(table[["uri", "duration"]])[1] == ClipRow("/x/b.flac", 2.0)  # new-domain rows: no stratum
