"""compare(): forgetting is zero for an unchanged model and positive for a damaged one; caching."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonar_ray.eval import compare
from sonar_ray.eval.metrics import NotEvaluatedError
from sonar_ray.eval.tasks import load_tasks


def test_tasks_come_from_the_manifest(probe_corpus):
    tasks = load_tasks(str(probe_corpus))
    assert [t.key for t in tasks] == ["environmental/events", "music/interval", "prior/pitch", "speech/rate"]
    assert [t.key for t in load_tasks(str(probe_corpus), ["prior", "speech/rate"])] == ["prior/pitch", "speech/rate"]
    with pytest.raises(ValueError, match="match nothing"):
        load_tasks(str(probe_corpus), ["birds"])


def test_the_valid_split_never_lets_a_probe_read_a_test_clip(probe_corpus):
    for test, valid in zip(load_tasks(str(probe_corpus)), load_tasks(str(probe_corpus), split="valid")):
        was, now = test.rows["split"], valid.rows["split"]
        assert list(valid.rows["uri"]) == list(test.rows["uri"])  # same rows: same embedding cache keys
        assert (now[was == "test"] == "held_out").all() and (now[was == "valid"] == "test").all()
        assert set(now[was == "train"]) <= {"train", "valid"} and (now == "valid").any()  # a quarter of train picks L2
    with pytest.raises(ValueError, match="split"):
        load_tasks(str(probe_corpus), split="train")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedding_cache")


def test_unchanged_model_forgets_nothing(probe_corpus, checkpoints, cache_dir):
    result = compare(checkpoints["base"], checkpoints["same"], str(probe_corpus), "speech", cache_dir=str(cache_dir),
                     other_domains=True)
    assert result["forgetting"] == 0.0 and result["forgetting_relative"] == 0.0
    assert result["forgetting_lo"] == result["forgetting_hi"] == 0.0  # paired: identical answers, no spread
    assert result["adaptability"] == result["adaptability_base"] and result["adaptability_gain"] == 0.0
    assert set(result["other_domains"]) == {"music", "environmental"}
    # The random-init base model separates the prior task well, so damage has room to show.
    assert result["prior_base"] > 0.85
    rows = {(r["model"], r["domain"]): r for r in result["per_task"]}
    assert rows[("base", "prior")]["n_skipped"] == 1  # the broken file
    assert rows[("base", "environmental")]["mAP"] > 0.5  # the multi-label task is scored by mAP
    # Same content at another path: every embedding came from the cache (one entry per task).
    assert len(list(cache_dir.glob("*.npz"))) == 4


def test_damaged_model_forgets(probe_corpus, checkpoints, cache_dir):
    result = compare(checkpoints["base"], checkpoints["damaged"], str(probe_corpus), "speech",
                     tasks=["prior", "speech"], cache_dir=str(cache_dir))
    assert result["forgetting"] > 0.1
    assert result["forgetting_lo"] < result["forgetting"] < result["forgetting_hi"]  # the prior task is single-label
    assert result["forgetting_relative"] == pytest.approx(result["forgetting"] / result["prior_base"])
    assert result["prior_adapted"] < result["prior_base"]
    # The base's prior/speech embeddings were reused; only the damaged model's two tasks are new.
    assert len(list(cache_dir.glob("*.npz"))) == 6


def test_compare_refuses_without_prior_tasks(probe_corpus, checkpoints, cache_dir):
    with pytest.raises(NotEvaluatedError, match="prior"):
        compare(checkpoints["base"], checkpoints["same"], str(probe_corpus), "speech", tasks=["speech"],
                cache_dir=str(cache_dir))


def test_compare_probes_only_the_new_and_prior_domains_by_default(probe_corpus, checkpoints, cache_dir):
    result = compare(checkpoints["base"], checkpoints["damaged"], str(probe_corpus), "speech", cache_dir=str(cache_dir))
    assert {r["domain"] for r in result["per_task"]} == {"speech", "prior"}
    assert result["other_domains"] == {}


def test_compare_on_the_valid_split_scores_valid_clips(probe_corpus, checkpoints, cache_dir):
    result = compare(checkpoints["base"], checkpoints["damaged"], str(probe_corpus), "speech", cache_dir=str(cache_dir),
                     split="valid")
    tasks = {t.key: t for t in load_tasks(str(probe_corpus))}
    assert result["split"] == "valid"
    for r in result["per_task"]:
        valid = (tasks[f"{r['domain']}/{r['task']}"].rows["split"] == "valid").sum()  # 10 a class, test has 24
        assert valid - r["n_skipped"] <= r["n_test"] <= valid
