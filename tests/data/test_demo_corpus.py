"""The demo corpus: layout, manifest schema, tasks and splits, determinism, S3 output."""

import hashlib
import io
import json
from pathlib import Path

import soundfile as sf

from sonar_ray import storage
from sonar_ray.data.prepare import CACHE_FOLDER
from sonar_ray.demo import DOMAINS, TASKS, generate_corpus


def rows(root, name):
    return [json.loads(line) for line in storage.read_bytes(f"{root}/manifests/{name}").decode().splitlines()]


def test_layout_schema_and_probe_tasks(tiny_corpus):
    train, probes = rows(tiny_corpus, "train.jsonl"), rows(tiny_corpus, "probes.jsonl")
    assert {r["domain"] for r in train} == set(DOMAINS) == {"prior", "speech", "music", "bioacoustics", "environmental"}
    assert all(set(r) - {"source"} == {"path", "domain", "duration"} for r in train)
    assert all(set(r) == {"path", "domain", "task", "label", "split", "duration"} for r in probes)
    assert len(TASKS["prior"]) >= 2 and all(len(TASKS[d]) >= 1 for d in DOMAINS)
    for domain, tasks in TASKS.items():
        for task, classes in tasks.items():
            assert len(classes) >= 4
            for split in ("train", "valid", "test"):
                labels = {r["label"] for r in probes if r["task"] == task and r["split"] == split}
                assert labels == set(classes), (task, split)
    for r in train + probes:
        assert r["path"].startswith(f"audio/{r['domain']}/")
        info = sf.info(str(Path(tiny_corpus) / r["path"]))
        assert abs(info.duration - r["duration"]) < 0.01


def test_prior_holds_a_minority_of_material_related_to_each_new_domain():
    """Like AudioSet, the prior's unlabeled set includes speech-, music-, animal- and scene-like clips."""
    from sonar_ray.demo.corpus import SCALES, plan_corpus

    prior = [s for s in plan_corpus(SCALES["demo"], seed=0) if s.domain == "prior" and s.task is None]
    related = [s.source for s in prior if s.source]
    assert set(related) == set(DOMAINS) - {"prior"}
    assert 0.1 <= len(related) / len(prior) <= 0.3
    assert len({related.count(d) for d in set(related)}) == 1  # each new domain equally
    assert all(s.source is None for s in plan_corpus(SCALES["demo"], seed=0) if s.task or s.domain != "prior")


def test_related_prior_clips_come_from_the_new_domain_generator(tiny_corpus):
    train = rows(tiny_corpus, "train.jsonl")
    related = [r for r in train if "source" in r]
    assert related and all(r["domain"] == "prior" and r["path"].startswith("audio/prior/train/") for r in related)
    assert {r["source"] for r in related} <= set(DOMAINS) - {"prior"}


def test_mixed_rates_channels_and_formats(tiny_corpus):
    infos = [sf.info(str(p)) for p in Path(tiny_corpus, "audio").rglob("*.*")]
    assert {i.samplerate for i in infos} == {16_000, 22_050, 44_100}
    assert {i.channels for i in infos} == {1, 2}
    assert {i.format for i in infos} == {"WAV", "FLAC", "OGG"}


def content(data: bytes, name: str) -> bytes:
    """Bytes, except OGG: libvorbis stamps a random stream serial, so compare its samples."""
    return sf.read(io.BytesIO(data))[0].tobytes() if name.endswith(".ogg") else data


def digest(root: Path) -> str:
    """Hash of the generated corpus: audio and manifests (not caches that runs write beside the data)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and CACHE_FOLDER not in p.parts:
            h.update(str(p.relative_to(root)).encode() + content(p.read_bytes(), p.name))
    return h.hexdigest()


def test_seeded_generation_is_byte_identical_whatever_the_worker_count(tiny_corpus, tmp_path):
    summary = generate_corpus(str(tmp_path / "again"), "tiny", seed=0, workers=2)
    assert summary["files"] == len(rows(tiny_corpus, "train.jsonl")) + len(rows(tiny_corpus, "probes.jsonl"))
    assert digest(tmp_path / "again") == digest(Path(tiny_corpus))


def test_corpus_written_to_s3_matches_the_local_one(tiny_corpus, tiny_corpus_s3):
    assert rows(tiny_corpus_s3, "probes.jsonl") == rows(tiny_corpus, "probes.jsonl")
    some = rows(tiny_corpus, "train.jsonl")[7]["path"]
    assert content(storage.read_bytes(f"{tiny_corpus_s3}/{some}"), some) == content((Path(tiny_corpus) / some).read_bytes(), some)


def test_cli_writes_a_corpus(tmp_path):
    from sonar_ray.demo.__main__ import main

    summary = main(["--scale", "tiny", "--out", str(tmp_path / "cli"), "--seed", "3"])
    assert summary["files"] > 100 and (tmp_path / "cli/manifests/probes.jsonl").exists()


def test_a_corpus_grown_one_domain_at_a_time_equals_one_built_at_once(tiny_corpus, tmp_path):
    from sonar_ray.demo.corpus import built_domains

    root = tmp_path / "grown"
    generate_corpus(str(root), "tiny", seed=0, domains=["speech", "prior"])
    assert built_domains(str(root)) == {"prior", "speech"}
    assert not (root / "audio" / "music").exists()  # a demo run waits only for the domains it uses
    assert {r["domain"] for r in rows(root, "probes.jsonl")} == {"prior", "speech"}
    generate_corpus(str(root), "tiny", seed=0, domains=["music", "bioacoustics", "environmental"])
    assert digest(root) == digest(Path(tiny_corpus))  # same files, same manifests in the same order
