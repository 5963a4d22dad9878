"""Phase boundary: the critical training fraction of modular addition against weight decay, by
boundary search (issue 15; Power et al. 2022, Omnigrok's picture: weight decay cuts the data needed).

The default study's task and model (x + y mod 31, a one-hidden-layer MLP with per-operand
embeddings, full-batch AdamW, lr 1e-2, a 5000-step budget) at three weight decays, 0.1, 0.3 and 1.
The boundary sampler runs one search per weight decay, sharing the packs: each places its runs where
they tell most about that weight decay's critical fraction per model-step, and the study stops when
every group's 95 % interval is narrower than ``precision`` or ``max_steps_total`` model-steps are
spent (here what ``weight_decay_grid.py``, the same range as a 17 × 2 grid, spent when measured:
``make bench ARGS=--boundary`` compares the two in one run). The estimate has one critical fraction
per weight decay, and ``phase_boundary.png`` draws the boundary with its band over the sampled runs.

Scaled down from Power et al. (a transformer, 10^5 steps): the MLP groks within 5000 steps on 2
CPU cores, and the effect survives the scale: from weight decay 0.1 to 1 the critical fraction
drops from about 0.78 to about 0.50 (measured, README). Above 1 it rises again (3: about 0.55), so
the study stops at 1 where the curve is monotone.
"""

from grokray import Plot, Study, grid, uniform

study = Study(
    name="weight-decay-boundary",
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
        "train_fraction": uniform(0.15, 0.95, step=0.005),
        "weight_decay": grid([0.1, 0.3, 1.0]),
    },
    seeds=1,
    sampler="boundary",
    precision=0.02,
    max_steps_total=145_000,
    max_concurrent=2,
    plots=[Plot("trials", x="train_fraction", y="grokking_step", color="weight_decay")],
    quick={
        "steps": 1500,
        "max_steps_total": 9000,
        "space": {"train_fraction": uniform(0.15, 0.95, step=0.005), "weight_decay": grid([0.3, 1.0])},
    },
)
