"""Grokking onset: memorization and generalization steps from evaluation curves.

``memorization_step`` / ``grokking_step`` is the first evaluation step from which train / val
accuracy stays at or above its threshold for ``patience`` consecutive evaluations (DESIGN.md).
A drop below the threshold before ``patience`` is reached resets the candidate.
"""

from __future__ import annotations

import dataclasses

# Liu et al. (the effective theory of grokking and Omnigrok): "grokking" when the test threshold is
# reached at least 10³ steps after the train threshold within a 10⁴-step budget, "comprehension" when
# sooner: the gap is this share of the run's step budget.
GROKKING_GAP_FRACTION = 0.1


@dataclasses.dataclass
class _Run:
    threshold: float
    patience: int
    candidate: int | None = None
    count: int = 0
    confirmed: int | None = None

    def update(self, step: int, value: float) -> None:
        if self.confirmed is not None:
            return
        if value >= self.threshold:
            if self.candidate is None:
                self.candidate, self.count = step, 0
            self.count += 1
            if self.count >= self.patience:
                self.confirmed = self.candidate
        else:
            self.candidate, self.count = None, 0


@dataclasses.dataclass
class OnsetTracker:
    """Feeds on (step, train_acc, val_acc) evaluations; knows the onset steps so far."""

    memorize_threshold: float = 0.99
    grok_threshold: float = 0.99
    patience: int = 2

    def __post_init__(self) -> None:
        self._train = _Run(self.memorize_threshold, self.patience)
        self._val = _Run(self.grok_threshold, self.patience)

    def update(self, step: int, train_acc: float, val_acc: float) -> None:
        self._train.update(step, train_acc)
        self._val.update(step, val_acc)

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
    def grokking_delay(self) -> int | None:
        if self.grokking_step is None or self.memorization_step is None:
            return None
        return self.grokking_step - self.memorization_step

    def state_dict(self) -> dict[str, dict[str, int | float | None]]:
        return {"train": dataclasses.asdict(self._train), "val": dataclasses.asdict(self._val)}

    def load_state_dict(self, state: dict[str, dict[str, int | float | None]]) -> None:
        self._train = _Run(**state["train"])  # type: ignore[arg-type]
        self._val = _Run(**state["val"])  # type: ignore[arg-type]


def liu_phase(memorization_step: int | None, grokking_step: int | None, budget: int) -> str:
    """Omnigrok's phases within a budget of ``budget`` steps: comprehension, grokking,
    memorization, confusion. Grokking: generalized at least ``GROKKING_GAP_FRACTION · budget``
    steps after memorizing."""
    if grokking_step is not None:
        gap = GROKKING_GAP_FRACTION * budget
        if memorization_step is not None and grokking_step - memorization_step >= gap:
            return "grokking"
        return "comprehension"
    if memorization_step is not None:
        return "memorization"
    return "confusion"
