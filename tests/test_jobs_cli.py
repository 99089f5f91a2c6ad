"""Every job's command line: help for every flag, usage examples verbatim, the `sonar-ray` console script."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import sys
import tomllib
import typing
from pathlib import Path

import pytest
import yaml

from sonar_ray import cli
from sonar_ray.config import build_parser, parse_cli

REPO = Path(__file__).resolve().parents[1]


def _module(script: str):
    return importlib.import_module(cli.module_name(script))  # job files are importable modules


def _config_class(job: str):
    if job in ("adapt",):
        from sonar_ray.train.config import TrainConfig as cls
    elif job == "pretrain":
        from sonar_ray.train.pretrain import PretrainConfig as cls
    elif job == "evaluate":
        cls = _module(cli.JOBS[job]).EvaluateConfig
    elif job == "watch":
        from sonar_ray.pipelines.watch import WatchConfig as cls
    else:
        cls = _module(cli.JOBS[job]).SweepConfig
    return cls


def test_every_job_file_is_a_console_job():
    assert {f"jobs/{p.name}" for p in (REPO / "jobs").glob("*.py")} | {"tuning/sweep.py"} == set(cli.JOBS.values())


@pytest.mark.parametrize("job", sorted(cli.JOBS))
def test_every_flag_has_help_and_examples_show_verbatim(job, capsys, monkeypatch):
    parser = build_parser(_config_class(job))
    for action in parser._actions:
        if action.dest == "help":
            continue
        text = (action.help or "").split("(default:")[0].strip()
        assert text, f"{job}: {action.option_strings} has no help"

    # `sonar-ray JOB --help` is the job's own --help: its docstring with the usage lines as written.
    monkeypatch.setattr(sys, "argv", ["sonar-ray"])
    with pytest.raises(SystemExit) as exit_:
        cli.main([job, "--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    source = (REPO / cli.JOBS[job]).read_text()
    doc = ast.get_source_segment(source, ast.parse(source).body[0].value)  # as written, e.g. a trailing \
    examples = [line for line in doc.splitlines() if line.startswith("    ")]
    assert examples and all(line in shown.splitlines() for line in examples), job
    for action in parser._actions:
        assert all(flag in shown for flag in action.option_strings)


def test_console_script_is_declared_and_rejects_unknown_jobs(capsys):
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"sonar-ray": "sonar_ray.cli:main"}
    with pytest.raises(SystemExit) as exit_:
        cli.main(["no-such-job"])
    assert exit_.value.code == 2 and "adapt" in capsys.readouterr().err
    assert set(cli.JOBS) == {"adapt", "pretrain", "evaluate", "watch", "sweep"}
    assert all((REPO / script).exists() for script in cli.JOBS.values())


@pytest.mark.parametrize("script,call", [("jobs/adapt.py", "sonar_ray.train.adapt.adapt"),
                                         ("jobs/pretrain.py", "sonar_ray.train.pretrain.pretrain")])
def test_the_training_jobs_are_thin_wrappers_of_the_library_pipeline(script, call):
    """The pipeline lives once, in the library the sweep, the replication and the watcher also call:
    a training job only parses its flags, calls it and prints."""
    tree = ast.parse((REPO / script).read_text())
    assert [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))] == ["main"]
    module, name = call.rsplit(".", 1)
    assert any(isinstance(n, ast.ImportFrom) and n.module == module and name in {a.name for a in n.names}
               for n in tree.body), f"{script} does not call {call}"
    assert getattr(_module(script), name) is getattr(importlib.import_module(module), name)


def _choice_fields():
    from sonar_ray.data.config import DataConfig
    from sonar_ray.demo.__main__ import DemoConfig

    classes = [_config_class(job) for job in sorted(cli.JOBS)] + [DataConfig, DemoConfig]
    fields = [(cls, f) for cls in classes for f in dataclasses.fields(cls) if "choices" in f.metadata]
    assert {f.name for _, f in fields} >= {"method", "distill_kind", "replay_policy", "policy", "scale"}
    return fields


@pytest.mark.parametrize("cls,f", _choice_fields(), ids=lambda x: getattr(x, "name", getattr(x, "__name__", "")))
def test_a_config_file_value_outside_the_choices_fails_at_parse_time(cls, f, tmp_path):
    """e.g. `distill_kind: l1` used to be accepted from a file and fail inside a Ray worker at step 1."""
    is_list = typing.get_origin(typing.get_type_hints(cls)[f.name]) is list
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(yaml.safe_dump({f.name: ["l1"] if is_list else "l1"}))
    choices = ", ".join(map(str, f.metadata["choices"]))
    with pytest.raises(ValueError, match=f"^--{f.name.replace('_', '-')} must be one of {choices}; got 'l1'$"):
        parse_cli(cls, ["--config", str(cfg_file)])
    with pytest.raises(SystemExit):  # and the flag, as before
        parse_cli(cls, [f"--{f.name.replace('_', '-')}", "l1"])
