"""The few collectives training needs across Ray Train workers (no-ops in a single process)."""

from __future__ import annotations

import torch
import torch.distributed as dist


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
