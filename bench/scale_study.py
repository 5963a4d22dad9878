"""The scale probe of issue 14: many tiny configs (one seed, 50 steps, random search), so that what
is measured is grokray's own cost per config (Optuna, Tune, MLflow), not training.
``python -m bench.scale`` runs it (``--configs N``; 10,000 as shipped)."""

from grokray import Study, loguniform, uniform

study = Study(
    name="scale",
    description="10,000 tiny configs: the driver's time per config (python -m bench.scale)",
    config={
        "task": "modular",
        "op": "+",
        "p": 31,
        "model": "mlp",
        "embed_dim": 32,
        "width": 128,
        "depth": 1,
        "optimizer": "adamw",
        "steps": 50,
        "eval_every": 50,
        "grok_threshold": 0.99,
        "patience": 2,
    },
    space={
        "train_fraction": uniform(0.1, 0.9),
        "lr": loguniform(1e-3, 1e-2),
        "weight_decay": loguniform(0.01, 1.0),
        "init_scale": uniform(0.5, 2.0),
    },
    seeds=1,
    sampler="random",
    num_samples=10000,
    max_concurrent=2,
    pack=256,
    quick={"num_samples": 300},
)
