r"""Linear-probe evaluation of frozen BEATs checkpoints on a corpus's labeled probe tasks.

    python jobs/evaluate.py --models base=BASE.pt sonar=SONAR.pt dcpt=DCPT.pt --corpus demo_data \
        --domain speech [--tasks prior speech/words] [--layer last|average|N] [--repeats 3] \
        [--embed-pool-actors 4] [--embed-pool-gpus-per-actor 0.5]

Writes results.{csv,parquet} (one row per model and task), summary.csv, report.md, summary.json and
per_task.png (+ tradeoff.png: adaptability vs forgetting when --domain is given) under --output.
Clips are embedded by Ray Data actors (`--embed-pool-*`, on GPUs when asked for), each holding one model.
The probe protocol is documented in sonar_ray/eval/probes.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sonar_ray import config
from sonar_ray.data.pool import EmbedPool
from sonar_ray.eval.cache import DEFAULT_CACHE_DIR
from sonar_ray.eval.embeddings import EmbeddingSpec
from sonar_ray.eval.probes import ProbeConfig
from sonar_ray.eval.report import markdown, noise_warning, summarize, write_report
from sonar_ray.eval.suite import evaluate_models
from sonar_ray.eval.tasks import load_tasks


@dataclass
class EvaluateConfig:
    models: list[str] = field(default_factory=list)  # NAME=CHECKPOINT (path or URI), one per model
    corpus: str = "demo_data"  # corpus root holding manifests/probes.jsonl
    tasks: list[str] = field(default_factory=list)  # "domain" or "domain/task"; empty = every task
    domain: str = ""  # adapted domain: adds adaptability / forgetting to the summary ("" = none)
    base: str = "base"  # the model forgetting is measured against (a NAME from --models)
    prior_domain: str = "prior"  # domain of the tasks forgetting is measured on
    output: str = "outputs/eval"  # folder or URI for tables and plots
    layer: str = "last"  # "last", "average" or a layer index
    max_seconds: float = 10.0  # clips are cropped to their first max_seconds
    repeats: int = 1  # >1: bootstrap the probe's train split, report mean and std
    seed: int = 0  # seed of the first bootstrap resample
    embed_pool: EmbedPool = field(default_factory=EmbedPool)  # the Ray Data actors that embed the clips
    cache_dir: str = DEFAULT_CACHE_DIR  # embeddings cached by checkpoint content


def parse_models(specs: list[str]) -> dict[str, str]:
    models = {}
    for spec in specs:
        name, sep, ckpt = spec.partition("=")
        if not sep or not name or not ckpt:
            raise ValueError(f"--models entries are NAME=CHECKPOINT, got {spec!r}")
        if name in models:
            raise ValueError(f"model name {name!r} given twice")
        models[name] = ckpt
    if not models:
        raise ValueError("give at least one model: --models NAME=CHECKPOINT ...")
    return models


def main(argv: list[str] | None = None) -> dict[str, str]:
    # config
    cfg = config.parse_cli(EvaluateConfig, argv, description=__doc__)
    models = parse_models(cfg.models)
    domain = cfg.domain or None
    if domain and cfg.base not in models:
        raise ValueError(f"--base {cfg.base!r} is not among --models {sorted(models)}")
    spec = EmbeddingSpec(layer=cfg.layer, max_seconds=cfg.max_seconds)
    probe = ProbeConfig(repeats=cfg.repeats, seed=cfg.seed)

    # data
    tasks = load_tasks(cfg.corpus, cfg.tasks)

    # models x tasks: embed (cached) and probe
    table = evaluate_models(models, tasks, spec, probe, cfg.cache_dir, cfg.embed_pool)

    # report
    summary = summarize(table, domain, cfg.base if domain else None, cfg.prior_domain)
    outputs = write_report(table, summary, cfg.output, domain,
                           meta={"config": config.to_dict(cfg), "probe": config.to_dict(probe)})
    shown = ["model", "domain", "task", "score", "score_std", "accuracy", "macro_f1", "n_test"]
    print(markdown(table[shown]), "\n", markdown(summary), "\n", noise_warning(table), "\n", sep="")
    for what, uri in outputs.items():
        print(f"{what:>16}: {uri}")
    return outputs


if __name__ == "__main__":
    main()
