"""Grokking beyond the Euclidean norm (Notsawo, Dumas, Rabusseau 2025): any small norm penalty
delays generalization after memorization, the delay scaling like 1/(lr·β).

Modular addition at training fraction 0.4 (p = 97 here, the paper's), an MLP with per-operand
embeddings, Adam without weight decay (betas 0.9, 0.999: torch's defaults, the paper's), and a
non-squared penalty β·‖W‖ (ℓ1, ℓ2 or nuclear, summed over the weight matrices). Each norm has its
own β grid (ℓ1's Σ|W| is far larger than ‖W‖_F or Σσ, so its useful β lie lower), and
``regularizer="none"`` is the β = 0 control: it memorizes and does not generalize within the budget.
The answer is the slope of log(delay) against log(lr·β), per norm and pooled, with its 95 % CI
(``grokray.analysis.slope``): the paper's law is a slope of −1.

Measured (``make reproduce``, row ``notsawo-modular``: p = 31, training fraction 0.8, 95 %
validation accuracy, lr 1e-2 and 3e-3, 2 seeds, 6,000 steps): slopes ℓ1 −0.37 [−0.54, −0.21],
ℓ2 −0.55 [−0.61, −0.50], nuclear −0.57 [−0.62, −0.51] (OLS 95 % t-intervals), pooled −0.52; the
two lrs fall on one line in lr·β (slope vs β at fixed lr: ℓ2 −0.57 / −0.51, nuclear −0.56 /
−0.53), and the β = 0 control memorized and never generalized (4/4 runs). So the delay is a
function of lr·β, but under Adam it falls like (lr·β)^−0.5, not 1/(lr·β) (a likely reason, not
tested: Adam rescales the penalty's gradient, and 1/(lr·β) is the gradient-descent law). The β grids
were chosen where the delays fit the row's budget at p = 31. The paper's model
multiplies the two operand embeddings as matrices; grokray's MLP concatenates them. The paper's
setting at p = 97 was not measured (a GPU study).
The sparse-recovery and depth experiments of the paper are ``studies/sparse_recovery.py``.
"""

from grokray import Plot, Study, grid

study = Study(
    name="regularizers",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 97,
        "train_fraction": 0.4,
        "model": "mlp",
        "embed_dim": 32,
        "width": 128,
        "depth": 1,
        "optimizer": "adam",
        "lr": 1e-2,
        "beta2": 0.999,
        "weight_decay": 0.0,
        "steps": 20000,
        "eval_every": 100,
    },
    space={
        "regularizer": grid(["l1", "l2", "nuclear", "none"], default="nuclear"),
    },
    linked={
        "regularizer": {
            "l1": {"reg_strength": grid([1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4], default=5e-5)},
            "l2": {"reg_strength": grid([1e-4, 2e-4, 5e-4, 1e-3, 3e-3, 1e-2], default=1e-3)},
            "nuclear": {"reg_strength": grid([1e-4, 2e-4, 5e-4, 1e-3, 3e-3, 1e-2], default=1e-3)},
        },
    },
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("trials", x="reg_strength", y="grokking_delay", color="regularizer", logx=True, logy=True),
        Plot("curves", y="val_acc", color="reg_strength", logx=True),
        Plot("curves", y="l1", color="regularizer", logx=True),
    ],
    quick={
        "p": 23,
        "train_fraction": 0.5,
        "steps": 300,
        "eval_every": 50,
        "seeds": 1,
        "space": {"regularizer": grid(["nuclear"])},
    },
)
