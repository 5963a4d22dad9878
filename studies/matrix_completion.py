"""Low-rank matrix completion and depth (Notsawo, Dumas, Rabusseau 2025): the nuclear norm, and
depth without explicit regularization.

A 10 × 10 matrix M* of rank 2 is observed on N = 80 of its 100 entries (a different 80 per seed)
and fitted by full-batch gradient descent on the mean squared error of the observed entries, by
a deep linear network M̂ = W_D ⋯ W_1 (``model="linear"``, square 10 × 10 factors, no bias, PyTorch's
default init times ``init_scale``). The recovery error ‖M̂ − M*‖_F / ‖M*‖_F is logged beside the
test error (the 20 unobserved entries). Two arms:

- ``nuclear``: depth 1 (M̂ = W) with β·‖W‖_* (the sum of singular values, non-squared): the
  training error vanishes at once, the unobserved entries follow later, when the penalty has
  pulled the fit to low rank (the recovery plateau is ∝ β: 3.3e-4 at β = 2e-5). At the study's
  lr 20 and β = 5e-6 grokray measured t1 = 500 and t2 = 66,500 steps (seed 0, ``grokray trial
  studies/matrix_completion.py --set regularizer=nuclear``).
- ``none``: no penalty. Depth 1 from ~0 never moves the unobserved entries (the minimum-norm fit
  leaves them at their init: recovery error ≈ 0.4); depth 2 and 3 at small init recover M*, the
  implicit low-rank bias of gradient descent on a product of matrices. Each depth starts from the
  smallest init it escapes from within the budget: 1e-3 at depth 2, 1e-2 at depth 3.

Units: with this loss (the mean over the 80 observed entries) lr 1 is α = 0.025 on the paper's
½‖P(M̂) − y‖², and β is 40 times smaller, so α·β is the same in both (the study's nuclear arm is
α = 0.5, β = 2e-4 in the paper's units; the paper ran α = 0.1, β = 1e-4 for up to 1e7 steps).
Depth 3 diverges at lr 4. The onset is the paper's t2, the first step with recovery error ≤ 1e-4
(``grok_metric``), and t1 the first with training MSE ≤ 1e-6 (the entries' RMS is ≈ 1).
``make reproduce`` (row ``notsawo-matrix``) measures the depth contrast on a CPU; see the README.
"""

from grokray import Plot, Study, grid

study = Study(
    name="matrix-completion",
    description=__doc__,
    config={
        "task": "matrix_completion",
        "matrix_size": 10,
        "rank": 2,
        "train_size": 80,
        "model": "linear",
        "width": 10,
        "bias": False,
        "init_scale": 1e-6,
        "loss": "mse",
        "optimizer": "sgd",
        "momentum": 0.0,
        "lr": 1.0,
        "weight_decay": 0.0,
        "steps": 200_000,
        "eval_every": 500,
        "memorize_metric": "train_loss",
        "memorize_threshold": 1e-6,
        "grok_metric": "recovery_error",
        "grok_threshold": 1e-4,
    },
    space={"regularizer": grid(["none", "nuclear"])},
    linked={
        "regularizer": {
            "none": {"depth": grid([1, 2, 3], default=2)},
            "nuclear": {"depth": 1, "lr": 20.0, "reg_strength": 5e-6},
        },
        # after the regularizer's values (linked values apply in this order): each depth's init
        "depth": {2: {"init_scale": 1e-3}, 3: {"init_scale": 1e-2}},
    },
    seeds=3,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("curves", y="recovery_error", color="depth", logx=True, logy=True, title="recovery error"),
        Plot("curves", y="val_loss", color="regularizer", logx=True, logy=True, title="test error vs step"),
        Plot("trials", x="depth", y="final_recovery_error", color="regularizer", logy=True),
    ],
    quick={"steps": 300, "eval_every": 50, "seeds": 1, "space": {"regularizer": grid(["none"])}},
)
