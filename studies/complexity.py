"""The complexity dynamics of grokking (DeMoss et al. 2024): compression complexity rises while
the network memorizes and falls when it generalizes; the spectral-entropy regularizer keeps it low.

Modular addition p=97 at training fraction 0.4, weight decay 1 and Gaussian weight noise (forward
pass at θ + 0.01·N(0, 1)), with and without the spectral-entropy penalty (β = 0.1). Every
evaluation logs the norms; on a log-spaced schedule the compression complexity (SVD truncation +
quantization searched under a loss tolerance, then bzip2; the naive bzip2 of the raw weights
beside it), the spectral entropy and the effective rank. The paper uses a transformer at p=113;
an MLP keeps this study on a CPU's budget (``--set model=transformer --set p=113`` on a GPU).
"""

from grokray import Plot, Study, grid

study = Study(
    name="complexity",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 97,
        "train_fraction": 0.4,
        "model": "mlp",
        "embed_dim": 32,
        "width": 128,
        "depth": 1,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1.0,
        "weight_noise": 0.01,
        "steps": 20000,
        "eval_every": 100,
        "measures": "all",
    },
    space={"regularizer": grid(["none", "spectral_entropy"]), "reg_strength": grid([0.1])},
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("curves", y="complexity_bytes", color="regularizer", logx=True),
        Plot("curves", y="effective_rank", color="regularizer", logx=True),
        Plot("curves", y="val_acc", color="regularizer", logx=True),
    ],
    quick={"p": 23, "steps": 200, "eval_every": 50, "seeds": 1},
)
