"""The watcher end to end with the in-process runner, on a local folder and on the S3 server."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sonar_ray import storage
from sonar_ray.pipelines.inventory import list_incoming, training_rows
from sonar_ray.pipelines.lease import Lease
from sonar_ray.pipelines.registry import Registry
from sonar_ray.pipelines.runner import AdaptRequest, InlineRunner
from sonar_ray.pipelines.watch import Watcher
from watch_helpers import standin_watcher, upload


def test_arrivals_make_a_promoted_version_then_nothing_then_a_child(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav", "b.wav"])
    first = standin_watcher(watch_cfg).poll()
    registry = Registry(watch_cfg.registry)
    (v1,) = registry.versions("birds")
    assert first.started == [v1.version] and first.finished == {v1.version: "promoted"}
    assert v1.parent is None and v1.base == watch_cfg.base
    assert sorted(k for k, _ in v1.consumed) == ["birds/a.wav", "birds/b.wav"]
    assert v1.checkpoint == storage.join(v1.output, "model.pt") and storage.exists(v1.checkpoint)
    assert v1.metrics["forgetting"] == 0.0 and v1.code_version
    assert registry.pointer("birds").version == v1.version

    again = standin_watcher(watch_cfg).poll()
    assert again.started == [] and len(registry.versions("birds")) == 1

    upload(watch_cfg.incoming, "birds", ["c.wav"], seed=5)
    upload(watch_cfg.incoming, "birds", ["a.wav"], seed=9)  # rewritten: new ETag, counts as new
    child_report = standin_watcher(watch_cfg).poll()
    v1_again, v2 = registry.versions("birds")
    assert child_report.started == [v2.version] and v1_again.version == v1.version
    assert v2.parent == v1.version and v2.base == v1.checkpoint and v2.status == "promoted"
    assert sorted(k for k, _ in v2.consumed) == ["birds/a.wav", "birds/c.wav"]
    rows = [json.loads(line) for line in storage.read_bytes(v2.manifest).decode().splitlines()]
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == ["a.wav", "c.wav"]
    assert registry.pointer("birds").version == v2.version
    assert registry.pointer("birds").history == [v1.version]


def test_every_adaptation_gets_the_watchers_prior_set_and_probes(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    standin_watcher(watch_cfg).poll()
    (v1,) = Registry(watch_cfg.registry).versions("birds")
    ran = json.loads(storage.read_bytes(storage.join(v1.output, "summary.json")))["config"]  # the job's flags
    assert (ran["prior"], ran["probes"]) == (watch_cfg.prior, watch_cfg.probes)
    assert (v1.config["prior"], v1.config["probes"]) == (watch_cfg.prior, watch_cfg.probes)  # in the lineage


def test_the_watcher_refuses_to_start_without_a_prior_set(tmp_path):
    out = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "jobs" / "watch.py"),
                          "--incoming", str(tmp_path / "in"), "--registry", str(tmp_path / "reg"),
                          "--base", str(tmp_path / "model.pt"), "--probes", str(tmp_path), "--once"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: --prior is required"), line
    Path(line.rsplit("traceback: ", 1)[1].rstrip(")")).unlink()
    assert not (tmp_path / "reg").exists()  # nothing written


def test_the_watcher_needs_probes_unless_it_does_not_evaluate(watch_cfg):
    with pytest.raises(ValueError, match="--probes is required"):
        standin_watcher(dataclasses.replace(watch_cfg, probes=""))
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    standin_watcher(dataclasses.replace(watch_cfg, probes="", evaluate=False)).poll()  # --probes not forwarded
    (v1,) = Registry(watch_cfg.registry).versions("birds")
    assert v1.status != "failed", v1.reason
    assert json.loads(storage.read_bytes(storage.join(v1.output, "summary.json")))["config"]["probes"] is None


def test_too_much_forgetting_is_rejected_and_current_model_is_unchanged(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    standin_watcher(watch_cfg).poll()
    registry = Registry(watch_cfg.registry)
    current = registry.pointer("birds").version
    upload(watch_cfg.incoming, "birds", ["b.wav"], seed=3)
    strict = dataclasses.replace(watch_cfg, max_forgetting=-1.0)  # any real forgetting exceeds it
    report = standin_watcher(strict).poll()
    (rejected,) = [v for v in registry.versions("birds") if v.version != current]
    assert report.finished == {rejected.version: "rejected"}
    assert "max_forgetting" in rejected.reason and rejected.checkpoint  # kept, with the reason
    assert registry.pointer("birds").version == current


def test_rollback_restores_the_previous_version(watch_cfg):
    registry = Registry(watch_cfg.registry)
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    standin_watcher(watch_cfg).poll()
    upload(watch_cfg.incoming, "birds", ["b.wav"], seed=3)
    standin_watcher(watch_cfg).poll()
    v1, v2 = registry.versions("birds")
    assert registry.pointer("birds").version == v2.version
    assert registry.rollback("birds") == v1.version
    assert registry.pointer("birds").version == v1.version
    assert registry.get(v2.version).status == "rejected"
    # The next arrival builds on the restored model; v2's objects stay consumed.
    upload(watch_cfg.incoming, "birds", ["c.wav"], seed=4)
    standin_watcher(watch_cfg).poll()
    v3 = registry.versions("birds")[-1]
    assert v3.parent == v1.version and [k for k, _ in v3.consumed] == ["birds/c.wav"]


def test_restart_between_recording_and_submitting_runs_the_version_once(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav", "b.wav"])
    crashed = standin_watcher(watch_cfg)
    assert crashed.lease.acquire()
    objects = list_incoming(watch_cfg.incoming)
    planned = crashed.reserve("birds", objects, training_rows(objects, "birds"))
    # ... the process dies here: the record exists, nothing was submitted; its lease runs out.
    crashed.lease.release()
    registry = Registry(watch_cfg.registry)
    assert registry.get(planned.version).status == "running"
    report = standin_watcher(watch_cfg).poll()
    assert report.resubmitted == [planned.version] and report.started == []
    (v,) = registry.versions("birds")
    assert v.version == planned.version and v.status == "promoted" and v.attempt == 1
    assert standin_watcher(watch_cfg).poll().started == []


def test_a_watcher_does_nothing_while_another_holds_the_lease(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    other = Lease(Registry(watch_cfg.registry).lease_uri, ttl_s=60, holder="other")
    assert other.acquire()
    report = standin_watcher(watch_cfg).poll()
    assert not report.acted and Registry(watch_cfg.registry).versions() == []
    other.release()
    assert standin_watcher(watch_cfg).poll().started


def test_two_concurrent_watchers_adapt_the_arrivals_once(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav", "b.wav"])
    watchers = [standin_watcher(dataclasses.replace(watch_cfg, holder=f"w{i}")) for i in range(2)]
    barrier, reports = threading.Barrier(2), []

    def run(w: Watcher) -> None:
        barrier.wait()
        reports.append(w.poll())

    threads = [threading.Thread(target=run, args=(w,)) for w in watchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.started) for r in reports) == 1
    assert len(Registry(watch_cfg.registry).versions("birds")) == 1


def test_failed_adaptation_is_retried_up_to_the_limit_then_reported(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    broken = dataclasses.replace(watch_cfg, base=storage.join(watch_cfg.registry, "missing.pt"), max_attempts=2)
    report = standin_watcher(broken).poll()
    (v,) = Registry(watch_cfg.registry).versions("birds")
    assert v.status == "failed" and v.attempt == 2 and v.job_id.endswith("-2")
    assert report.failed == {v.version: v.reason} and "FAILED" in v.reason
    assert standin_watcher(broken).poll().started == []  # reported, not retried forever


def test_a_retry_after_a_started_run_failed_gets_a_fresh_attempt_and_succeeds(watch_cfg, tmp_path, monkeypatch):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    monkeypatch.setenv("SONAR_STANDIN_FAIL_ONCE", str(tmp_path / "failed-once"))
    report = standin_watcher(dataclasses.replace(watch_cfg, max_attempts=2)).poll()
    (v,) = Registry(watch_cfg.registry).versions("birds")
    assert v.status == "promoted" and v.attempt == 2 and report.finished == {v.version: "promoted"}
    assert v.output.endswith("/output-2") and v.checkpoint == storage.join(v.output, "model.pt")
    assert storage.exists(storage.join(Registry(watch_cfg.registry).version_dir(v.version), "output", "ray", "started"))


def test_poison_arrivals_are_quarantined_and_reported_while_every_domain_proceeds(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    upload(watch_cfg.incoming, "frogs", ["b.wav"], seed=1)
    upload(watch_cfg.incoming, "bats", ["c.aiff"], seed=2)
    storage.write_bytes_atomic(storage.join(watch_cfg.incoming, "birds", "batch.jsonl"), b'{"path": "a.wav"}\n{oops\n')
    storage.write_bytes_atomic(storage.join(watch_cfg.incoming, "frogs", "rows.jsonl"), b'{"label": "no path"}\n')
    poison = {"birds/batch.jsonl": "line 2 is not JSON", "frogs/rows.jsonl": "line 1 has no 'path'"}
    if not storage.is_remote(watch_cfg.incoming):
        Path(watch_cfg.incoming, "bats", "gone.wav").symlink_to("nowhere.wav")
        poison["bats/gone.wav"] = "unreadable link"
    report = standin_watcher(watch_cfg).poll()
    registry = Registry(watch_cfg.registry)
    assert set(report.quarantined) == set(poison) and not report.errors
    assert all(why in report.quarantined[key] for key, why in poison.items())
    for domain, clip in (("birds", "a.wav"), ("frogs", "b.wav"), ("bats", "c.aiff")):
        (v,) = registry.versions(domain)
        assert v.status == "promoted" and [k for k, _ in v.consumed] == [f"{domain}/{clip}"]
    again = standin_watcher(watch_cfg).poll()
    assert again.started == [] and again.quarantined == {}  # recorded once, not re-planned
    storage.write_bytes_atomic(storage.join(watch_cfg.incoming, "frogs", "rows.jsonl"), b'{"path": "b.wav"}\n')
    assert len(standin_watcher(watch_cfg).poll().started) == 1  # a fixed re-upload is planned


def test_undecodable_object_is_skipped_and_recorded(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    storage.write_bytes_atomic(storage.join(watch_cfg.incoming, "birds", "broken.wav"), b"RIFF not really")
    storage.write_bytes_atomic(storage.join(watch_cfg.incoming, "birds", "phone.m4a"), b"\0\0\0\x18ftypM4A ")
    standin_watcher(watch_cfg).poll()
    (v,) = Registry(watch_cfg.registry).versions("birds")
    assert v.status == "promoted" and len(v.consumed) == 3  # an .m4a arrival is reported, not ignored
    assert [b["path"].rsplit("/", 1)[-1] for b in v.bad_inputs] == ["broken.wav", "phone.m4a"]


def test_thresholds_hold_arrivals_back_until_enough_data(watch_cfg):
    cfg = dataclasses.replace(watch_cfg, min_new_clips=3, min_new_hours=1.2 / 3600)
    upload(cfg.incoming, "birds", ["a.wav", "b.wav"])
    report = standin_watcher(cfg).poll()
    assert report.waiting == {"birds": {"clips": 2, "hours": round(1.0 / 3600, 4)}} and not report.started
    upload(cfg.incoming, "birds", ["c.wav"], seed=2)
    (vid,) = standin_watcher(cfg).poll().started
    assert len(Registry(cfg.registry).get(vid).consumed) == 3


def test_without_metrics_a_version_waits_for_a_manual_promotion(watch_cfg):
    cfg = dataclasses.replace(watch_cfg, evaluate=False)
    upload(cfg.incoming, "birds", ["a.wav"])
    standin_watcher(cfg).poll()
    registry = Registry(cfg.registry)
    (v,) = registry.versions("birds")
    assert v.status == "succeeded" and registry.pointer("birds").version is None
    registry.promote(v, "checked by hand")
    assert registry.pointer("birds").version == v.version


def test_the_inline_runner_runs_the_library_pipeline_on_the_requests_flags(watch_cfg, tmp_path):
    """In process, the request's flags are parsed into a TrainConfig and go to the library's adapt(cfg),
    the call jobs/adapt.py makes (no job script run with runpy)."""
    from sonar_ray.train import adapt

    request = AdaptRequest(submission_id="sonar-adapt-v1-1", domain="birds", data=str(tmp_path / "rows.jsonl"),
                           base=watch_cfg.base, output=str(tmp_path / "out"), max_steps=7, config_file="",
                           evaluate=True, prior=watch_cfg.prior, probes="")
    ran = []
    recorder = InlineRunner(ran.append)
    recorder.submit(request)
    (cfg,) = ran
    assert (cfg.domain, cfg.data, cfg.prior, cfg.base, cfg.output, cfg.max_steps, cfg.resume, cfg.probes) == (
        "birds", request.data, watch_cfg.prior, watch_cfg.base, request.output, 7, True, None)
    assert recorder.status(request.submission_id, request.output).state == "SUCCEEDED"

    default = Watcher(watch_cfg).runner  # --inline
    assert isinstance(default, InlineRunner) and default.adapt is adapt.adapt
    default.submit(request)  # the real pipeline: no probes with evaluation on fails before any work
    failed = default.status(request.submission_id, request.output)
    assert failed.state == "FAILED" and failed.message.startswith("ValueError: --probes is missing"), failed
    assert not (tmp_path / "out").exists()

