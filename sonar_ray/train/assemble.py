"""What a training worker trains and how it lands on disk: `build_models` from a run's files, and
`write_checkpoint` (the three model files in their own formats plus the trainer state) back.

`paths` holds the starting model's base / tokenizer / predictor and, when the run resumes from its
own checkpoint, student / student_tokenizer / student_predictor (`resume_paths`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sonar_ray.models import beats
from sonar_ray.models.tokenizer import LabelTokenizer
from sonar_ray.objectives.codebook import OnlineCodebook, record_usage, recorded_usage
from sonar_ray.objectives.masked_prediction import MaskedTokenModel
from sonar_ray.objectives.predictor import LabelPredictor
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig


@dataclass
class Models:
    student: MaskedTokenModel            # BEATs encoder + label predictor (trained)
    tokenizer: LabelTokenizer            # label source; SONAR re-anchors / grows an adaptable codebook
    teacher: beats.BEATs | None = None   # frozen starting model (SONAR)
    teacher_tokenizer: LabelTokenizer | None = None  # frozen starting tokenizer (SONAR)
    teacher_predictor: LabelPredictor | None = None  # frozen starting predictor (SONAR, lambda_tok > 0)
    codebook: OnlineCodebook | None = None


def _frozen(m: nn.Module) -> nn.Module:
    return m.eval().requires_grad_(False)


def build_models(cfg: TrainConfig, paths: dict, device: torch.device) -> Models:
    """Student, tokenizer and (SONAR) frozen teacher, on `device`.

    `paths` holds the starting model's base / tokenizer / predictor and, when this run resumes from
    its checkpoint, student / student_tokenizer / student_predictor. The teacher is always built
    from the starting files, so a restart, --resume or a Tune rung never makes it the student's.
    """
    if paths.get("student"):  # resuming this run
        encoder = beats.load_checkpoint(paths["student"])
    elif cfg.method == "scratch" and not paths.get("base"):
        torch.manual_seed(cfg.seed)
        encoder = beats.BEATs(beats.BEATsConfig.preset(cfg.preset))
    else:
        encoder = beats.load_checkpoint(paths["base"])
    tokenizer = _label_tokenizer(cfg, paths.get("student_tokenizer") or paths.get("tokenizer"))
    K = tokenizer.num_codes
    predictor_uri = paths.get("student_predictor") or (paths.get("predictor") if cfg.method != "scratch" else None)
    if predictor_uri:
        predictor = artifacts.load_predictor(predictor_uri)
    else:
        torch.manual_seed(cfg.seed + 1)
        predictor = artifacts.new_predictor(encoder.cfg.encoder_embed_dim, K)
    if predictor.num_codes != K:
        raise ValueError(f"predictor has {predictor.num_codes} codes but the tokenizer has {K}")
    models = Models(student=MaskedTokenModel(encoder, predictor, cfg.mask_ratio), tokenizer=_frozen(tokenizer))
    if cfg.method == "sonar":
        if cfg.uses_teacher:
            # Built from the checkpoints, not deep-copied: weight-norm modules don't deepcopy reliably.
            models.teacher = _frozen(beats.load_checkpoint(paths["base"]))
            models.teacher_tokenizer = _frozen(_label_tokenizer(cfg, paths.get("tokenizer")))
        if cfg.lambda_tok > 0:
            if not paths.get("predictor"):
                raise ValueError("tokenizer-level distillation (lambda_tok > 0) needs the starting model's "
                                 "predictor.pt beside --base; pass --lambda-tok 0 to train without it")
            models.teacher_predictor = _frozen(artifacts.load_predictor(paths["predictor"]))
        if (cfg.codebook_reanchor or cfg.codebook_grow) and tokenizer.adaptable:
            # Usage recorded by a previous stage, or zeros until survey_codebook measures the prior's.
            models.codebook = OnlineCodebook(K, usage=recorded_usage(tokenizer.quantize))
    for m in (models.student, models.tokenizer, models.teacher, models.teacher_tokenizer, models.teacher_predictor,
              models.codebook):
        if m is not None:
            m.to(device)
    return models


def _label_tokenizer(cfg: TrainConfig, uri: str | None) -> LabelTokenizer:
    return artifacts.load_label_tokenizer(uri) if uri else artifacts.new_random_projection(cfg.num_codes, cfg.seed)


def write_checkpoint(dir_: Path, models: Models, optimizer, scheduler, step: int, metrics_file: Path) -> None:
    """model.pt, tokenizer.pt (with the code usage the run ends with), predictor.pt, trainer_state.pt and
    the metrics so far, into the folder a Ray Train checkpoint is made from."""
    beats.save_checkpoint(models.student.encoder, str(dir_ / artifacts.MODEL))
    if models.codebook is not None:  # the next stage (or a restart) starts from this usage
        record_usage(models.tokenizer.quantize, models.codebook.usage)
    models.tokenizer.save(str(dir_ / artifacts.TOKENIZER))
    artifacts.save_predictor(models.student.predictor, str(dir_ / artifacts.PREDICTOR))
    artifacts.save_torch({
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }, str(dir_ / artifacts.TRAINER_STATE))
    if metrics_file.exists():
        (dir_ / "metrics.jsonl").write_bytes(metrics_file.read_bytes())


def resume_paths(checkpoint_dir: str, paths: dict) -> tuple[dict, dict]:
    """A restored checkpoint -> (trainer state, `paths` with the student's files from it). The teacher
    stays built from the starting files in `paths`, untouched."""
    d = Path(checkpoint_dir)
    state = artifacts.load_torch(str(d / artifacts.TRAINER_STATE))
    return state, {**paths, "student": str(d / artifacts.MODEL), "student_tokenizer": str(d / artifacts.TOKENIZER),
                   "student_predictor": str(d / artifacts.PREDICTOR)}
