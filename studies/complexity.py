"""The complexity dynamics of grokking (DeMoss et al. 2024): compression complexity rises while
the network memorizes and falls when it generalizes, in a regularized run; without regularization
it stays high.

Two arms, as in their code (github.com/brantondemoss/GrokkingComplexity, ``main.py --ours``):
regularized = AdamW weight decay 1 + spectral-entropy penalty β = 0.1 (mean over the weight
matrices of H(σ/Σσ)) + Gaussian weight noise (forward and gradient at θ + 0.01·N(0, 1));
unregularized = no weight decay, no penalty, no noise. The complexity (logged on a log-spaced
schedule) is the bzip2 size of the best SVD-truncated and quantized copy of ALL parameters whose
training loss stays within ε = ``complexity_epsilon`` (1, their main plots) of the original;
``naive_complexity_bytes`` is bzip2 of the raw float32 weights (their naive bound, 30-40× looser).

The default profile is their addition setting, for a GPU: p = 113, training fraction 0.2 (their
``train_fraction_map``), their 1-layer transformer (d_model 128, 4 heads of 32, MLP 512, GELU,
post-LayerNorm, no causal mask), AdamW lr 1e-3, betas (0.9, 0.98), minibatches of 512 (their
min(512, N/2)), 50,000 steps (their 10,000 epochs of 5 minibatches). On a CPU an MLP stands in
(``make reproduce``'s row ``demoss-complexity``: its command line shows the overrides): the
compression search trains nothing, but it calls the loss ~30 times per log point per seed, which
a transformer at p = 113 makes the bulk of a CPU hour.
"""

from grokray import Plot, Study, grid

study = Study(
    name="complexity",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 113,
        "train_fraction": 0.2,
        "model": "transformer",
        "width": 128,
        "heads": 4,
        "depth": 1,
        "layer_norm": "post",
        "causal": False,
        "activation": "gelu",
        "optimizer": "adamw",
        "lr": 1e-3,
        "beta1": 0.9,
        "beta2": 0.98,
        "batch_size": 512,
        "steps": 50000,
        "eval_every": 100,
        "measures": "all",
        "complexity_epsilon": 1.0,
    },
    space={"regularizer": grid(["spectral_entropy", "none"])},
    linked={
        "regularizer": {
            "spectral_entropy": {"reg_strength": 0.1, "weight_decay": 1.0, "weight_noise": 0.01},
            "none": {"reg_strength": 0.0, "weight_decay": 0.0, "weight_noise": 0.0},
        }
    },
    seeds=3,
    sampler="grid",
    max_concurrent=2,
    early_stop=False,  # the fall of the complexity comes after the grokking step
    plots=[
        Plot("curves", y="complexity_bytes", color="regularizer", logx=True),
        Plot("curves", y="naive_complexity_bytes", color="regularizer", logx=True),
        Plot("curves", y="val_acc", color="regularizer", logx=True),
        Plot("curves", y="effective_rank", color="regularizer", logx=True),
    ],
    quick={
        "model": "mlp",
        "embed_dim": 8,
        "width": 32,
        "p": 23,
        "train_fraction": 0.4,
        "batch_size": 0,
        "steps": 200,
        "eval_every": 50,
        "seeds": 1,
    },
)
