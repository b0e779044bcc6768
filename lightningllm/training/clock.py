"""The training clock: each step's wall-clock time, the total so far, and the ``train_minutes`` budget.

A step's time runs from the end of the previous step to the end of this one, so it includes
loading its batch; after a validation run or at an epoch start it runs from the step's own
start instead, so validation time is never training time. The total travels in checkpoints,
so a resumed run keeps its budget and the learning-rate schedule that decays over it.
"""

from __future__ import annotations

import time


class TrainingClock:
    """Training wall-clock so far and an optional budget of minutes."""

    def __init__(self, budget_minutes: float | None = None):
        if budget_minutes is not None and budget_minutes <= 0:
            raise ValueError(f"model.train_minutes must be positive, got {budget_minutes}")
        self.budget_seconds = None if budget_minutes is None else 60.0 * budget_minutes
        self.seconds = 0.0
        self._step_start = 0.0
        self._last_end: float | None = None

    def pause(self) -> None:
        """The next step is timed from its own start (after validation, at an epoch start)."""
        self._last_end = None

    def step_started(self) -> None:
        self._step_start = time.perf_counter()

    def step_ended(self) -> float:
        """Record a finished step; returns its seconds (batch loading included)."""
        now = time.perf_counter()
        elapsed = now - (self._last_end if self._last_end is not None else self._step_start)
        self._last_end = now
        self.seconds += elapsed
        return elapsed

    @property
    def progress(self) -> float | None:
        """Share of the budget spent (may pass 1.0 on the last step); None without a budget."""
        return None if self.budget_seconds is None else self.seconds / self.budget_seconds

    @property
    def expired(self) -> bool:
        return self.budget_seconds is not None and self.seconds >= self.budget_seconds
