"""Grokking beyond the Euclidean norm (Notsawo, Dumas, Rabusseau 2025): any small norm penalty
delays generalization after memorization, the delay scaling like 1/(lr·β).

Modular addition p=97 at training fraction 0.4, an MLP with per-operand embeddings, Adam without
weight decay, and a non-squared penalty β·‖W‖ (ℓ1, ℓ2 or nuclear, summed over weight matrices)
with β on a log grid. Measured with ``grokray trial``: at β = 1e-3, ℓ2 memorizes by step 500
and generalizes at 3600 (delay 3100), nuclear at 3200 (delay 2700), while ℓ1 (Σ|W| is ~100x
‖W‖_F here) does not even fit the training set (its useful β lie lower on the grid). If the
delay goes as 1/β, ℓ2 and nuclear run past the budget below ~1e-4. The headline plot is the
grokking delay (steps from memorization to generalization) against β, one line per norm: on
log-log axes a slope near −1 is the paper's 1/(lr·β) law. The sparse-recovery and depth
experiments of the paper are ``studies/sparse_recovery.py``.
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
        "lr": 1e-3,
        "weight_decay": 0.0,
        "steps": 20000,
        "eval_every": 100,
    },
    space={
        "regularizer": grid(["l1", "l2", "nuclear"]),
        # the penalties differ in size (Σ|W| over all weights is ~100x ‖W‖_F here), so the grid
        # spans the range where each of them still lets the network memorize first
        "reg_strength": grid([1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]),
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
        "space": {"regularizer": grid(["l1", "nuclear"]), "reg_strength": grid([1e-3])},
    },
)
