"""Critical data size of modular addition by boundary search (issue 15), the default study's setting.

The same task, model, optimizer and 5000-step budget as ``critical_size.py``, but instead of a grid
of 17 fractions × 2 seeds the boundary sampler places each run where it tells most about the
critical fraction per model-step it costs: it starts at the largest fraction, approaches the
boundary from above (runs that grok stop early; runs that fail spend the whole budget) and then
spends its runs on both sides of it. It stops when the 95 % posterior interval of the critical
fraction is narrower than ``precision``, or when ``max_steps_total`` model-steps are spent (here
the grid's own spend, 42,500: ``make bench ARGS=--boundary`` compares the two).
"""

from grokray import Study, uniform

study = Study(
    name="critical-size-boundary",
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
    space={"train_fraction": uniform(0.1, 0.9, step=0.005)},
    seeds=1,
    sampler="boundary",
    precision=0.02,
    max_steps_total=42_500,
    max_concurrent=2,
    quick={"steps": 1500, "max_steps_total": 9000},
)
