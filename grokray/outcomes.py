"""A run's outcome, decided in one place: the outcome keys, why a run stopped, its phases (Liu
et al.'s and Doshi et al.'s), and the objectives a Tune trial reports to Optuna.

The engine (``grokray.engine``) calls ``stop_reason`` and ``outcome_of`` at every evaluation; the
Tune side only marks what it alone knows (``mark_dominated``: the monotone stopper ended the run;
``mark_failed``: the trial raised). Imports neither torch, Ray nor MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

OUTCOME_KEYS = (
    "memorization_step",
    "grokking_step",
    "grokking_delay",
    "grokked",
    "steps_run",
    "final_train_acc",
    "final_val_acc",
    "final_train_loss",
    "final_val_loss",
    "phase",
    "stop_reason",
    "grok_unconfirmed",
)

# Keys of an evaluation record that are bookkeeping or outcome; every other number is a curve
# (an MLflow metric per step and a column of curves.parquet).
NOT_CURVES = frozenset(
    (*OUTCOME_KEYS, "step", "replica", "n_train", "n_total", "elapsed_s", "doshi_phase", "ever_generalized")
)


def curve_keys(record: Mapping[str, Any]) -> list[str]:
    """The names in an evaluation record that are curves."""
    return [
        key
        for key, value in record.items()
        if key not in NOT_CURVES and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


#: Why a run ended: ``running`` (not yet), ``grokked`` (generalization confirmed, with early
#: stopping), ``budget`` (every step trained), ``diverged`` (a non-finite loss), ``stopped`` (the
#: caller of the reference loop stopped it), ``dominated`` (the monotone stopper: below sizes that
#: did not grok), ``failed`` (the trial raised).
STOP_REASONS = ("running", "grokked", "budget", "diverged", "stopped", "dominated", "failed")


def stop_reason(*, diverged: bool, grokked: bool, stop_on_grok: bool, last_step: bool) -> str:
    """The stop reason of a record of the engine: divergence first, then grokking (when it ends
    the run), then the budget."""
    if diverged:
        return "diverged"
    if grokked and stop_on_grok:
        return "grokked"
    if last_step:
        return "budget"
    return "running"


class Onset(Protocol):
    memorization_step: int | None
    grokking_step: int | None
    grokking_delay: int | None
    grokked: bool
    grok_pending: bool


def outcome_of(onset: Onset, record: Mapping[str, Any], reason: str, budget: int) -> dict[str, Any]:
    """The outcome keys from the onset tracker and the last evaluation record."""
    return {
        "memorization_step": onset.memorization_step,
        "grokking_step": onset.grokking_step,
        "grokking_delay": onset.grokking_delay,
        "grokked": onset.grokked,
        "steps_run": record["step"],
        "final_train_acc": record["train_acc"],
        "final_val_acc": record["val_acc"],
        "final_train_loss": record["train_loss"],
        "final_val_loss": record["val_loss"],
        "phase": liu_phase(onset.memorization_step, onset.grokking_step, budget),
        "stop_reason": reason,
        # at the budget above the grok threshold, too late for ``patience`` evaluations to confirm
        # it: not grokked within the budget, but flagged (tables, figures, run names), not a plain failure
        "grok_unconfirmed": reason == "budget" and onset.grok_pending,
    }


def outcome_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """The outcome keys of a record (None where it has none)."""
    return {key: record.get(key) for key in OUTCOME_KEYS}


def mark_dominated(record: dict[str, Any]) -> None:
    """A running seed the monotone stopper ends: ``dominated``, its phase not observed."""
    if record.get("stop_reason") == "running":
        record.update(stop_reason="dominated", phase=None)


def mark_failed(record: dict[str, Any]) -> None:
    """A seed of a trial that raised: ``failed``, grokked unknown."""
    record.update(stop_reason="failed", grokked=None)


# ---------------------------------------------------------------------------------------------
# Objectives: meaningful at any stop (a stopped trial reaches Optuna with its last result)

OBJECTIVES = {
    # name: (metric reported to Tune, mode)
    "boundary": ("boundary_score", "min"),
    "steps_to_grok": ("censored_grokking_step", "min"),
    "val_acc": ("final_val_acc", "max"),
}


def objectives(record: Mapping[str, Any], budget: int) -> dict[str, float]:
    """``censored_grokking_step``: the grokking step, or twice the budget if it has not grokked;
    ``boundary_score``: the training fraction if grokked, else 2 - fraction. Minimizing it seeks
    the smallest data that still groks, so the sampler concentrates near the critical size."""
    fraction = float(record.get("train_fraction", 0.0))
    grokked = bool(record.get("grokked"))
    return {
        "censored_grokking_step": float(record["grokking_step"]) if grokked else 2.0 * budget,
        "boundary_score": fraction if grokked else 2.0 - fraction,
        "final_val_acc": float(record.get("val_acc", record.get("final_val_acc", 0.0))),
    }


# ---------------------------------------------------------------------------------------------
# Phases

# Liu et al. (the effective theory of grokking and Omnigrok): "grokking" when the test threshold is
# reached at least 10³ steps after the train threshold within a 10⁴-step budget, "comprehension" when
# sooner: the gap is this share of the run's step budget.
GROKKING_GAP_FRACTION = 0.1


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


# Doshi et al.'s phases of a run at the end of training, with label corruption ξ.
#
# Accuracies are fractions in [0, 1]; train accuracy is measured on the corrupted training set,
# test (validation) accuracy on clean labels. With G = 0.9 and the inversion threshold
# I = 1.05 − ξ (100(1.05 − ξ) % in the paper):
#
# | test acc | train acc        | phase               |
# |----------|------------------|---------------------|
# | ≥ G      | ≥ G              | ``coexistence``     |
# | ≥ G      | I ≤ train < G    | ``partial_inversion`` |
# | ≥ G      | < I (and < G)    | ``full_inversion``  |
# | < G      | ≥ G              | ``memorization``    |
# | < G      | < G, generalized | ``forgetting``      |
# | < G      | < G, never       | ``confusion``       |
#
# "generalized" means test accuracy was ≥ G at some evaluation (``ever_generalized``). For ξ ≤ 0.15
# the inversion threshold is at or above G, so there is no partial inversion: train < G is full
# inversion. Omnigrok's phases: ``liu_phase`` above.

GENERALIZED = 0.9  # Doshi et al.: the 90 % accuracy line
INVERSION_MARGIN = 1.05  # full inversion: train accuracy below 100(1.05 − ξ) %
_TOLERANCE = 1e-9  # 1.05 − 0.3 is 0.7500000000000001 in floating point; boundaries are inclusive

DOSHI_PHASES = (
    "coexistence",
    "partial_inversion",
    "full_inversion",
    "memorization",
    "forgetting",
    "confusion",
)


def doshi_phase(train_acc: float, val_acc: float, corruption: float, ever_generalized: bool) -> str:
    """The phase of a run from its final accuracies, its corruption ξ and whether it ever generalized."""
    for name, value in (("train_acc", train_acc), ("val_acc", val_acc), ("corruption", corruption)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: got {value}; allowed: a fraction in [0, 1]")
    if val_acc >= GENERALIZED - _TOLERANCE:
        if train_acc >= GENERALIZED - _TOLERANCE:
            return "coexistence"
        if train_acc >= INVERSION_MARGIN - corruption - _TOLERANCE:
            return "partial_inversion"
        return "full_inversion"
    if train_acc >= GENERALIZED - _TOLERANCE:
        return "memorization"
    return "forgetting" if ever_generalized else "confusion"
