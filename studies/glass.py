"""Grokking as computational glass relaxation (Zhang et al. 2025): noise temperature × optimizer.

x + y mod 67 on a 1-layer transformer (d_model 128, 4 heads, MLP 512) with a 50 % split. Adaptive
optimizers "cool" fast and trap the network in a memorizing glass; noise (Langevin temperature T
on top of AdamW or SGD) or WanD (underdamped Langevin with a Wang–Landau entropy bias; the
paper's k_B T 0.5, friction 0.5) lets it relax into the generalizing state. The headline plot is
the steps to generalize against T, one line per optimizer (runs that never generalize within the
budget are counted in the title). On a CPU this is the slowest shipped study: run it on a GPU.
"""

from grokray import Plot, Study, grid

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
        "weight_decay": 0.0,
        "friction": 0.5,
        "steps": 20000,
        "eval_every": 100,
    },
    space={
        "optimizer": grid(["adamw", "sgd", "wand"]),
        "temperature": grid([0.0, 1e-4, 1e-3, 1e-2, 0.5]),
    },
    # each optimizer at its own step size: wand's lr is its time step dt (a step moves θ by
    # about lr²·∇ln L), SGD needs a larger one than Adam
    linked={"optimizer": {"adamw": {"lr": 1e-3}, "sgd": {"lr": 0.1}, "wand": {"lr": 0.5}}},
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("trials", x="temperature", y="grokking_step", color="optimizer"),
        Plot("curves", y="val_acc", color="optimizer", logx=True),
    ],
    quick={
        "p": 11,
        "width": 32,
        "steps": 100,
        "eval_every": 50,
        "seeds": 1,
        "space": {"optimizer": grid(["adamw", "wand"]), "temperature": grid([0.0, 0.5])},
    },
)
