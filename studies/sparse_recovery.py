"""Sparse recovery and depth (Notsawo, Dumas, Rabusseau 2025): grokking without a neural network,
depth as an implicit ℓ1, and "grokking without understanding".

A signal w* ∈ R^100 with 5 non-zeros (‖w*‖ = 1) is observed through N = 30 Gaussian measurements
(one fixed instance: the seed changes nothing here, so one seed) and fitted by full-batch
(sub)gradient descent on the mean squared error. The model is the diagonal network
(``grokray.models.diagonal``): depth 1 is the plain linear w; depth D ≥ 2 is
w = u₊⁽¹⁾⊙⋯⊙u₊⁽ᴰ⁾ − u₋⁽¹⁾⊙⋯⊙u₋⁽ᴰ⁾ from all-ones factors times ``init_scale``. Three arms:

- ``l1``: β‖w‖₁ (at depth ≥ 2 on every factor), init 1e-6: the training error vanishes within a few
  hundred steps, the recovery error ‖ŵ − w*‖/‖w*‖ stays near that of the minimum-norm interpolator
  (0.84) and drops abruptly at t2 ≈ 0.78/(lr·β) steps (measured: the paper's law t2 ∝ 1/(α·β)).
- ``none``: no penalty. Depth 1 from ~0 ends at the minimum-norm interpolator (recovery error 0.84,
  never recovers); depth 2 and 3 at small init recover w* (their gradient descent prefers sparse w).
  Each depth starts from the smallest init it escapes within the budget (the escape from 0 takes
  ~α^(2−D)/(lr·|∇|) steps): 1e-6 at depth 1 and 2, 1e-2 at depth 3 (the paper's deep runs: 1e-2).
- ``l2``: β‖w‖₂ (non-squared) from a large init (10 per coordinate, the paper's): the test error
  falls by four orders of magnitude long after memorization, yet the recovery error ends at the
  minimum-norm interpolator's 0.84 — a drop of the test error that is not recovery of w*.

The onset is the paper's: t2 = the first step with recovery error ≤ 1e-4 (``grok_metric``), t1 =
the first with training MSE ≤ 1e-4 (``memorize_metric``; targets have unit variance). lr 0.05 and
β = 2e-5 are the paper's α = 0.1, β = 1e-5 (its loss is ½‖Xa − y‖² with X = A/√N: half this
study's gradient; its w* is not normalized, ‖a*‖ ≈ 0.2, so its t2 are shorter), where the ℓ1
plateau (≈ 2·β) sits below 1e-4 and t2 ≈ 7.9e5 steps: hence the 1e6-step budget. Without a
penalty at depth ≥ 2 the recovery error keeps falling slowly (≈ 4e-4 after 1e6 steps at depth 2;
≤ 1e-4 needs a smaller init): their onset is censored, read ``final_recovery_error``.
``make reproduce`` (rows ``notsawo-sparse-l1``, ``notsawo-sparse-depth``) runs scaled versions on
a CPU: see the README for the measured numbers. The 1e6-step figures
above (t2 = 788,000 for ℓ1, 4.4e-4 at depth 2) come from a float64 NumPy re-implementation of
the same updates; grokray itself was not run for 1e6 steps on CPU (≈ 1.5 ms a step, mostly the
replica engine's per-step overhead).
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
        "model": "diagonal",
        "bias": False,
        "init_scale": 1e-6,
        "loss": "mse",
        "optimizer": "sgd",
        "momentum": 0.0,
        "lr": 0.05,
        "weight_decay": 0.0,
        "steps": 1_000_000,
        "eval_every": 1000,
        "memorize_metric": "train_loss",
        "memorize_threshold": 1e-4,
        "grok_metric": "recovery_error",
        "grok_threshold": 1e-4,
    },
    space={"regularizer": grid(["l1", "none", "l2"])},
    linked={
        "regularizer": {
            "l1": {"depth": grid([1, 2, 3], default=1), "reg_strength": 2e-5},
            "none": {"depth": grid([1, 2, 3], default=2)},
            "l2": {"depth": 1, "init_scale": 10.0, "reg_strength": 0.1},
        },
        # after the regularizer's values (linked values apply in this order): depth 3's own init
        "depth": {3: {"init_scale": 1e-2}},
    },
    seeds=1,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("curves", y="recovery_error", color="depth", logx=True, logy=True, title="recovery error"),
        Plot("curves", y="val_loss", color="regularizer", logx=True, logy=True, title="test error vs step"),
        Plot("trials", x="depth", y="final_recovery_error", color="regularizer", logy=True),
    ],
    quick={"steps": 300, "eval_every": 50, "space": {"regularizer": grid(["none"])}},
)
