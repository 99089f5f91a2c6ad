"""A Ray Data execution callback that keeps an idle training stream from spinning."""

from __future__ import annotations

import time

from ray.data._internal.execution.execution_callback import ExecutionCallback

IDLE_SLEEP_S = 0.05  # delays the next dispatch by at most this; a stream that is ahead can afford it


class IdleBackoff(ExecutionCallback):
    """Ray Data's scheduling loop blocks (in `ray.wait`) only until some task is done. A stream that
    is ahead of its consumer, as a training stream is while the step runs, holds finished tasks whose
    output it may not take yet, so each loop step returns at once and the loop spins; it runs in a
    thread of the training worker, so the spin takes the GIL from the training step (measured on the
    demo: ~3x slower steps; benchmarks/bench_ingest.py). A loop step that changed nothing sleeps."""

    def __init__(self):
        self._last = None

    def on_execution_step(self, executor) -> None:
        topology = getattr(executor, "_topology", None) or {}
        now = tuple((op.metrics.num_tasks_submitted, op.metrics.num_task_outputs_generated,
                     op.metrics.num_outputs_taken) for op in topology)
        if now == self._last:
            time.sleep(IDLE_SLEEP_S)
        self._last = now
