"""Grokking onset: memorization and generalization steps from evaluation curves.

``memorization_step`` / ``grokking_step`` is the first evaluation step from which the curve named
by ``memorize_metric`` / ``grok_metric`` stays on the good side of its threshold for ``patience``
consecutive evaluations: an accuracy at or above it (``train_acc``, ``val_acc``), a
loss or error at or below it (``train_loss``, ``val_loss``, ``recovery_error``: Notsawo et al.'s
t2 is the first step with relative recovery error ≤ 1e-4). A step on the wrong side before
``patience`` is reached resets the candidate; so does a NaN (a diverged run never onsets).
"""

from __future__ import annotations

import dataclasses

#: Each onset curve and the side of its threshold that counts: "above" (≥) or "below" (≤).
DIRECTIONS = {
    "train_acc": "above",
    "val_acc": "above",
    "train_loss": "below",
    "val_loss": "below",
    "recovery_error": "below",
}
MEMORIZE_METRICS = ("train_acc", "train_loss")
GROK_METRICS = ("val_acc", "val_loss", "recovery_error")


@dataclasses.dataclass
class _Run:
    threshold: float
    patience: int
    candidate: int | None = None
    count: int = 0
    confirmed: int | None = None
    direction: str = "above"

    def update(self, step: int, value: float) -> None:
        if self.confirmed is not None:
            return
        if value >= self.threshold if self.direction == "above" else value <= self.threshold:
            if self.candidate is None:
                self.candidate, self.count = step, 0
            self.count += 1
            if self.count >= self.patience:
                self.confirmed = self.candidate
        else:
            self.candidate, self.count = None, 0


@dataclasses.dataclass
class OnsetTracker:
    """Feeds on evaluations (step, train_acc, val_acc and any other curves by name); knows the
    onset steps so far."""

    memorize_threshold: float = 0.99
    grok_threshold: float = 0.99
    patience: int = 2
    memorize_metric: str = "train_acc"
    grok_metric: str = "val_acc"

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("memorize_metric", self.memorize_metric, MEMORIZE_METRICS),
            ("grok_metric", self.grok_metric, GROK_METRICS),
        ):
            if value not in allowed:
                raise ValueError(f"{field}: got {value!r}; allowed: {', '.join(allowed)}")
        self._train = _Run(self.memorize_threshold, self.patience, direction=DIRECTIONS[self.memorize_metric])
        self._val = _Run(self.grok_threshold, self.patience, direction=DIRECTIONS[self.grok_metric])

    def update(self, step: int, train_acc: float, val_acc: float, **curves: float) -> None:
        """One evaluation; ``curves`` holds the other curves of the record (train_loss, val_loss,
        recovery_error, ...), of which a loss-selected onset reads its own."""
        values = {"train_acc": train_acc, "val_acc": val_acc, **curves}
        for run, metric in ((self._train, self.memorize_metric), (self._val, self.grok_metric)):
            if metric not in values:
                raise ValueError(
                    f"{metric}: this run has no such curve (it has {', '.join(sorted(values))}); "
                    "recovery_error exists for sparse_recovery and matrix_completion only"
                )
            run.update(step, float(values[metric]))

    @property
    def memorization_step(self) -> int | None:
        return self._train.confirmed

    @property
    def grokking_step(self) -> int | None:
        return self._val.confirmed

    @property
    def grokked(self) -> bool:
        return self._val.confirmed is not None

    @property
    def grok_pending(self) -> bool:
        """The grok curve is on the good side of its threshold at the last evaluation, but not yet
        for ``patience`` evaluations: at the budget, a run that generalized too late to confirm."""
        return self._val.confirmed is None and self._val.candidate is not None

    @property
    def grokking_delay(self) -> int | None:
        if self.grokking_step is None or self.memorization_step is None:
            return None
        return self.grokking_step - self.memorization_step

    def state_dict(self) -> dict[str, dict[str, int | float | str | None]]:
        return {"train": dataclasses.asdict(self._train), "val": dataclasses.asdict(self._val)}

    def load_state_dict(self, state: dict[str, dict[str, int | float | str | None]]) -> None:
        self._train = _Run(**state["train"])  # type: ignore[arg-type]
        self._val = _Run(**state["val"])  # type: ignore[arg-type]
