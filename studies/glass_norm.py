"""Zhang et al. 2025, Sec. 4.2 / Fig. 6: a fixed weight norm removes grokking, at every width.

x + y mod 67 on a 1-layer transformer with 4 heads at three widths (d_model 32, 64, 128; MLP
4·d_model = 128, 256, 512, the paper's Table 1), 50 % split, full-batch AdamW at lr 1e-3 and no
weight decay, the paper's setting. ``norm_constraint`` = 30 rescales all parameters to global ℓ2
norm 30 after every step (the paper's Goldilocks value from Omnigrok); 0 leaves the norm free,
the unconstrained control. The paper: with the constraint, the three widths generalize after about
the same number of steps with no grokking, i.e. no gap between memorization and generalization.
The headline plot is the grokking delay (steps from memorization to generalization) against the
width, one line per constraint; runs that do not generalize within the budget are counted in the
title. The scaled measurement is ``make reproduce`` row ``zhang-norm``.
"""

from grokray import Plot, Study, grid

study = Study(
    name="glass-norm",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 67,
        "train_fraction": 0.5,
        "model": "transformer",
        "heads": 4,
        "depth": 1,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "steps": 10000,
        "eval_every": 50,
    },
    space={"width": grid([32, 64, 128]), "norm_constraint": grid([0.0, 30.0])},
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("trials", x="width", y="grokking_delay", color="norm_constraint"),
        Plot("curves", y="val_acc", color="norm_constraint", logx=True),
        Plot("curves", y="weight_norm", color="norm_constraint", logx=True),
    ],
    quick={
        "p": 11,
        "steps": 100,
        "eval_every": 50,
        "seeds": 1,
        "space": {"width": grid([16, 32]), "norm_constraint": grid([0.0, 30.0])},
    },
)
