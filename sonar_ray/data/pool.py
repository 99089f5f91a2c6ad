"""EmbedPool: the Ray actor pool that runs a model over many clips, for the inspection pass (validity,
durations, relevance embeddings) and for evaluation embedding.

Both are Ray Data `map_batches` over an `ActorPoolStrategy(size=actors)`: each actor loads its model
once and moves it to the GPU Ray gave it, if any. Rows come back in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sonar_ray import progress
from sonar_ray.cluster import init_ray, require_gpus


@dataclass
class EmbedPool:
    actors: int = field(default=2, metadata={
        "help": "actors of the inspection and evaluation-embedding passes (each loads the model once)"})
    gpus_per_actor: float = field(default=0.0, metadata={
        "help": "GPUs per pass actor (0 = CPU; a fraction shares one GPU between actors)"})
    batch_size: int = field(default=16, metadata={
        "help": "clips per pass actor batch and forward pass (no effect on the numbers)"})

    def __post_init__(self):
        for name in ("actors", "batch_size"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"--embed-pool-{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        # Ray schedules a fraction of one GPU or whole GPUs, never e.g. 1.5 (the comparisons also reject NaN).
        g = self.gpus_per_actor
        if not (g >= 0 and (g <= 1 or float(g).is_integer())):
            raise ValueError(f"--embed-pool-gpus-per-actor must be 0, a fraction of 1, or a whole number; got {g}")

    def check_cluster(self, what: str) -> None:
        """Fail now if the cluster cannot host every actor (Ray would wait for them forever)."""
        require_gpus(self.actors * self.gpus_per_actor,
                     f"{what}: --embed-pool-actors {self.actors} x --embed-pool-gpus-per-actor {self.gpus_per_actor:g}")


def device():
    """Where a pass actor (or the driver) runs its model: on the GPU Ray assigned to it, else the CPU.

    Not `torch.cuda.is_available()` alone: Ray 2.60 leaves CUDA_VISIBLE_DEVICES as it is for an actor
    that asked for no GPU, so on a GPU node it would take a GPU it did not reserve.
    """
    import ray
    import torch

    assigned = ray.is_initialized() and ray.get_gpu_ids()
    return torch.device("cuda" if assigned and torch.cuda.is_available() else "cpu")


def run_pool(rows: list[dict], fn: type, kwargs: dict, pool: EmbedPool, *, desc: str,
             unit: str = "clip") -> dict[str, np.ndarray]:
    """`rows` through the callable class `fn(**kwargs)` on the pool -> its output columns, in input order."""
    import ray

    init_ray()  # joins the job's cluster, or starts a local one with Ray's logs kept off the console
    pool.check_cluster(desc)
    ds = ray.data.from_items([{"row": i, **r} for i, r in enumerate(rows)])
    ds = ds.map_batches(fn, fn_constructor_kwargs=kwargs, batch_size=pool.batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=pool.actors), num_gpus=pool.gpus_per_actor)
    parts = []
    with progress.bar(desc=desc, total=len(rows), unit=unit) as b:
        for part in ds.iter_batches(batch_format="numpy", batch_size=None):
            parts.append(part)
            b.update(len(part["row"]))
    if not parts:
        return {}
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out.pop("row"), kind="stable")  # actors finish out of order
    return {k: v[order] for k, v in out.items()}
