"""`train_loop_per_worker`: what each Ray Train worker runs for SONAR, DCPT and from-scratch training.

Per step: the student predicts the current tokenizer's codes of masked patches; under SONAR a frozen
teacher (the starting model and its tokenizer) adds a tokenizer-level and a model-level distillation
term, and the student's tokenizer re-anchors unused codes toward the new domain.
"""

from __future__ import annotations

import copy
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
from sonar_ray.objectives.codebook import OnlineCodebook, assign, grow_tokenizer, new_codes
from sonar_ray.objectives.distill import feature_distill_loss, token_distill_loss
from sonar_ray.objectives.masked_prediction import MaskedTokenModel
from sonar_ray.objectives.masking import gather_patches
from sonar_ray.objectives.random_projection import RandomProjectionTokenizer
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.metrics import MetricsLogger
from sonar_ray.train.schedule import build_optimizer, warmup_cosine

PROGRESS = "progress.json"  # {"safe_step": N}: where a restarted data stream may begin


@dataclass
class Models:
    student: MaskedTokenModel            # BEATs encoder + label predictor (trained)
    tokenizer: nn.Module                 # label source; SONAR re-anchors / grows its codebook
    teacher: beats.BEATs | None = None   # frozen starting model (SONAR)
    teacher_tokenizer: nn.Module | None = None  # frozen starting tokenizer (SONAR)
    codebook: OnlineCodebook | None = None


def _frozen(m: nn.Module) -> nn.Module:
    return m.eval().requires_grad_(False)


def build_models(cfg: TrainConfig, paths: dict, device: torch.device) -> Models:
    """Student, tokenizer and (SONAR) frozen teacher, on `device`."""
    if paths.get("student"):  # resuming this run
        encoder = beats.load_checkpoint(paths["student"])
    elif cfg.method == "scratch" and not paths.get("base"):
        torch.manual_seed(cfg.seed)
        encoder = beats.BEATs(beats.BEATsConfig.preset(cfg.preset))
    else:
        encoder = beats.load_checkpoint(paths["base"])
    if paths.get("tokenizer"):
        tokenizer = artifacts.load_label_tokenizer(paths["tokenizer"])
    else:
        tokenizer = artifacts.new_random_projection(cfg.num_codes, cfg.seed)
    K = artifacts.num_codes(tokenizer)
    if paths.get("predictor") and (cfg.method != "scratch" or paths.get("student")):
        predictor = artifacts.load_predictor(paths["predictor"])
    else:
        torch.manual_seed(cfg.seed + 1)
        predictor = artifacts.new_predictor(encoder.cfg.encoder_embed_dim, K)
    if predictor.num_codes != K:
        raise ValueError(f"predictor has {predictor.num_codes} codes but the tokenizer has {K}")
    models = Models(student=MaskedTokenModel(encoder, predictor, cfg.mask_ratio), tokenizer=_frozen(tokenizer))
    if cfg.method == "sonar":
        if cfg.uses_teacher:
            # Built from the checkpoint, not deep-copied: weight-norm modules don't deepcopy reliably.
            models.teacher = _frozen(beats.load_checkpoint(paths["base"]))
            models.teacher_tokenizer = _frozen(copy.deepcopy(tokenizer))
        if (cfg.codebook_reanchor or cfg.codebook_grow) and not isinstance(tokenizer, RandomProjectionTokenizer):
            models.codebook = OnlineCodebook(K, usage=prior_usage(tokenizer))
    for m in (models.student, models.tokenizer, models.teacher, models.teacher_tokenizer, models.codebook):
        if m is not None:
            m.to(device)
    return models


def prior_usage(tokenizer: nn.Module) -> torch.Tensor:
    """Each code's share of the prior data, from the tokenizer's EMA cluster sizes: codes the prior
    needs keep their place unless the new stream stops using them for hundreds of steps."""
    counts = tokenizer.quantize.embedding.cluster_size.detach().float().clamp(min=0)
    if counts.sum() <= 0:
        return torch.full_like(counts, 1.0 / counts.numel())
    return counts / counts.sum()


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
    """Quantizer inputs (B, P, d) -> nearest unit code (B, P). Student and teacher tokenizers share
    their (frozen) encoder and differ only in the codebook, so one encoder pass serves both."""
    return assign(F.normalize(z.float(), dim=-1).flatten(0, 1), codes.float())[0].view(z.shape[:2])


def broadcast_(tensor: torch.Tensor) -> None:
    """Every rank takes rank 0's value, so all replicas keep one codebook."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(tensor, src=0)


@torch.no_grad()
def maybe_grow_codebook(cfg: TrainConfig, models: Models, batch: dict, device) -> dict:
    """Grow by `codebook_grow` codes if the new domain is quantized worse than the prior (rank 0 decides)."""
    tok = models.tokenizer
    fbank = normalize_fbank(batch["fbank"].to(device))
    frame_pad = batch["padding_mask"].to(device)
    patch_pad = models.student.encoder.patch_padding_mask(frame_pad, _num_patches(models, fbank))
    is_prior = batch["is_prior"].to(device)
    codes = tok.quantize.embedding.weight
    z_new = F.normalize(tokenizer_features(tok, fbank, frame_pad, patch_pad, ~is_prior).float(), dim=-1)
    err_new = assign(z_new, codes)[1].mean()
    if is_prior.any():
        z_prior = F.normalize(tokenizer_features(tok, fbank, frame_pad, patch_pad, is_prior).float(), dim=-1)
        err_prior = assign(z_prior, codes)[1].mean()
    else:
        err_prior = torch.zeros(())  # no prior clips to compare with: grow as asked
    decision = torch.tensor([float(err_new > 1.2 * err_prior)], device=device)
    added = new_codes(codes, z_new, cfg.codebook_grow, generator=torch.Generator(device="cpu").manual_seed(cfg.seed))
    added = added.to(device)
    broadcast_(decision)
    broadcast_(added)
    info = {"codebook_err_new": float(err_new), "codebook_err_prior": float(err_prior), "codebook_grown": 0}
    if decision.item() > 0:
        grow_tokenizer(tok, added)
        models.student.predictor.grow(cfg.codebook_grow)
        models.codebook.grow(cfg.codebook_grow)
        info["codebook_grown"] = cfg.codebook_grow
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

    out = student(fbank, labels, patch_pad, generator=generator)  # student forward
    mask = out["mask"]
    total = out["loss"]
    logs = {"loss_mlm": out["loss"].detach(), "acc_masked": out["accuracy"], "code_coverage": out["label_coverage"]}

    if models.teacher_tokenizer is not None and cfg.lambda_tok > 0:
        with torch.no_grad():
            teacher_labels = code_labels(codebook_of(models.teacher_tokenizer), z)[mask.target]  # (N,)
        loss_tok = token_distill_loss(out["logits"][None], teacher_labels[None])
        total = total + cfg.lambda_tok * loss_tok
        logs["loss_tok"] = loss_tok.detach()
    if models.teacher is not None and cfg.lambda_model > 0:
        with torch.no_grad():  # teacher forward on the very patches the student saw
            t_vis = gather_patches(models.teacher.embed(fbank), mask.ids_keep)  # (B, Pv, D)
            _, teacher_layers = models.teacher.encode(t_vis, padding_mask=mask.visible_padding,
                                                      positions=mask.ids_keep)
        loss_model = feature_distill_loss(out["layer_results"], teacher_layers, mask.visible_padding,
                                          kind=cfg.distill_kind, layers=cfg.distill_layers)
        total = total + cfg.lambda_model * loss_model
        logs["loss_model"] = loss_model.detach()

    counts = torch.bincount(labels[~patch_pad].flatten(), minlength=artifacts.num_codes(models.tokenizer)).float()
    p = counts / counts.sum().clamp(min=1)
    logs["code_perplexity"] = torch.exp(-(p * p.clamp(min=1e-12).log()).sum())
    logs["replay_share"] = batch["is_prior"].float().mean()
    logs["loss"] = total.detach()
    is_prior = batch["is_prior"].to(device)
    return total, logs, {"new_features": z[~is_prior][~patch_pad[~is_prior]], "is_prior": is_prior}


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
    artifacts.save_label_tokenizer(models.tokenizer, str(dir_ / artifacts.TOKENIZER))
    artifacts.save_predictor(models.student.predictor, str(dir_ / artifacts.PREDICTOR))
    artifacts.save_torch({
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "codebook_usage": None if models.codebook is None else models.codebook.usage,
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
        # The student (and its tokenizer / predictor) continue; the teacher stays the original base.
        paths.update(student=resumed["base"], tokenizer=resumed["tokenizer"], predictor=resumed["predictor"])

    models = build_models(cfg, paths, device)
    if checkpoint is not None:
        if models.codebook is not None and state["codebook_usage"] is not None:
            models.codebook.usage.copy_(state["codebook_usage"])
        torch.set_rng_state(state["rng"])

    # Worker `rank` has its own stream: step k trains batch k * world + rank, across restarts too.
    batches = iter_train_batches(ray.train.get_dataset_shard(f"train_{rank}"), start_step * world + rank, world)
    grow_info = {}
    if cfg.method == "sonar" and cfg.codebook_grow > 0 and models.codebook is not None and checkpoint is None:
        first = next(batches)
        grow_info = maybe_grow_codebook(cfg, models, first, device)
        batches = _chain_first(first, batches)

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
        if grad_norm is not None and models.codebook is not None and cfg.codebook_reanchor and (~aux["is_prior"]).any():
            with torch.no_grad():
                info = models.codebook.step(models.tokenizer.quantize.embedding, aux["new_features"])
                broadcast_(models.tokenizer.quantize.embedding.weight.data)
                broadcast_(models.tokenizer.quantize.embedding.embed_avg.data)
                logs["codebook_err_new"] = torch.tensor(info["error"])
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


def _chain_first(first, rest):
    yield first
    yield from rest
