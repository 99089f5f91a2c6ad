"""The joint sampler: which clips make up each training batch.

Every batch holds exactly `round(replay_ratio * batch_size)` prior clips. New clips are taken in
seeded per-epoch permutations; prior slots go to strata by smooth weighted round robin, so after any
number of batches each stratum's count is within one slot of `share * prior slots`, and inside a
stratum clips are again taken in seeded per-epoch permutations. Randomness is derived from
(seed, pool, epoch) and (seed, batch index), never from global state, so the whole state is a few
counters: `state_dict()` / `load_state_dict()` resume the stream exactly.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sonar_ray.data.manifest import ClipRow

_NEW, _PRIOR, _BATCH = 0, 1, 2  # RNG stream ids


@dataclass(frozen=True)
class BatchPlan:
    index: int
    uris: list[str]
    starts: list[float]   # crop start per clip, seconds
    is_prior: list[bool]


class _Cycle:
    """Endless walk over a pool in a fresh seeded permutation per epoch."""

    def __init__(self, size: int, seed_key: tuple[int, ...]):
        self.size, self.seed_key = size, seed_key
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([*self.seed_key, self.epoch]).permutation(self.size)

    def take(self) -> int:
        if self.pos == self.size:
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation()
        self.pos += 1
        return int(self._perm[self.pos - 1])

    def advance(self, n: int) -> None:
        """Move on as `n` takes would, building only the permutation of the epoch it ends in."""
        if n == 0:
            return
        taken = self.epoch * self.size + self.pos + n
        epoch = (taken - 1) // self.size  # a finished epoch stays at pos == size until the next take
        self.pos = taken - epoch * self.size
        if epoch != self.epoch:
            self.epoch = epoch
            self._perm = self._permutation()

    def state(self) -> list[int]:
        return [self.epoch, self.pos]

    def restore(self, state: list[int]) -> None:
        self.epoch, self.pos = state
        self._perm = self._permutation()


class JointSampler:
    """`new` and `prior` clips (prior ones carry their stratum), `shares` (S,) replay share per stratum."""

    def __init__(self, new: Sequence[ClipRow], prior: Sequence[ClipRow], shares: np.ndarray, *,
                 batch_size: int, replay_ratio: float, clip_seconds: float, seed: int):
        self.num_prior = int(round(replay_ratio * batch_size))
        if (self.num_prior and not prior) or (self.num_prior < batch_size and not new):
            raise ValueError(f"replay_ratio={replay_ratio} needs clips in both pools "
                             f"(new: {len(new)}, prior: {len(prior)})")
        self.batch_size, self.clip_seconds, self.seed = batch_size, clip_seconds, seed
        self.uris = {False: [c.uri for c in new], True: [c.uri for c in prior]}
        self.durations = {False: np.array([c.duration for c in new], float),
                          True: np.array([c.duration for c in prior], float)}
        self.shares = np.asarray(shares, dtype=np.float64).tolist()  # Python floats: the credit loop runs per slot
        strata = np.array([c.stratum for c in prior], dtype=np.int64)
        self.members = [np.flatnonzero(strata == s) for s in range(len(self.shares))]
        if any(len(m) == 0 for m in self.members):
            raise ValueError("every stratum with a share needs at least one clip")
        self.new_cycle = _Cycle(len(new), (seed, _NEW))
        self.stratum_cycles = [_Cycle(len(m), (seed, _PRIOR, s)) for s, m in enumerate(self.members)]
        self.credit = [0.0] * len(self.shares)
        self.batch = 0

    def _strata(self, n: int) -> list[int]:
        """The strata of the next `n` prior slots (smooth weighted round robin), in plain floats: this
        loop runs once per slot, also when `skip` passes over batches."""
        credit, shares, picked = self.credit, self.shares, []
        for _ in range(n):
            credit = list(map(operator.add, credit, shares))
            s = credit.index(max(credit))  # the first of equal maxima
            credit[s] -= 1.0
            picked.append(s)
        self.credit = credit
        return picked

    def __iter__(self):
        return self

    def __next__(self) -> BatchPlan:
        rng = np.random.default_rng([self.seed, _BATCH, self.batch])
        picks = [(True, int(self.members[s][self.stratum_cycles[s].take()])) for s in self._strata(self.num_prior)]
        picks += [(False, self.new_cycle.take()) for _ in range(self.batch_size - self.num_prior)]
        picks = [picks[i] for i in rng.permutation(len(picks))]
        slack = np.array([max(0.0, self.durations[p][i] - self.clip_seconds) for p, i in picks])
        starts = np.round(rng.random(len(picks)) * slack, 3)
        plan = BatchPlan(self.batch, [self.uris[p][i] for p, i in picks], starts.tolist(), [p for p, _ in picks])
        self.batch += 1
        return plan

    def skip(self, n: int) -> None:
        """Advance past `n` batches exactly as `n` calls of `next()` would, without planning them: the
        cycles are independent of the credit, so each takes its batches' count of clips at once."""
        taken = np.bincount(self._strata(n * self.num_prior), minlength=len(self.stratum_cycles))
        for cycle, k in zip(self.stratum_cycles, taken):
            cycle.advance(int(k))
        self.new_cycle.advance(n * (self.batch_size - self.num_prior))
        self.batch += n

    def state_dict(self) -> dict:
        return {"batch": self.batch, "new": self.new_cycle.state(), "strata": [c.state() for c in self.stratum_cycles],
                "credit": list(self.credit), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or len(state["strata"]) != len(self.stratum_cycles):
            raise ValueError("sampler state was saved for a different seed or strata")
        self.batch = state["batch"]
        self.new_cycle.restore(state["new"])
        for cycle, s in zip(self.stratum_cycles, state["strata"]):
            cycle.restore(s)
        self.credit = [float(c) for c in state["credit"]]
