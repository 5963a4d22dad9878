"""Phase boundary: the critical training fraction of modular addition against weight decay, by a
grid (the reference for ``weight_decay_boundary.py``; Power et al. 2022).

The same task, model, optimizer and 5000-step budget as ``weight_decay_boundary.py``: training
fraction 0.15 to 0.95 in steps of 0.05 (17 sizes), two seeds each, at weight decays 0.1, 0.3 and 1,
largest fraction first with the monotone rule (a fraction below one where every seed failed is not
trained). One critical fraction per weight decay, and the phase boundary drawn over them.
"""

from grokray import Plot, Study, grid

study = Study(
    name="weight-decay-grid",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 31,
        "model": "mlp",
        "embed_dim": 32,
        "width": 128,
        "depth": 1,
        "optimizer": "adamw",
        "lr": 1e-2,
        "steps": 5000,
        "eval_every": 50,
        "grok_threshold": 0.99,
        "patience": 2,
    },
    space={
        "train_fraction": grid([round(0.15 + 0.05 * i, 2) for i in range(17)]),
        "weight_decay": grid([0.1, 0.3, 1.0]),
    },
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[Plot("trials", x="train_fraction", y="grokking_step", color="weight_decay")],
    quick={
        "steps": 1500,
        "seeds": 1,
        "space": {"train_fraction": grid([0.3, 0.9]), "weight_decay": grid([0.3, 1.0])},
    },
)
