"""Critical data size vs model size (Zhu et al. 2024, model-wise): the paper reports that the
critical size grows with model size (a 1-layer BERT-style encoder on IMDB, hidden 16 … 256).

The setting of ``studies/critical_size.py`` (modular addition mod 31, one-hidden-layer MLP,
AdamW lr 1e-2, weight decay 1, 5000 steps) at widths 16 … 256, each swept over the training
fraction. The study's answer is one critical fraction per width (the estimate table groups by
width) and the P(grok) figure has one curve per width.

Measured (``make reproduce``, row zhu-width, 3 seeds): on this MLP the critical fraction FALLS with
width, 0.69 [0.65, 0.70] at width 32, 0.54 [0.50, 0.58] at 64, 0.49 [0.45, 0.53] at 128: a
narrow MLP lacks the capacity for the modular solution, the opposite of the paper's trend on
text. The study measures the question; it does not reproduce the paper's answer.
"""

from grokray import Plot, Study, grid

study = Study(
    name="critical-size-width",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 31,
        "model": "mlp",
        "embed_dim": 32,
        "depth": 1,
        "optimizer": "adamw",
        "lr": 1e-2,
        "weight_decay": 1.0,
        "steps": 5000,
        "eval_every": 50,
    },
    space={
        "width": grid([16, 32, 64, 128, 256]),
        "train_fraction": grid([round(0.2 + 0.05 * i, 2) for i in range(11)]),
    },
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[Plot("trials", x="train_fraction", y="grokking_step", color="width")],
    quick={
        "steps": 300,
        "seeds": 1,
        "space": {"width": grid([16, 64]), "train_fraction": grid([0.3, 0.8])},
    },
)
