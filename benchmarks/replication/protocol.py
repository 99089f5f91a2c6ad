"""The replication protocol: its config, the arms (methods and ablations) and the plan of runs, each a
typed `TrainConfig` (continual methods, `sonar_ray.train.adapt.adapt`) or `PretrainConfig` (the base
model and the from-scratch baseline, `sonar_ray.train.pretrain.pretrain`); and which probe split is scored."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from sonar_ray import storage
from sonar_ray.config import from_dict, load_file
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.pretrain import PretrainConfig

# The continual arms: TrainConfig fields of each (applied last, so they win over the common settings).
METHODS = {
    "dcpt": {"method": "dcpt"},
    # The LR-damage control: DCPT's steps and LR on prior data only. Forgetting measured against it is
    # what domain shift costs beyond what continued training at that LR costs anyway.
    "dcpt_prior": {"method": "dcpt", "domain": "prior"},
    # Joint sampling alone: no distillation, no codebook change.
    "replay_only": {"method": "sonar", "lambda_tok": 0.0, "lambda_model": 0.0, "codebook_reanchor": False,
                    "codebook_grow": 0},
    "sonar": {"method": "sonar"},  # library defaults: both distillation terms read the replayed clips only
    "sonar_distill_all": {"method": "sonar", "distill_scope_tok": "all", "distill_scope_model": "all"},
    "sonar_uniform_replay": {"method": "sonar", "replay_policy": "uniform"},
    "sonar_no_tok_distill": {"method": "sonar", "lambda_tok": 0.0},
    "sonar_no_model_distill": {"method": "sonar", "lambda_model": 0.0},
    "sonar_no_codebook": {"method": "sonar", "codebook_reanchor": False, "codebook_grow": 0},
}
SCRATCH = "scratch"  # pre-training from random init on prior + new data (the retrain baseline)
# The confirmation arm: `sonar` with a sweep's recommended knobs (tuning/sweep.py, chosen on valid clips),
# at the protocol's steps, LR and data; run when `tuned` names the sweep's recommended.json.
TUNED = "sonar_tuned"
TUNED_KNOBS = ("replay_ratio", "lambda_tok", "lambda_model", "codebook_grow", "replay_policy")  # what a sweep searches
ARMS = (*METHODS, TUNED, SCRATCH)  # report order
REFERENCES = ("random_init", "base")


@dataclass
class ReplicateConfig:
    """Replication of the paper's single-domain table and sequential stream (see benchmarks/replicate.py)."""

    # --- where
    work: str = field(default="outputs/replicate", metadata={"help": "runs, embeddings cache and results JSON"})
    page: str = field(default="docs/results.md", metadata={"help": "Markdown results page (PNGs go to <page stem>/)"})
    corpus: str | None = field(default=None, metadata={"help": "corpus root (default: generate the demo corpus under work)"})
    corpus_scale: str = field(default="demo", metadata={"help": "scale of the generated corpus: tiny | demo | replicate | large"})
    base: str | None = field(default=None, metadata={"help": "existing base model.pt (tokenizer.pt beside it); default: pre-train one"})
    # --- base / from-scratch pre-training (sonar_ray.train.pretrain)
    preset: str = field(default="small", metadata={"help": "BEATs preset of pre-trained models"})
    pretrain_iter1_steps: int = field(default=300, metadata={"help": "iteration-1 steps"})
    pretrain_tokenizer_steps: int = field(default=60, metadata={"help": "tokenizer steps"})
    pretrain_iter2_steps: int = field(default=200, metadata={"help": "iteration-2 steps"})
    pretrain_lr: float = field(default=5e-4, metadata={"help": "pre-training peak learning rate"})
    tokenizer_codes: int = field(default=256, metadata={"help": "codes of the trained tokenizer"})
    pretrain_gates: bool = field(default=True, metadata={"help": "stop when pre-training fails its health gates (jobs/pretrain.py --gates)"})
    # --- adaptation (sonar_ray.train.adapt)
    domains: list[str] = field(default_factory=lambda: ["bioacoustics"], metadata={"help": "domains of the single-domain table"})
    methods: list[str] = field(default_factory=lambda: [*METHODS, SCRATCH], metadata={"help": f"of {[*METHODS, SCRATCH]}"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "adaptation seeds (the base is shared)"})
    extra_seeds: list[int] = field(default_factory=list, metadata={"help": "further seeds of extra_seed_methods only"})
    extra_seed_methods: list[str] = field(default_factory=lambda: ["dcpt", "replay_only", "sonar"],
                                          metadata={"help": "the arms the claims rest on, run with seeds + extra_seeds"})
    scratch_seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "seeds of from-scratch runs"})
    adapt_steps: int = field(default=150, metadata={"help": "adaptation steps"})
    adapt_lr: float = field(default=2e-3, metadata={"help": "adaptation peak learning rate"})
    adapt_warmup: int = field(default=10, metadata={"help": "adaptation warm-up steps"})
    replay_ratio: float = field(default=0.5, metadata={"help": "SONAR replay share"})
    codebook_grow: int = field(default=32, metadata={"help": "SONAR codebook expansion (codes)"})
    adapt_config: str | None = field(default=None, metadata={
        "help": "a jobs/adapt.py --config file (JSON/YAML) of further settings for every adaptation run"})
    tuned: str | None = field(default=None, metadata={
        "help": f"a sweep's recommended.json: adds the {TUNED} arm (sonar with its {', '.join(TUNED_KNOBS)}) per seed and domain"})
    # --- sequential stream
    sequence: list[str] = field(default_factory=lambda: ["speech", "music", "bioacoustics", "environmental"],
                                metadata={"help": "domains in stream order ([] = no stream)"})
    sequence_methods: list[str] = field(default_factory=lambda: ["sonar", "dcpt"], metadata={"help": "methods of the stream"})
    sequence_seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds of the stream"})
    # --- shared
    batch_size: int = field(default=16, metadata={"help": "clips per worker per step"})
    clip_seconds: float = field(default=2.0, metadata={"help": "training crop length"})
    num_workers: int = field(default=2, metadata={"help": "Ray Train workers"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker"})
    log_every: int = field(default=25, metadata={"help": "steps between metric reports"})
    eval_split: str = field(default="test", metadata={"help": "valid (protocol design) | test (final)", "choices": ("valid", "test")})
    probe_repeats: int = field(default=1, metadata={"help": "probe fits on train resamples (1: the exact train split, "
                                                             "which the paired test-clip intervals need)"})
    drift_clips: int = field(default=200, metadata={"help": "held-out clips per domain of the CKA distance from the base"})
    bootstrap_draws: int = field(default=2000, metadata={"help": "draws of the paired bootstrap over test clips and seeds"})
    train: bool = field(default=True, metadata={"help": "train missing runs (--no-train: report the finished ones)"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster (default: $RAY_ADDRESS or local)"})

    def __post_init__(self):
        unknown = (sorted(set(self.methods) - set(METHODS) - {SCRATCH})
                   + sorted(set(self.sequence_methods) - set(METHODS)) + sorted(set(self.extra_seed_methods) - set(METHODS)))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {[*METHODS, SCRATCH]}")
        if self.tuned:
            tuned_knobs(self.tuned)  # a missing or unreadable file fails here, not after hours of other runs


def tuned_knobs(uri: str) -> dict:
    """The searched knobs a sweep's recommended.json holds (those of TUNED_KNOBS it has)."""
    try:
        recommended = load_file(uri)
    except Exception as e:  # missing, unreadable or not JSON/YAML: all the same to the user
        raise ValueError(f"--tuned {uri}: cannot read a sweep's recommended.json ({e})") from e
    knobs = {k: recommended[k] for k in TUNED_KNOBS if k in recommended} if isinstance(recommended, dict) else {}
    if not knobs:
        raise ValueError(f"--tuned {uri}: holds none of {TUNED_KNOBS}; is it a sweep's recommended.json?")
    return knobs


def arm(cfg: ReplicateConfig, method: str) -> dict:
    """The TrainConfig fields of an arm: METHODS', or for TUNED sonar's with the sweep's knobs on top."""
    return {**METHODS["sonar"], **tuned_knobs(cfg.tuned)} if method == TUNED else METHODS[method]


@dataclass
class Run:
    """One model to train into `config.output` (work/runs/<id>)."""

    id: str
    method: str
    seed: int
    domain: str                               # the new domain ("prior" for the base model)
    config: TrainConfig | PretrainConfig      # adapt(config) or pretrain(config)

    @property
    def output(self) -> str:
        return self.config.output


def run_output(cfg: ReplicateConfig, run_id: str) -> str:
    return storage.join(cfg.work, "runs", run_id)


def pretrain_run(cfg: ReplicateConfig, run_id: str, method: str, seed: int, data: str, domain: str = "prior") -> Run:
    """Iteration 1, tokenizer, iteration 2 from random init on `data` (its rows labelled "prior")."""
    return Run(run_id, method, seed, domain, PretrainConfig(
        data=data, domain="prior", output=run_output(cfg, run_id), preset=cfg.preset, seed=seed,
        iter1_steps=cfg.pretrain_iter1_steps, tokenizer_steps=cfg.pretrain_tokenizer_steps,
        iter2_steps=cfg.pretrain_iter2_steps, tokenizer_codes=cfg.tokenizer_codes, lr=cfg.pretrain_lr,
        gates=cfg.pretrain_gates, batch_size=cfg.batch_size, clip_seconds=cfg.clip_seconds,
        num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resume=True, wandb=False, ray_address=cfg.ray_address))


def adapt_run(cfg: ReplicateConfig, run_id: str, method: str, seed: int, corpus: str, replay: str, domain: str,
              base: str) -> Run:
    """`method` from `base` on the corpus's `domain` rows, replaying `replay`; evaluated by the report."""
    common = {"domain": domain, "data": corpus, "prior": replay, "probes": corpus, "base": base,
              "output": run_output(cfg, run_id), "seed": seed, "max_steps": cfg.adapt_steps, "lr": cfg.adapt_lr,
              "warmup_steps": cfg.adapt_warmup, "log_every": cfg.log_every,
              "checkpoint_every": max(1, cfg.adapt_steps // 2), "evaluate": False, "batch_size": cfg.batch_size,
              "clip_seconds": cfg.clip_seconds, "num_workers": cfg.num_workers, "use_gpu": cfg.use_gpu,
              "resume": True, "wandb": False, "ray_address": cfg.ray_address}
    further = load_file(cfg.adapt_config) if cfg.adapt_config else {}
    fields = arm(cfg, method)
    sonar = ({} if fields["method"] == "dcpt"  # DCPT: no replay, no growth
             else {"replay_ratio": cfg.replay_ratio, "codebook_grow": cfg.codebook_grow})
    return Run(run_id, method, seed, domain, from_dict(TrainConfig, {**common, **further, **sonar, **fields}))


def base_run(cfg: ReplicateConfig, corpus: str) -> Run:
    return pretrain_run(cfg, "base", "base", 0, corpus)


def write_manifest(work: str, corpus: str, name: str, domains: dict[str, str]) -> str:
    """A train manifest of the corpus rows of `domains` ({domain: label to give them}), absolute URIs."""
    from sonar_ray.data import load_source

    uri = storage.join(work, "manifests", f"{name}.jsonl")
    if not storage.exists(uri):
        rows = pd.concat([load_source(corpus, d).assign(domain=label) for d, label in domains.items()])
        lines = [json.dumps({"path": u, "domain": d, "duration": float(t)})
                 for u, d, t in zip(rows["uri"], rows["domain"], rows["duration"])]
        storage.write_bytes_atomic(uri, ("\n".join(lines) + "\n").encode())
    return uri


def plan(cfg: ReplicateConfig, corpus: str, base_model: str) -> list[Run]:
    """Every run, seed by seed (so a stopped run leaves complete seeds), then the streams."""
    runs = []
    for seed in [*cfg.seeds, *cfg.extra_seeds]:
        methods = [m for m in cfg.methods if m != SCRATCH and (seed in cfg.seeds or m in cfg.extra_seed_methods)]
        if cfg.tuned and seed in cfg.seeds:
            methods.append(TUNED)
        for domain in cfg.domains:
            runs += [adapt_run(cfg, f"{m}/{domain}-s{seed}", m, seed, corpus, corpus, domain, base_model)
                     for m in methods]
            if SCRATCH in cfg.methods and seed in cfg.scratch_seeds:
                # Both domains' rows labelled "prior": pre-training reads one domain.
                data = write_manifest(cfg.work, corpus, f"prior+{domain}", {"prior": "prior", domain: "prior"})
                runs.append(pretrain_run(cfg, f"{SCRATCH}/{domain}-s{seed}", SCRATCH, seed, data, domain))
    for seed in cfg.sequence_seeds:
        for method in cfg.sequence_methods:
            model, seen = base_model, ["prior"]
            for i, domain in enumerate(cfg.sequence):
                # SONAR replays the prior data and every domain adapted to before this stage.
                replay = corpus if i == 0 else write_manifest(cfg.work, corpus, "replay-" + "+".join(seen[1:]),
                                                              {d: "prior" for d in seen})
                run_id = f"{method}/{domain}-s{seed}" if i == 0 else f"seq-{method}-s{seed}/{i}-{domain}"
                run = adapt_run(cfg, run_id, method, seed, corpus, replay, domain, model)
                runs.append(run)
                model = storage.join(run.output, "model.pt")
                seen.append(domain)
    return list({r.id: r for r in runs}.values())  # a stream's stage 0 is the single-domain run


def probe_tasks(corpus: str, split: str):
    """The corpus's probe tasks as the protocol sees them (`sonar_ray.eval.tasks.load_tasks`'s `split`)."""
    from sonar_ray.eval.tasks import load_tasks

    return load_tasks(corpus, split=split)
