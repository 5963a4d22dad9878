"""Doshi et al.'s phases of a run at the end of training, with label corruption ξ.

Accuracies are fractions in [0, 1]; train accuracy is measured on the corrupted training set,
test (validation) accuracy on clean labels. With G = 0.9 and the inversion threshold
I = 1.05 − ξ (100(1.05 − ξ) % in the paper):

| test acc | train acc        | phase               |
|----------|------------------|---------------------|
| ≥ G      | ≥ G              | ``coexistence``     |
| ≥ G      | I ≤ train < G    | ``partial_inversion`` |
| ≥ G      | < I (and < G)    | ``full_inversion``  |
| < G      | ≥ G              | ``memorization``    |
| < G      | < G, generalized | ``forgetting``      |
| < G      | < G, never       | ``confusion``       |

"generalized" means test accuracy was ≥ G at some evaluation (``ever_generalized``). For ξ ≤ 0.15
the inversion threshold is at or above G, so there is no partial inversion: train < G is full
inversion. Omnigrok's phases (``liu_phase``) live in ``onset.py``.
"""

from __future__ import annotations

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
