"""Sparse recovery and depth (Notsawo, Dumas, Rabusseau 2025): grokking without a neural network,
and "grokking without understanding".

A signal w* ∈ R^100 with 5 non-zeros is observed through 30 Gaussian measurements; a linear model
(depth 1) or a deep linear network (depth 2-3, no explicit regularizer) is fitted from a tiny
init (α = 1e-6 scale on the default init) by full-batch subgradient descent, with or without an
ℓ1 penalty. The test error (fresh measurements) and the recovery error ‖ŵ − w*‖ / ‖w*‖ are
logged side by side: with ℓ1 or depth the test error drops long after the training error, and
the recovery error tells whether the drop is recovery of w* or not.
"""

from grokray import Plot, Study, grid

study = Study(
    name="sparse-recovery",
    description=__doc__,
    config={
        "task": "sparse_recovery",
        "dim": 100,
        "sparsity": 5,
        "train_size": 30,
        "test_size": 1000,
        "model": "linear",
        "bias": False,
        "width": 100,
        "init_scale": 1e-6,
        "loss": "mse",
        "optimizer": "sgd",
        "momentum": 0.0,
        "lr": 0.01,
        "weight_decay": 0.0,
        "reg_strength": 1e-3,
        "steps": 20000,
        "eval_every": 100,
        "grok_threshold": 0.95,
    },
    space={"depth": grid([1, 2, 3]), "regularizer": grid(["none", "l1"])},
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("curves", y="val_loss", color="depth", logx=True, logy=True, title="test error vs step"),
        Plot("curves", y="recovery_error", color="depth", logx=True, logy=True),
        Plot("trials", x="depth", y="final_recovery_error", color="regularizer", logy=True),
    ],
    quick={"steps": 300, "eval_every": 50, "seeds": 1, "space": {"depth": grid([1, 2])}},
)
