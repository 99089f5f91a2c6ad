"""`train_loop_per_worker`: what each Ray Train worker runs for SONAR, DCPT and from-scratch training.

Per step: the student predicts the current tokenizer's codes of masked patches; under SONAR a frozen
teacher (the starting model, its tokenizer and its predictor, whatever restarts happened) adds a
tokenizer-level and a model-level distillation term, and the student's tokenizer re-anchors unused
codes toward the new domain. Model assembly and checkpoints: `assemble`; codebook policy: `growth`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import ray.train
import ray.train.torch
from torch import nn

from sonar_ray.audio.features import normalize_fbank, patch_padding_mask
from sonar_ray.config import from_dict
from sonar_ray.data import iter_train_batches
from sonar_ray.models.tokenizer import LabelTokenizer
from sonar_ray.objectives.codebook import recorded_usage
from sonar_ray.objectives.distill import feature_distill_loss, token_distill_loss
from sonar_ray.objectives.masking import gather_patches
from sonar_ray.train import growth
from sonar_ray.train.assemble import Models, build_models, resume_paths, write_checkpoint
from sonar_ray.train.checkpoints import CheckpointReporter
from sonar_ray.train.collectives import summed
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.metrics import MetricsLogger
from sonar_ray.train.schedule import build_optimizer, warmup_cosine

SHARED_CODE_COS = 0.99  # a student code this close to the teacher's same-index code still means the same
StepHook = Callable[[int, int], None]  # (step about to be trained, rank): e.g. tests' sonar_ray.train.faults


def shared_codes(tokenizer: LabelTokenizer, teacher_tokenizer: LabelTokenizer) -> torch.Tensor:
    """(K_t,) bool: the student's code k is still (within SHARED_CODE_COS) the teacher's code k."""
    teacher = teacher_tokenizer.codebook.float()  # (K_t, d)
    student = tokenizer.codebook[: len(teacher)].float()  # (K_t, d)
    return F.cosine_similarity(student, teacher, dim=-1) >= SHARED_CODE_COS


def scope_rows(scope: str, is_prior: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the clips a distillation term applies to ('replay', 'new' or 'all')."""
    return {"replay": is_prior, "new": ~is_prior, "all": torch.ones_like(is_prior)}[scope]



def compute_losses(cfg: TrainConfig, models: Models, student: nn.Module, batch: dict,
                   generator: torch.Generator, device) -> tuple[torch.Tensor, dict, dict]:
    """One forward pass: (weighted total loss, logged scalars, tensors for the codebook update)."""
    fbank = normalize_fbank(batch["fbank"].to(device))  # (B, T, 128)
    frame_pad = batch["padding_mask"].to(device)  # (B, T)
    patch_pad = patch_padding_mask(frame_pad, models.student.encoder.cfg.input_patch_size)  # (B, P) real patches
    with torch.no_grad():
        z = models.tokenizer.quantize_input(fbank, frame_pad)  # (B, P, d) tokenizer encoder, once
        labels = models.tokenizer.labels(z)  # (B, P): labels_from_fbank's path, parity-tested

    is_prior = batch["is_prior"].to(device)  # (B,)
    out = student(fbank, labels, patch_pad, generator=generator)  # student forward
    mask = out["mask"]
    total = out["loss"]
    logs = {"loss_mlm": out["loss"].detach(), "acc_masked": out["accuracy"], "code_coverage": out["label_coverage"]}

    if models.teacher is not None:
        with torch.no_grad():
            shared = shared_codes(models.tokenizer, models.teacher_tokenizer)  # (K_t,)
        logs["codes_shared"] = shared.float().sum()
        use_tok, use_model = models.teacher_predictor is not None and cfg.lambda_tok > 0, cfg.lambda_model > 0
        none = torch.zeros_like(is_prior)
        tok_rows = scope_rows(cfg.distill_scope_tok, is_prior) if use_tok else none  # (B,)
        model_rows = scope_rows(cfg.distill_scope_model, is_prior) if use_model else none  # (B,)
        # The teacher sees only the clips a distillation term reads (by default the replayed ones): the
        # rest of its forward would be thrown away. Its math is per clip, so those rows are unchanged.
        taught = (tok_rows | model_rows).nonzero().squeeze(1)  # (b,)
        if len(taught):
            keep = mask.ids_keep[taught]  # (b, Pv)
            with torch.no_grad():  # teacher forward on the very patches the student saw
                t_vis = gather_patches(models.teacher.embed(fbank[taught]), keep)  # (b, Pv, D)
                t_out, teacher_layers = models.teacher.encode(t_vis, padding_mask=mask.visible_padding[taught],
                                                              positions=keep)  # (b, Pv, D)
        if use_tok:
            loss_tok = out["loss"].new_zeros(())
            if tok_rows.any():
                sub = tok_rows[taught]  # (b,) which taught clips this term reads
                with torch.no_grad():
                    t_logits = models.teacher_predictor(t_out[sub], keep[sub], patch_pad.shape[1],
                                                        patch_pad[taught][sub])  # (b', P, K_t)
                student = tok_rows[:, None].expand_as(mask.target)[mask.target]  # (N,) student logits of those clips
                loss_tok = token_distill_loss(out["logits"][student][None],
                                              t_logits[mask.target[taught][sub]][None], codes=shared)
            total = total + cfg.lambda_tok * loss_tok
            logs["loss_tok"] = loss_tok.detach()
        if use_model:
            loss_model = out["loss"].new_zeros(())
            if model_rows.any():
                sub = model_rows[taught]  # (b,)
                rows = taught[sub]  # (b',) batch rows this term reads
                # Gather only the distilled layers (each gather is a copy, and its backward a scatter).
                layers = cfg.distill_layers
                loss_model = feature_distill_loss([out["layer_results"][i][rows] for i in layers],
                                                  [teacher_layers[i][sub] for i in layers], mask.visible_padding[rows],
                                                  kind=cfg.distill_kind, layers=range(len(layers)))
            total = total + cfg.lambda_model * loss_model
            logs["loss_model"] = loss_model.detach()

    counts = torch.bincount(labels[~patch_pad].flatten(), minlength=models.tokenizer.num_codes).float()
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


def train_loop_per_worker(config: dict) -> None:
    cfg = from_dict(TrainConfig, config["train"])
    paths = dict(config["paths"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))

    # --- resume: a checkpoint of this run (after a failure or --resume) wins over the starting model
    state, start_step, checkpoint = None, 0, ray.train.get_checkpoint()
    if checkpoint is not None:  # the student continues from it; the teacher is built from the starting files
        state, paths = resume_paths(checkpoint.to_directory(), paths)
        start_step = state["step"]

    models = build_models(cfg, paths, device)
    if checkpoint is not None:
        torch.set_rng_state(state["rng"])

    # Worker `rank` has its own stream: step k trains batch k * world + rank, across restarts too.
    batches = iter_train_batches(ray.train.get_dataset_shard(f"train_{rank}"), start_step * world + rank, world)
    grow_info = {}
    measure_usage = models.codebook is not None and recorded_usage(models.tokenizer.quantize) is None
    if models.codebook is not None and checkpoint is None and (measure_usage or cfg.codebook_grow > 0):
        first = list(itertools.islice(batches, growth.SURVEY_BATCHES))
        grow_info = growth.survey_codebook(cfg, models, first, device, measure_usage)
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
    step_hooks: list[StepHook] = config.get("step_hooks", [])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    reporter = CheckpointReporter(rank, config["output"])
    step, t_last, samples, data_wait = start_step, time.time(), 0, 0.0
    nonfinite_steps = 0  # updates skipped for a non-finite loss / gradient (this worker group's lifetime)
    replaced = 0  # clips of this worker's batches replaced at read time (this worker group's lifetime)
    student.train()
    batches = iter(batches)
    while step < cfg.end_step:
        t_wait = time.perf_counter()  # the step before synced (finite_update reads the loss): this is idle time
        batch = next(batches, None)
        data_wait += time.perf_counter() - t_wait
        if batch is None:
            break
        for hook in step_hooks:
            hook(step, rank)
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
            logs.update(growth.reanchor(models, aux["features"]))  # usage over every clip of the global batch
        step += 1
        samples += len(batch["is_prior"])
        replaced += batch["replaced"]

        last = step == cfg.end_step
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or last:
            now = time.time()
            metrics = {k: float(v) for k, v in logs.items()}
            metrics.update(lr=scheduler.get_last_lr()[0], samples_per_s=samples * world / (now - t_last),
                           data_wait_share=data_wait / (now - t_last),  # rank 0's share of wall time spent waiting for input
                           samples_seen=step * cfg.batch_size * world, **grow_info,
                           replaced_clips=float(summed(torch.tensor(float(replaced), device=device))),
                           skipped_inputs=config["skipped_inputs"])  # bad files left out before training
            t_last, samples, data_wait = now, 0, 0.0
            if logger:
                logger.log(step, metrics)
            save = step % cfg.checkpoint_every == 0 or last  # `write` runs on rank 0 only, within report
            reporter.report({"step": step, **metrics}, step, write=(lambda d: write_checkpoint(
                d, models, optimizer, scheduler, step, logger.path)) if save else None)
    reporter.close()
    if logger:
        logger.close()

