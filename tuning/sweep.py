r"""Search SONAR's knobs (replay ratio, distillation weights, ...) with Ray Tune; report the Pareto front.

    python tuning/sweep.py --smoke --output outputs/sweep-smoke          # tiny demo, 2 CPUs, a few minutes
    python tuning/sweep.py --output s3://bucket/sweeps/speech --num-samples 64 --max-concurrent-trials 8 \
        -- --domain speech --data s3://... --prior s3://... --probes s3://... --base s3://.../model.pt --use-gpu
    python tuning/sweep.py --output outputs/sweep-smoke --smoke --resume  # continue an interrupted sweep

Flags before `--` configure the search; flags after it (or `--config FILE`) are jobs/adapt.py flags for
the base run every trial starts from. A trial (`sonar_ray.tuning.run_trial`, the library pipeline
`sonar_ray.train.adapt.adapt`) is that run with the sampled knobs, one adaptation paused
at each of `rungs` points (max_steps * r / rungs steps; `--stop-after`, so rung r+1 continues rung r's
run and a trial that completes costs exactly one run of max_steps), evaluated with linear probes at each
pause (on the probe manifest's valid split, `--eval-split`: selection never reads test) and reported to
Tune as `objective = adaptability - alpha * forgetting`, with 95 % intervals over the scored clips.
OptunaSearch (TPE) proposes knobs, ASHA stops trials whose objective is poor at an early rung. After the search:
trials.csv / trials.md (every trial), pareto.csv (completed trials nobody beats on both adaptability
and forgetting), pareto.png, and recommended.json (the completed trial with the best objective, as a
jobs/adapt.py --config file).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sonar_ray import storage
from sonar_ray.cluster import init_ray
from sonar_ray.config import parse_cli, to_dict
from sonar_ray.data.config import POLICIES
from sonar_ray.eval.tasks import EVAL_SPLITS
from sonar_ray.train.config import TrainConfig
from sonar_ray.tuning import REPORTED, rung_steps, run_trial

EXPERIMENT = "tune"  # Tune's folder under --output; fixed, so --resume finds it


@dataclass
class SweepConfig:
    """Ray Tune search over SONAR's knobs; flags after `--` are jobs/adapt.py flags of the base run."""

    output: str = field(default="outputs/sweep", metadata={"help": "output folder/URI (shared by all nodes on a cluster)"})
    smoke: bool = field(default=False, metadata={"help": "tiny demo corpus + tiny base model, 4 short trials (2 CPUs)"})
    num_samples: int = field(default=16, metadata={"help": "trials"})
    rungs: int = field(default=2, metadata={"help": "evaluations per trial (at max_steps*r/rungs steps); 1 = no early stopping"})
    reduction_factor: int = field(default=2, metadata={"help": "ASHA: a trial goes on only if in the best 1/rf at its rung"})
    alpha: float = field(default=1.0, metadata={"help": "objective = adaptability - alpha * forgetting"})
    replay_ratio: list[float] = field(default_factory=lambda: [0.0, 0.8], metadata={"help": "search range [low, high]"})
    lambda_tok: list[float] = field(default_factory=lambda: [0.0, 2.0], metadata={"help": "search range [low, high]"})
    lambda_model: list[float] = field(default_factory=lambda: [0.0, 2.0], metadata={"help": "search range [low, high]"})
    codebook_grow: list[int] = field(default_factory=list, metadata={"help": "choices to search (none: the base run's value)"})
    replay_policy: list[str] = field(default_factory=list, metadata={"help": "choices to search", "choices": POLICIES})
    eval_split: str = field(default="valid", metadata={
        "help": "probe split trials are scored on: valid (selection) | test (final numbers only: never tune on it)",
        "choices": EVAL_SPLITS})
    cpus_per_trial: float = field(default=0.5, metadata={"help": "CPUs of a trial's own process (evaluation); Train workers reserve theirs"})
    max_concurrent_trials: int = field(default=1, metadata={"help": "trials running at once"})
    seed: int = field(default=0, metadata={"help": "seed of the search algorithm"})
    resume: bool = field(default=False, metadata={"help": "continue the sweep found in --output (Tuner.restore)"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address (default: $RAY_ADDRESS or a local Ray)"})

    def __post_init__(self):
        for name in ("replay_ratio", "lambda_tok", "lambda_model"):
            low, high = getattr(self, name)  # exactly two values
            if low > high:
                raise ValueError(f"--{name.replace('_', '-')}: low {low} > high {high}")
        if self.rungs < 1 or self.num_samples < 1 or self.reduction_factor < 2:
            raise ValueError("rungs and num_samples must be >= 1, reduction_factor >= 2")


SMOKE_SWEEP = ["--num-samples", "4", "--rungs", "2"]
SMOKE_RUN = ["--domain", "speech", "--max-steps", "8", "--checkpoint-every", "8", "--log-every", "4",
             "--clip-seconds", "1.0", "--batch-size", "4", "--num-workers", "1", "--no-wandb"]


def parse_args(argv: list[str] | None) -> tuple[SweepConfig, list[str]]:
    """Sweep flags before `--`, adapt flags after it; --smoke puts its defaults before both (flags win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    sweep_argv, adapt_argv = argv[:cut], argv[cut + 1:]
    if "--smoke" in sweep_argv:
        sweep_argv, adapt_argv = SMOKE_SWEEP + sweep_argv, SMOKE_RUN + adapt_argv
    return parse_cli(SweepConfig, sweep_argv, description=__doc__), adapt_argv


def smoke_inputs() -> list[str]:
    """The tiny demo corpus and a tiny base model pre-trained on it (both built once under $SONAR_HOME)."""
    from sonar_ray.demo.inputs import demo_base_model, demo_corpus
    from sonar_ray.train.pretrain import PretrainConfig

    corpus = demo_corpus("tiny")
    base = demo_base_model(corpus, PretrainConfig(preset="tiny", iter1_steps=8, tokenizer_steps=8, iter2_steps=8,
                                                  tokenizer_codes=64, batch_size=4, clip_seconds=1.0, num_workers=1,
                                                  wandb=False, gates=False), name="base-tiny-smoke")
    return ["--data", corpus, "--prior", corpus, "--probes", corpus, "--base", base]


def base_config(cfg: SweepConfig, adapt_argv: list[str]) -> TrainConfig:
    """Every trial's base run: the adapt flags, evaluated (trials are scored) on the sweep's split (which
    wins over the adapt flags' default)."""
    return replace(parse_cli(TrainConfig, adapt_argv), evaluate=True, eval_split=cfg.eval_split)


def search_space(cfg: SweepConfig) -> dict:
    from ray import tune

    space = {name: tune.uniform(*getattr(cfg, name)) for name in ("replay_ratio", "lambda_tok", "lambda_model")}
    if cfg.codebook_grow:
        space["codebook_grow"] = tune.choice(cfg.codebook_grow)
    if cfg.replay_policy:
        space["replay_policy"] = tune.choice(cfg.replay_policy)
    return space


# --- the search (driver) -------------------------------------------------------------------------------


def build_tuner(cfg: SweepConfig, base: TrainConfig):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch
    import optuna

    setup = {"base": to_dict(base), "trials": storage.join(cfg.output, "trials"), "rungs": cfg.rungs, "alpha": cfg.alpha}
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), {"CPU": cfg.cpus_per_trial})
    path = storage.join(cfg.output, EXPERIMENT)
    if tune.Tuner.can_restore(path):
        if not cfg.resume:
            raise FileExistsError(f"{path} already holds a sweep: pass --resume to continue it, or choose another --output")
        print(f"[sweep] resuming {path}", flush=True)
        return tune.Tuner.restore(path, trainable, resume_errored=True)
    scheduler = None
    if cfg.rungs > 1:  # stop poor trials after their first rung
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=cfg.rungs, grace_period=1,
                                  reduction_factor=cfg.reduction_factor)
    return tune.Tuner(
        trainable, param_space=search_space(cfg),
        tune_config=tune.TuneConfig(metric="objective", mode="max", num_samples=cfg.num_samples,
                                    search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=cfg.seed)),
                                    scheduler=scheduler, max_concurrent_trials=cfg.max_concurrent_trials,
                                    trial_name_creator=lambda t: t.trial_id, trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=cfg.output))


def trials_table(results, rungs: int, split: str) -> pd.DataFrame:
    """One row per trial: knobs, status (complete | stopped | error), the probe split scored, metrics of its last rung."""
    rows = []
    for r in results:
        m = r.metrics or {}
        status = "error" if r.error else ("complete" if m.get("rung") == rungs else "stopped")
        rows.append({"trial": r.path.rstrip("/").rsplit("/", 1)[-1], "status": status, **r.config, "eval_split": split,
                     **{k: m.get(k, float("nan")) for k in ("rung", "steps", *REPORTED)}})
    return pd.DataFrame(rows).sort_values(["objective", "trial"], ascending=[False, True], na_position="last",
                                          ignore_index=True)


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Rows no other row beats on both axes (adaptability higher, forgetting lower; at least one strictly)."""
    a, f = df["adaptability"].to_numpy(), df["forgetting"].to_numpy()
    keep = [not ((a >= a[i]) & (f <= f[i]) & ((a > a[i]) | (f < f[i]))).any() for i in range(len(df))]
    return df[keep].sort_values(["forgetting", "trial"], ignore_index=True)


def _interval_bars(ax, rows: pd.DataFrame, color: str, label: str | None = None) -> None:
    """Error bars of each trial's 95 % clip intervals: forgetting's, and the adaptability gain's shifted onto
    the adaptability axis (the base's score is the same clips' for every trial); none where NaN."""
    rows = rows.dropna(subset=["forgetting_lo", "forgetting_hi", "adaptability_gain_lo", "adaptability_gain_hi"])
    shift = rows["adaptability"] - rows["adaptability_gain"]
    xerr = [rows["forgetting"] - rows["forgetting_lo"], rows["forgetting_hi"] - rows["forgetting"]]
    yerr = [rows["adaptability"] - (shift + rows["adaptability_gain_lo"]),
            shift + rows["adaptability_gain_hi"] - rows["adaptability"]]
    ax.errorbar(rows["forgetting"], rows["adaptability"], xerr=xerr, yerr=yerr, fmt="none", ecolor=color,
                alpha=0.4, lw=1, label=label)


def pareto_plot(table: pd.DataFrame, front: pd.DataFrame, best: dict, alpha: float, split: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done, stopped = table[table["status"] == "complete"], table[table["status"] == "stopped"]
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    _interval_bars(ax, done, "tab:blue", label=f"95 % interval over {split} clips, one seed")
    _interval_bars(ax, front, "tab:red")
    ax.scatter(stopped["forgetting"], stopped["adaptability"], facecolors="none", edgecolors="0.6",
               label=f"stopped early ({len(stopped)})")
    ax.scatter(done["forgetting"], done["adaptability"], color="tab:blue", alpha=0.6, label=f"completed ({len(done)})")
    ax.step(front["forgetting"], front["adaptability"], where="post", color="tab:red", lw=1.5)
    ax.scatter(front["forgetting"], front["adaptability"], color="tab:red", zorder=3, label=f"Pareto front ({len(front)})")
    ax.scatter([best["forgetting"]], [best["adaptability"]], marker="*", s=250, color="gold", edgecolors="k",
               zorder=4, label=f"recommended (max adapt. - {alpha:g} x forg.)")
    ax.scatter([0.0], [best["adaptability_base"]], marker="s", color="k", label="base model")
    ax.set_xlabel("forgetting (prior tasks, base - adapted; lower is better)")
    ax.set_ylabel("adaptability (new-domain probe score)")
    ax.set_title(f"{len(table)} trials; bars: 95 % interval over {split} clips, one seed", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))  # outside: never hides a point
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def recommended_trial(front: pd.DataFrame) -> dict:
    """The Pareto trial with the best objective; ties: the first in the front's order (least forgetting,
    then trial id). to_dict: native Python values."""
    return front.to_dict(orient="records")[int(front["objective"].to_numpy().argmax())]


def write_outputs(cfg: SweepConfig, base: TrainConfig, table: pd.DataFrame) -> dict:
    from sonar_ray.eval.report import markdown

    done = table[table["status"] == "complete"]
    if done.empty:
        raise RuntimeError(f"no trial completed; see {storage.join(cfg.output, EXPERIMENT)}:\n{markdown(table)}")
    front = pareto_front(done)
    best = recommended_trial(front)
    recommended = replace(base, **{k: best[k] for k in search_space(cfg)}, output=None, resume=False, stop_after=None,
                          eval_split="test")  # chosen on valid; the config a user runs reports test
    files = {"trials.csv": table.to_csv(index=False).encode(), "trials.md": (markdown(table) + "\n").encode(),
             "pareto.csv": front.to_csv(index=False).encode(),
             "pareto.png": pareto_plot(table, front, best, cfg.alpha, cfg.eval_split),
             "recommended.json": json.dumps(to_dict(recommended), indent=2, sort_keys=True).encode()}
    for name, data in files.items():
        storage.write_bytes_atomic(storage.join(cfg.output, name), data)
    return {"output": cfg.output, "trials": table, "pareto": front, "recommended_trial": best["trial"],
            "recommended": storage.join(cfg.output, "recommended.json")}


def main(argv: list[str] | None = None) -> dict:
    from sonar_ray.eval.report import markdown
    from sonar_ray.train import inputs

    cfg, adapt_argv = parse_args(argv)
    if not storage.is_remote(cfg.output):
        cfg = replace(cfg, output=str(Path(cfg.output).resolve()))
    init_ray(cfg.ray_address)
    if cfg.smoke:
        adapt_argv = smoke_inputs() + adapt_argv
    # Every trial is scored by evaluation, so the base run needs its probes (checked here, before any trial).
    base, _ = inputs.resolve(base_config(cfg, adapt_argv))
    rung_steps(base.max_steps, cfg.rungs)  # fail early on too few steps
    print(f"[sweep] {cfg.num_samples} trials x {cfg.rungs} rungs (up to {base.max_steps} steps) of {base.method} "
          f"on {base.domain!r}, scored on the {cfg.eval_split} split: {json.dumps(asdict(cfg))}", flush=True)

    results = build_tuner(cfg, base).fit()
    table = trials_table(results, cfg.rungs, cfg.eval_split)
    out = write_outputs(cfg, base, table)
    print("\n" + markdown(out["pareto"]) + f"\n\n[sweep] recommended trial {out['recommended_trial']}: "
          f"{out['recommended']}  (python jobs/adapt.py --config {out['recommended']} --output DIR)", flush=True)
    return out


if __name__ == "__main__":
    main()
