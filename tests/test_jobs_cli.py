"""Every job's command line: help for every flag, usage examples verbatim, the `sonar-ray` console script."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

from sonar_ray import cli
from sonar_ray.config import build_parser

REPO = Path(__file__).resolve().parents[1]


def _module(script: str):
    spec = importlib.util.spec_from_file_location(f"cli_{Path(script).stem}", REPO / script)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
    spec.loader.exec_module(module)
    return module


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
    doc = _module(cli.JOBS[job]).__doc__
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
