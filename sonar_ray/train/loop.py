"""`train_loop_per_worker`: what each Ray Train worker runs for SONAR, DCPT and from-scratch training.

Per step: the student predicts the current tokenizer's codes of masked patches; under SONAR a frozen
teacher (the starting model, its tokenizer and its predictor, whatever restarts happened) adds a
tokenizer-level and a model-level distillation term, and the student's tokenizer re-anchors unused
codes toward the new domain.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import ray.train
import ray.train.torch
from torch import nn

from sonar_ray import storage
from sonar_ray.config import from_dict
from sonar_ray.data import iter_train_batches
from sonar_ray.models import beats
from sonar_ray.objectives.codebook import (OnlineCodebook, assign, grow_tokenizer, new_codes, record_usage,
                                           recorded_usage)
from sonar_ray.objectives.distill import feature_distill_loss, token_distill_loss
from sonar_ray.objectives.masked_prediction import MaskedTokenModel
from sonar_ray.objectives.masking import gather_patches
from sonar_ray.objectives.predictor import LabelPredictor
from sonar_ray.objectives.random_projection import RandomProjectionTokenizer
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.metrics import MetricsLogger
from sonar_ray.train.schedule import build_optimizer, warmup_cosine

PROGRESS = "progress.json"  # {"safe_step": N}: where a restarted data stream may begin
SURVEY_BATCHES = 8  # first batches per rank that measure prior code usage and decide growth
GROW_MARGIN = 1.2   # grow when new-domain patches are quantized this much worse than prior ones
SHARED_CODE_COS = 0.99  # a student code this close to the teacher's same-index code still means the same


@dataclass
class Models:
    student: MaskedTokenModel            # BEATs encoder + label predictor (trained)
    tokenizer: nn.Module                 # label source; SONAR re-anchors / grows its codebook
    teacher: beats.BEATs | None = None   # frozen starting model (SONAR)
    teacher_tokenizer: nn.Module | None = None  # frozen starting tokenizer (SONAR)
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
    K = artifacts.num_codes(tokenizer)
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
        if (cfg.codebook_reanchor or cfg.codebook_grow) and not isinstance(tokenizer, RandomProjectionTokenizer):
            # Usage recorded by a previous stage, or zeros until survey_codebook measures the prior's.
            models.codebook = OnlineCodebook(K, usage=recorded_usage(tokenizer.quantize))
    for m in (models.student, models.tokenizer, models.teacher, models.teacher_tokenizer, models.teacher_predictor,
              models.codebook):
        if m is not None:
            m.to(device)
    return models


def _label_tokenizer(cfg: TrainConfig, uri: str | None) -> nn.Module:
    return artifacts.load_label_tokenizer(uri) if uri else artifacts.new_random_projection(cfg.num_codes, cfg.seed)


def normalize_fbank(fbank: torch.Tensor) -> torch.Tensor:
    """Raw Kaldi fbank -> the BEATs input scale (what BEATs.preprocess returns)."""
    return (fbank - beats.FBANK_MEAN) / (2 * beats.FBANK_STD)


def tokenizer_features(tokenizer: nn.Module, fbank: torch.Tensor, frame_pad: torch.Tensor,
                       patch_pad: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Quantizer inputs of the real (non-padded) patches of the clips in `rows` (B,) bool -> (N, quant_dim)."""
    z = tokenizer.quantize_input(fbank[rows], frame_pad[rows])  # (Bn, P, d)
    return z[~patch_pad[rows]]  # (N, d)


def codebook_of(tokenizer: nn.Module) -> torch.Tensor:
    """(K, d) unit codes of either tokenizer kind."""
    if isinstance(tokenizer, RandomProjectionTokenizer):
        return tokenizer.codebook
    return tokenizer.quantize.embedding.weight


def code_labels(codes: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Quantizer inputs (B, P, d) -> nearest unit code (B, P)."""
    return assign(F.normalize(z.float(), dim=-1).flatten(0, 1), codes.float())[0].view(z.shape[:2])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_(tensor: torch.Tensor) -> None:
    """Every rank takes rank 0's value, so all replicas keep one codebook."""
    if _distributed():
        dist.broadcast(tensor, src=0)


def summed(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all ranks (a new tensor)."""
    tensor = tensor.clone()
    if _distributed():
        dist.all_reduce(tensor)
    return tensor


def shared_codes(tokenizer: nn.Module, teacher_tokenizer: nn.Module) -> torch.Tensor:
    """(K_t,) bool: the student's code k is still (within SHARED_CODE_COS) the teacher's code k."""
    teacher = codebook_of(teacher_tokenizer).float()  # (K_t, d)
    student = codebook_of(tokenizer)[: len(teacher)].float()  # (K_t, d)
    return F.cosine_similarity(student, teacher, dim=-1) >= SHARED_CODE_COS


def scope_rows(scope: str, is_prior: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the clips a distillation term applies to ('replay', 'new' or 'all')."""
    return {"replay": is_prior, "new": ~is_prior, "all": torch.ones_like(is_prior)}[scope]


@torch.no_grad()
def survey_codebook(cfg: TrainConfig, models: Models, batches: list[dict], device, measure_usage: bool) -> dict:
    """At a fresh start, from the first batches of every rank (sums all-reduced, so all ranks agree):

    * prior usage: each code's share of the labels of the prior clips' patches, what re-anchoring
      protects (when `measure_usage`: the tokenizer recorded none from a previous stage);
    * growth, decided once: add `codebook_grow` codes (never past `codebook_max_codes`) if new-domain
      patches are quantized GROW_MARGIN x worse than prior ones; rank 0 seeds them, all ranks take them.
    """
    tok = models.tokenizer
    codes = codebook_of(tok).float()  # (K, d)
    K = len(codes)
    stats = torch.zeros(K + 4, device=device)  # prior label counts (K), new err sum, new n, prior err sum, prior n
    z_new = []
    for batch in batches:
        fbank = normalize_fbank(batch["fbank"].to(device))  # (B, T, 128)
        frame_pad = batch["padding_mask"].to(device)  # (B, T)
        patch_pad = models.student.encoder.patch_padding_mask(frame_pad, _num_patches(models, fbank))  # (B, P)
        z = tok.quantize_input(fbank, frame_pad)[~patch_pad]  # (N, d) real patches
        prior = batch["is_prior"].to(device)[:, None].expand_as(patch_pad)[~patch_pad]  # (N,)
        labels, err = assign(F.normalize(z.float(), dim=-1), codes)  # (N,), (N,)
        stats[:K] += torch.bincount(labels[prior], minlength=K)
        stats[K:] += torch.stack([err[~prior].sum(), (~prior).sum(), err[prior].sum(), prior.sum()]).float()
        z_new.append(z[~prior])
    stats = summed(stats)
    info = {}
    if measure_usage:
        counts = stats[:K]
        models.codebook.usage.copy_(counts / counts.sum() if counts.sum() > 0 else torch.full_like(counts, 1.0 / K))
        info["prior_codes_used"] = int((counts > 0).sum())
    if cfg.codebook_grow > 0:
        err_new, err_prior = stats[K] / stats[K + 1].clamp(min=1), stats[K + 2] / stats[K + 3].clamp(min=1)
        n_new = min(cfg.codebook_grow, cfg.codebook_max_codes - K)
        # No prior clips to compare with: grow as asked.
        grow = n_new > 0 and bool(stats[K + 3] == 0 or err_new > GROW_MARGIN * err_prior)
        info.update(codebook_err_new=float(err_new), codebook_err_prior=float(err_prior), codebook_grown=0)
        if grow:
            generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
            added = new_codes(codes.cpu(), torch.cat(z_new).cpu(), n_new, generator=generator)  # CPU generator
            added = added.to(device)
            broadcast_(added)
            grow_tokenizer(tok, added)
            models.student.predictor.grow(n_new)
            models.codebook.grow(n_new)
            info["codebook_grown"] = n_new
    return info


def _num_patches(models: Models, fbank: torch.Tensor) -> int:
    p = models.student.encoder.cfg.input_patch_size
    return (fbank.shape[1] // p) * (fbank.shape[2] // p)


def compute_losses(cfg: TrainConfig, models: Models, student: nn.Module, batch: dict,
                   generator: torch.Generator, device) -> tuple[torch.Tensor, dict, dict]:
    """One forward pass: (weighted total loss, logged scalars, tensors for the codebook update)."""
    fbank = normalize_fbank(batch["fbank"].to(device))  # (B, T, 128)
    frame_pad = batch["padding_mask"].to(device)  # (B, T)
    patch_pad = models.student.encoder.patch_padding_mask(frame_pad, _num_patches(models, fbank))  # (B, P)
    with torch.no_grad():
        z = models.tokenizer.quantize_input(fbank, frame_pad)  # (B, P, d) tokenizer encoder, once
        labels = code_labels(codebook_of(models.tokenizer), z)  # (B, P)

    is_prior = batch["is_prior"].to(device)  # (B,)
    out = student(fbank, labels, patch_pad, generator=generator)  # student forward
    mask = out["mask"]
    total = out["loss"]
    logs = {"loss_mlm": out["loss"].detach(), "acc_masked": out["accuracy"], "code_coverage": out["label_coverage"]}

    if models.teacher is not None:
        with torch.no_grad():  # teacher forward on the very patches the student saw
            t_vis = gather_patches(models.teacher.embed(fbank), mask.ids_keep)  # (B, Pv, D)
            t_out, teacher_layers = models.teacher.encode(t_vis, padding_mask=mask.visible_padding,
                                                          positions=mask.ids_keep)  # (B, Pv, D)
            shared = shared_codes(models.tokenizer, models.teacher_tokenizer)  # (K_t,)
        logs["codes_shared"] = shared.float().sum()
    if models.teacher_predictor is not None and cfg.lambda_tok > 0:
        with torch.no_grad():
            t_logits = models.teacher_predictor(t_out, mask.ids_keep, patch_pad.shape[1], patch_pad)  # (B, P, K_t)
        rows = scope_rows(cfg.distill_scope_tok, is_prior)[:, None].expand_as(mask.target)[mask.target]  # (N,)
        loss_tok = token_distill_loss(out["logits"][None], t_logits[mask.target][None], rows[None], codes=shared)
        total = total + cfg.lambda_tok * loss_tok
        logs["loss_tok"] = loss_tok.detach()
    if models.teacher is not None and cfg.lambda_model > 0:
        skip = mask.visible_padding | ~scope_rows(cfg.distill_scope_model, is_prior)[:, None]  # (B, Pv)
        loss_model = feature_distill_loss(out["layer_results"], teacher_layers, skip,
                                          kind=cfg.distill_kind, layers=cfg.distill_layers)
        total = total + cfg.lambda_model * loss_model
        logs["loss_model"] = loss_model.detach()

    counts = torch.bincount(labels[~patch_pad].flatten(), minlength=artifacts.num_codes(models.tokenizer)).float()
    p = counts / counts.sum().clamp(min=1)
    logs["code_perplexity"] = torch.exp(-(p * p.clamp(min=1e-12).log()).sum())
    logs["replay_share"] = batch["is_prior"].float().mean()
    logs["loss"] = total.detach()
    return total, logs, {"features": z[~patch_pad]}  # every clip's real patches, replayed prior included


def finite_update(loss: torch.Tensor, params: list[nn.Parameter], optimizer, grad_clip: float,
                  world: int) -> torch.Tensor | None:
    """Backward, clip and step, unless the loss or the gradient norm is not finite: then nothing is
    updated (a NaN step would poison every weight and every later checkpoint) and None is returned.
    Workers decide together on the loss, since DDP's backward is a collective."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    optimizer.zero_grad(set_to_none=True)
    if not finite.item():
        return None
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)  # same on every worker after DDP's all-reduce
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.step()
    return grad_norm


def save_worker_checkpoint(dir_: Path, cfg: TrainConfig, models: Models, optimizer, scheduler,
                           step: int, metrics_file: Path) -> None:
    beats.save_checkpoint(models.student.encoder, str(dir_ / artifacts.MODEL))
    if models.codebook is not None:  # the next stage (or a restart) starts from this usage
        record_usage(models.tokenizer.quantize, models.codebook.usage)
    artifacts.save_label_tokenizer(models.tokenizer, str(dir_ / artifacts.TOKENIZER))
    artifacts.save_predictor(models.student.predictor, str(dir_ / artifacts.PREDICTOR))
    artifacts.save_torch({
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }, str(dir_ / artifacts.TRAINER_STATE))
    if metrics_file.exists():
        (dir_ / "metrics.jsonl").write_bytes(metrics_file.read_bytes())


def restore_paths(checkpoint_dir: str) -> dict:
    d = Path(checkpoint_dir)
    return {"base": str(d / artifacts.MODEL), "tokenizer": str(d / artifacts.TOKENIZER),
            "predictor": str(d / artifacts.PREDICTOR), "state": str(d / artifacts.TRAINER_STATE)}


def train_loop_per_worker(config: dict) -> None:
    cfg = from_dict(TrainConfig, config["train"])
    paths = dict(config["paths"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))

    # --- resume: a checkpoint of this run (after a failure or --resume) wins over the starting model
    state, start_step, checkpoint = None, 0, ray.train.get_checkpoint()
    if checkpoint is not None:
        resumed = restore_paths(checkpoint.to_directory())
        state = artifacts.load_torch(resumed["state"])
        start_step = state["step"]
        # The student (and its tokenizer / predictor, with the recorded code usage) continue; the
        # teacher is built from the starting files in `paths`, untouched.
        paths.update(student=resumed["base"], student_tokenizer=resumed["tokenizer"],
                     student_predictor=resumed["predictor"])

    models = build_models(cfg, paths, device)
    if checkpoint is not None:
        torch.set_rng_state(state["rng"])

    # Worker `rank` has its own stream: step k trains batch k * world + rank, across restarts too.
    batches = iter_train_batches(ray.train.get_dataset_shard(f"train_{rank}"), start_step * world + rank, world)
    grow_info = {}
    measure_usage = models.codebook is not None and recorded_usage(models.tokenizer.quantize) is None
    if models.codebook is not None and checkpoint is None and (measure_usage or cfg.codebook_grow > 0):
        first = list(itertools.islice(batches, SURVEY_BATCHES))
        grow_info = survey_codebook(cfg, models, first, device, measure_usage)
        batches = itertools.chain(first, batches)

    student = ray.train.torch.prepare_model(models.student, parallel_strategy_kwargs={
        "find_unused_parameters": bool(models.student.encoder.cfg.finetuned_model)}) if world > 1 else models.student
    optimizer = build_optimizer(list(models.student.parameters()), cfg.lr, cfg.weight_decay)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, cfg.max_steps)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])

    local_dir = Path(config["log_dir"])
    logger = MetricsLogger(str(local_dir), cfg.end_step, start_step, use_wandb=cfg.wandb and rank == 0,
                           project=cfg.wandb_project, run_name=config["run_name"], config=config["train"]) \
        if rank == 0 else None
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + rank + start_step)
    fail_at = int(config.get("fail_at_step", -1))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    step, t_last, samples, safe_step = start_step, time.time(), 0, start_step
    nonfinite_steps = 0  # updates skipped for a non-finite loss / gradient (this worker group's lifetime)
    student.train()
    for batch in batches:
        if step >= cfg.end_step:
            break
        if step == fail_at and rank == 0 and not Path(config["fault_marker"]).exists():
            Path(config["fault_marker"]).touch()
            os._exit(1)  # injected worker death (tests): FailureConfig must restart from the checkpoint

        with autocast:
            loss, logs, aux = compute_losses(cfg, models, student, batch, generator, device)
        grad_norm = finite_update(loss, list(models.student.parameters()), optimizer, cfg.grad_clip, world)
        scheduler.step()
        if grad_norm is None:
            nonfinite_steps += 1
            print(f"[step {step + 1}] non-finite loss or gradient: update skipped ({nonfinite_steps} so far)",
                  flush=True)
        else:
            logs["grad_norm"] = grad_norm
        logs["nonfinite_steps"] = torch.tensor(float(nonfinite_steps))
        if grad_norm is not None and models.codebook is not None and cfg.codebook_reanchor:
            with torch.no_grad():  # usage over every clip of the global batch; rank 0's moves win
                info = models.codebook.step(models.tokenizer.quantize.embedding, aux["features"], reduce=summed)
                broadcast_(models.tokenizer.quantize.embedding.weight.data)
                broadcast_(models.tokenizer.quantize.embedding.embed_avg.data)
                logs["codebook_err"] = torch.tensor(info["error"])  # over every clip of the batch
                logs["codebook_moved"] = torch.tensor(float(info["moved"]))
        step += 1
        samples += len(batch["is_prior"])

        last = step == cfg.end_step
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or last:
            now = time.time()
            metrics = {k: float(v) for k, v in logs.items()}
            metrics.update(lr=scheduler.get_last_lr()[0], samples_per_s=samples * world / (now - t_last),
                           samples_seen=step * cfg.batch_size * world, **grow_info)
            t_last, samples = now, 0
            if logger:
                logger.log(step, metrics)
            if step % cfg.checkpoint_every == 0 or last:
                with tempfile.TemporaryDirectory() as d:
                    if rank == 0:
                        save_worker_checkpoint(Path(d), cfg, models, optimizer, scheduler, step, logger.path)
                    ray.train.report({"step": step, **metrics},
                                     checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)
                if rank == 0:  # the previous checkpoint is surely registered now: a restart may stream from it
                    storage.write_bytes_atomic(storage.join(config["output"], PROGRESS),
                                               json.dumps({"safe_step": safe_step}).encode())
                safe_step = step
            else:
                ray.train.report({"step": step, **metrics})
    if logger:
        logger.close()

