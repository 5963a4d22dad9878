"""Critical data size of modular addition (Zhu et al. 2024; Power et al. 2022).

Training fraction from 0.1 to 0.9 in steps of 0.05, two seeds each, a one-hidden-layer MLP with
per-operand embeddings, full-batch AdamW (lr 1e-2, weight decay 1) and a 5000-step budget. Below
the critical fraction the network memorizes and never generalizes within the budget; just above
it, it generalizes slowest (the steps-to-grok peak); well above, quickly.
"""

from grokray import Study, grid

study = Study(
    name="critical-size",
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
        "weight_decay": 1.0,
        "steps": 5000,
        "eval_every": 50,
        "grok_threshold": 0.99,
        "patience": 2,
    },
    space={"train_fraction": grid([round(0.1 + 0.05 * i, 2) for i in range(17)])},
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    quick={
        "steps": 1500,
        "seeds": 1,
        "space": {"train_fraction": grid([0.2, 0.8])},
    },
)
