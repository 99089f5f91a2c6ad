"""The one config of a (continual) pre-training run: what `jobs/adapt.py` and `jobs/pretrain.py` parse."""

from __future__ import annotations

from dataclasses import dataclass, field

from sonar_ray.config import check_choices
from sonar_ray.data.config import DataConfig
from sonar_ray.data.pool import EmbedPool
from sonar_ray.eval.tasks import EVAL_SPLITS

METHODS = ("sonar", "dcpt", "scratch")
DISTILL_SCOPES = ("all", "replay", "new")  # which clips of a batch a distillation term applies to

# What each method is: the values it fixes, written into the config so run_config.json and summary.json
# record what ran. DCPT replays and distils nothing and keeps its codebook as it is; training from
# scratch has no teacher to distil from (it may replay: the retrain baseline on prior + new data).
METHOD_FIXES = {
    "sonar": {},
    "dcpt": {"replay_ratio": 0.0, "lambda_tok": 0.0, "lambda_model": 0.0, "codebook_reanchor": False,
             "codebook_grow": 0},
    "scratch": {"lambda_tok": 0.0, "lambda_model": 0.0, "codebook_reanchor": False, "codebook_grow": 0},
}
# The default of each knob above where the method leaves it free. These fields default to None ("not
# given"), so a method's fixed value is told apart from a value the user asked for.
KNOB_DEFAULTS = {"replay_ratio": 0.5, "lambda_tok": 1.0, "lambda_model": 1.0, "codebook_reanchor": True}


def _help(text: str, **extra) -> dict:
    return {"metadata": {"help": text, **extra}}


def _knob(name: str, text: str) -> dict:
    """A knob a method may fix: None until __post_init__ writes the method's value or the default."""
    fixed = ", ".join(f"{m}: {fix[name]!r}" for m, fix in METHOD_FIXES.items() if name in fix)
    return {"default": None, "metadata": {"help": f"{text}; fixed by the method ({fixed})",
                                          "shown_default": repr(KNOB_DEFAULTS[name])}}


@dataclass
class TrainConfig:
    """Continual pre-training of a BEATs model (SONAR, DCPT, or from scratch)."""

    # --- what to train on
    domain: str = field(default="speech", **_help("new domain to adapt to"))
    method: str = field(default="sonar", **_help("sonar | dcpt | scratch", choices=METHODS))
    demo: bool = field(default=False, **_help(
        "fill every input not given (--data, --prior, --probes, --base) from the demo corpus and demo base model; "
        "implied when none of them is given"))
    data: str | None = field(default=None, **_help("new-domain audio: folder/prefix or manifest URI"))
    prior: str | None = field(default=None, **_help(
        "prior (replay) audio: folder/prefix or manifest URI (not needed without replay: --replay-ratio 0)"))
    base: str | None = field(default=None, **_help("starting BEATs checkpoint (not needed for --method scratch)"))
    base_tokenizer: str | None = field(default=None, **_help("starting tokenizer checkpoint (default: tokenizer.pt beside --base)"))
    output: str | None = field(default=None, **_help("output folder/URI (default: outputs/<method>-<domain>)"))
    probes: str | None = field(default=None, **_help(
        "corpus root with manifests/probes.jsonl for evaluation (not needed with --no-evaluate)"))

    # --- SONAR knobs
    replay_ratio: float | None = field(**_knob("replay_ratio", "share of prior clips in each batch"))
    replay_policy: str = field(default="relevance", **_help("uniform | relevance", choices=("uniform", "relevance")))
    num_strata: int = field(default=8, **_help("k-means strata of the prior set"))
    replay_max_oversample: float = field(default=DataConfig.max_oversample, **_help(
        "relevance replay: cap on how much more often a prior clip is replayed than under uniform replay (>= 1)"))
    lambda_tok: float | None = field(**_knob(
        "lambda_tok", "weight of tokenizer-level distillation: KL from the teacher's predicted code distribution (README)"))
    lambda_model: float | None = field(**_knob("lambda_model", "weight of model-level (feature) distillation"))
    # Default by measurement (README, "Distillation scope"): replay-only let the new domain move more
    # with no loss on the prior, on held-out masked prediction.
    distill_scope_tok: str = field(default="replay", **_help(
        "clips the tokenizer-level term applies to: replay (prior clips) | all | new", choices=DISTILL_SCOPES))
    distill_scope_model: str = field(default="replay", **_help(
        "clips the model-level term applies to: replay (prior clips) | all | new", choices=DISTILL_SCOPES))
    distill_kind: str = field(default="cosine", **_help("feature distance", choices=("cosine", "mse")))
    distill_layers: list[int] = field(default_factory=lambda: [-1], **_help("encoder layers to distill"))
    codebook_reanchor: bool | None = field(**_knob("codebook_reanchor", "re-anchor under-used codes toward new-domain features"))
    codebook_grow: int = field(default=0, **_help(
        "codes to add at the start when the new domain is quantized 1.2x worse than the prior (0 = never; sonar only)"))
    codebook_max_codes: int = field(default=4096, **_help("growth never takes the codebook past this many codes"))

    # --- model / objective
    preset: str = field(default="small", **_help("BEATs preset for --method scratch"))
    mask_ratio: float = field(default=0.75, **_help("share of patches masked"))
    num_codes: int = field(default=1024, **_help("random-projection tokenizer codes (scratch without a tokenizer)"))
    clip_seconds: float = field(default=1.6, **_help("crop length of training clips"))

    # --- optimisation
    max_steps: int = field(default=100, **_help("optimizer steps"))
    stop_after: int | None = field(default=None, **_help(
        "pause after this many steps (checkpointed, model exported); the schedule still spans max_steps, "
        "so --resume with a larger value continues the same run (Tune rungs)"))
    batch_size: int = field(default=16, **_help("clips per worker per step"))
    lr: float = field(default=2e-4, **_help("peak learning rate"))
    warmup_steps: int = field(default=10, **_help("linear warm-up steps"))
    weight_decay: float = field(default=0.01, **_help("AdamW weight decay"))
    grad_clip: float = field(default=1.0, **_help("max gradient norm"))
    seed: int = field(default=0, **_help("seed for init, masking and sampling"))

    # --- distribution, checkpoints, logging
    num_workers: int = field(default=2, **_help("Ray Train workers"))
    use_gpu: bool = field(default=False, **_help("train on GPUs (NCCL + bf16 autocast)"))
    gpus_per_worker: float = field(default=1.0, **_help("GPUs per worker with --use-gpu (< 1 shares a GPU, e.g. 0.5 = two Tune trials per GPU)"))
    cpus_per_worker: float = field(default=0.5, **_help("CPUs reserved per worker (< 1 avoids starving Ray Data on small machines)"))
    checkpoint_every: int = field(default=50, **_help("steps between checkpoints"))
    max_failures: int = field(default=2, **_help("worker-group restarts after a failure"))
    resume: bool = field(default=False, **_help("continue the run found in --output"))
    log_every: int = field(default=10, **_help("steps between metric reports"))
    wandb: bool = field(default=True, **_help("log to wandb (offline unless WANDB_MODE says otherwise)"))
    wandb_project: str = field(default="sonar-ray", **_help("wandb project"))
    evaluate: bool = field(default=True, **_help("evaluate the adapted model against its base at the end"))
    eval_split: str = field(default="test", **_help(
        "probe split the evaluation scores: test (final numbers) | valid (selection: tuning never reads test)",
        choices=EVAL_SPLITS))
    eval_other_domains: bool = field(default=False, **_help(
        "also probe the probe corpus's other domains (generality); off: the new domain and prior tasks only"))
    embed_pool: EmbedPool = field(default_factory=EmbedPool, **_help(
        "actor pool of the inspection pass and the evaluation embedding"))
    ray_address: str | None = field(default=None, **_help("Ray cluster address (default: $RAY_ADDRESS or a local Ray)"))

    def __post_init__(self):
        check_choices(self)
        for name, value in METHOD_FIXES[self.method].items():
            given = getattr(self, name)
            if given is not None and given != value:
                raise ValueError(f"--method {self.method} runs with --{name.replace('_', '-')} {value!r}; "
                                 f"{given!r} was given: drop it, or use --method sonar")
            setattr(self, name, value)
        for name, value in KNOB_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if not 0.0 <= self.replay_ratio < 1.0:
            raise ValueError(f"replay_ratio must be in [0, 1), got {self.replay_ratio}")
        at_least = {"max_steps": 1, "batch_size": 1, "num_workers": 1, "checkpoint_every": 1, "log_every": 1,
                    "num_strata": 1, "num_codes": 1, "warmup_steps": 0, "max_failures": 0, "codebook_grow": 0}
        for name, low in at_least.items():
            if not getattr(self, name) >= low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        for name in ("lr", "clip_seconds", "grad_clip", "cpus_per_worker", "gpus_per_worker"):
            if not getattr(self, name) > 0:  # also rejects NaN
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"--mask-ratio must be in (0, 1), got {self.mask_ratio}")
        if not (self.lambda_tok >= 0 and self.lambda_model >= 0 and self.weight_decay >= 0):
            raise ValueError("--lambda-tok, --lambda-model and --weight-decay must be >= 0")
        if self.codebook_max_codes < 1:
            raise ValueError(f"codebook_max_codes must be >= 1, got {self.codebook_max_codes}")
        if self.replay_max_oversample < 1.0:
            raise ValueError(f"replay_max_oversample must be >= 1, got {self.replay_max_oversample}")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.max_steps:
            raise ValueError(f"stop_after must be in [1, max_steps={self.max_steps}], got {self.stop_after}")
        if self.replay_ratio > 0:  # the sampler puts exactly round(ratio x batch) prior clips in a batch
            prior = round(self.replay_ratio * self.batch_size)
            if not 0 < prior < self.batch_size:
                raise ValueError(
                    f"--replay-ratio {self.replay_ratio} x --batch-size {self.batch_size} rounds to {prior} prior "
                    f"clips per batch: {'no replay at all' if prior == 0 else 'no new-domain clip at all'}; "
                    "change the ratio or the batch size")

    @property
    def end_step(self) -> int:
        """Where this invocation stops: `stop_after` or the end of the schedule."""
        return self.max_steps if self.stop_after is None else self.stop_after

    @property
    def uses_teacher(self) -> bool:
        return self.method == "sonar" and (self.lambda_tok > 0 or self.lambda_model > 0)
