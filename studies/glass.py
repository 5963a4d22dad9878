"""Grokking as computational glass relaxation (Zhang et al. 2025): noise temperature × optimizer.

x + y mod 67 on a 1-layer transformer (d_model 128, 4 heads, MLP 512) with a 50 % split, full
batch. Adaptive optimizers "cool" fast and trap the network in a memorizing glass; noise lets it
relax into the generalizing state. Each optimizer runs at its own settings and its own temperature
grid, because ``temperature`` is not one quantity across them:

- ``adamw``: the paper's baseline (Table 1, x + y: lr 3e-3, weight decay 1). T adds Langevin noise
  θ ← θ + sqrt(2·lr·T)·ξ after each Adam step: at lr 3e-3, T = 1e-4 moves each weight by ~8e-4 a
  step, as much as Adam's own step, so its grid stops there.
- ``sgd``: lr 0.1 with momentum 0.9 and no weight decay, both set here; T as for AdamW, a kick
  of sqrt(2·0.1·T) per step.
- ``wand``: the paper's WanD (``grokray.optim.wand``): T is k_B·T, the variance of every velocity
  (initial Maxwell–Boltzmann draw and the thermostat), friction c_f = 0.5, entropy bias
  β·(ln L − L0)² above L0 = −8, no weight decay, and lr = dt = 3e-3, the paper's "same learning
  rate as AdamW". The paper's x + y setting is k_B·T = 0.5 on the middle of this grid. Its β is not
  in the paper's text (only in its code, not reachable here); β = 700 was chosen by measurement at
  p = 41, d_model 32 (``make reproduce`` row ``zhang-wand``, 5k steps; an earlier sweep: β ≤ 300
  stays on the initial plateau), a larger β descends sooner but spikes harder. A sweep there (the
  row's settings through ``grokray.reproduce.core.run_configs`` with ``wand_beta=…``,
  ``wand_wl_height=…`` overrides; peak val acc, max train loss over the seeds): β 700 (3 seeds)
  0.93–0.94, 11–155; β 1000 (3) 0.88–0.95, 29–154; β 1400 (3) 0.80–0.93, 23–183, final val
  0.00–0.89; β 700 with F_WL 1 (2) 0.93–0.94, 17; β 500 with F_WL 1 (2) 0.88–0.95, 3.7–39;
  β 600 (2) 0.90–0.92, 4.3–14. No setting tried holds val ≥ 0.9 without a
  spike of the train loss past 2·ln p in every seed; the update follows the paper's description
  term by term, so at this scale the row fails. At this study's own size it does not explode
  (loss 4.2, weight norm 21.9 → 32.5 in 200 steps, the thermal diffusion
  dt·sqrt(k_B·T·(2 − c_f)/c_f·t·N) expects 32.5); whether it generalizes stably there is not
  measured.

The headline figure is Liu et al.'s phase (comprehension / grokking / memorization / confusion)
at each temperature, one panel per optimizer (the temperatures are on different scales), with the
validation-accuracy and weight-norm curves beside it (WanD's norm grows by thermal diffusion, to
~175 in the paper, without losing generalization). On a CPU this is the slowest shipped study: run
it on a GPU. The paper's norm-constraint result is ``studies/glass_norm.py``.
"""

from grokray import Plot, Study, grid

WAND_BETA = 700.0

study = Study(
    name="glass",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 67,
        "train_fraction": 0.5,
        "model": "transformer",
        "width": 128,
        "heads": 4,
        "depth": 1,
        "steps": 10000,
        "eval_every": 100,
    },
    space={"optimizer": grid(["adamw", "sgd", "wand"])},
    linked={
        "optimizer": {
            "adamw": {"lr": 3e-3, "weight_decay": 1.0, "temperature": grid([0.0, 1e-6, 1e-5, 1e-4])},
            "sgd": {
                "lr": 0.1,
                "momentum": 0.9,
                "weight_decay": 0.0,
                "temperature": grid([0.0, 1e-5, 1e-4, 1e-3]),
            },
            "wand": {
                "lr": 3e-3,
                "weight_decay": 0.0,
                "friction": 0.5,
                "wand_beta": WAND_BETA,
                "wand_l0": -8.0,
                "temperature": grid([0.0, 0.25, 0.5, 1.0]),
            },
        }
    },
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot(
            "phase",
            x="temperature",
            y="lr",
            value="phase",
            facet="optimizer",
            title="phase at each optimizer's own temperatures",
        ),
        Plot("curves", y="val_acc", color="optimizer", logx=True),
        Plot("curves", y="weight_norm", color="optimizer", logx=True),
    ],
    quick={
        "p": 11,
        "width": 32,
        "steps": 100,
        "eval_every": 50,
        "seeds": 1,
        "space": {"optimizer": grid(["adamw", "wand"])},
    },
)
