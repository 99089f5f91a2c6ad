"""One progress bar with an ETA per long stage (corpus build, inspection, each fit, evaluation).

Bars are tqdm bars on stderr. On an interactive terminal they refresh twice a second; on a log
(a file, `ray job submit`, CI, pytest) at most every LOG_INTERVAL_S seconds, so a stage costs one
line plus a few carriage-return updates. tqdm's own TQDM_DISABLE=1 hides them (the container image sets it).

A Ray Train run reports on its workers; `TrainProgress` carries those reports to the driver's bar:
a UserCallback on the Train controller posts the rank-0 metrics to a tiny actor the driver polls.
"""

from __future__ import annotations

import sys
import threading
from typing import Iterable

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # refresh period when stderr is not a terminal
POLL_S = 1.0  # how often the driver asks for the latest Ray Train report
SHOWN_METRICS = ("loss", "tok_loss")  # reported metrics shown beside a fit's bar


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
        initial: int = 0) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, file=sys.stderr,
                mininterval=0.5 if interactive else LOG_INTERVAL_S, dynamic_ncols=interactive,
                ncols=None if interactive else 100)


def to_pandas(ds, *, total: int, desc: str, unit: str = "file"):
    """`ds.to_pandas()` with a bar over its `total` rows (Ray Data's own bars stay off)."""
    import pandas as pd

    parts = []
    with bar(desc=desc, total=total, unit=unit) as b:
        for part in ds.iter_batches(batch_format="pandas", batch_size=None):
            parts.append(part)
            b.update(len(part))
    return pd.concat(parts, ignore_index=True) if parts else ds.to_pandas()  # empty: Ray's own empty frame


class _Board:
    """Holds the latest rank-0 report of one Ray Train run (an actor with no CPU)."""

    def __init__(self):
        self.metrics: dict = {}

    def post(self, metrics: dict) -> None:
        self.metrics = metrics

    def latest(self) -> dict:
        return self.metrics


def _report_callback(board):
    from ray.train import UserCallback

    class ReportToBoard(UserCallback):
        def __init__(self, board):
            self.board = board

        def after_report(self, run_context, metrics, checkpoint):  # runs in the Train controller
            self.board.post.remote(metrics[0])

    return ReportToBoard(board)


class TrainProgress:
    """A bar over a Ray Train run's steps (metric `step` of each `ray.train.report`).

        progress = TrainProgress("fit sonar-speech", total=cfg.end_step, initial=done)
        trainer = TorchTrainer(..., run_config=RunConfig(..., callbacks=[progress.callback]))
        with progress:
            result = trainer.fit()
    """

    def __init__(self, desc: str, total: int, initial: int = 0):
        import ray

        self.desc, self.total, self.initial = desc, total, initial
        self.board = ray.remote(num_cpus=0)(_Board).remote()
        self.callback = _report_callback(self.board)
        self._stop = threading.Event()

    def _show(self, b: tqdm) -> None:
        import ray

        m = ray.get(self.board.latest.remote())
        if "step" in m:
            b.set_postfix({k: f"{m[k]:.3f}" for k in SHOWN_METRICS if k in m}, refresh=False)
            b.update(int(m["step"]) - b.n)  # may go back after a worker-group restart from a checkpoint

    def _poll(self, b: tqdm) -> None:
        while not self._stop.wait(POLL_S):
            self._show(b)

    def __enter__(self) -> TrainProgress:
        self._bar = bar(desc=self.desc, total=self.total, unit="step", initial=self.initial)
        self._thread = threading.Thread(target=self._poll, args=(self._bar,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import ray

        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            self._show(self._bar)
        self._bar.close()
        ray.kill(self.board)
