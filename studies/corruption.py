"""To grok or not to grok (Doshi et al. 2023): phases under label corruption.

Modular addition p=97 on the paper's network: a 2-layer MLP f = W·φ(U·e_a + V·e_b) with φ(x) = x²,
width 500, no biases, one-hot inputs, Doshi's init (both layers N(0, (0.5 / (2·500)^(1/3))²) =
N(0, 0.05²)), MSE to one-hot targets, full-batch AdamW (lr 0.01, betas 0.9/0.98, eps 1e-8) for
2,000 steps, the settings of their Training_scripts/phase_diagrams_wd.py. The first ξ share of the
training labels are replaced by uniform random ones (test labels clean). The grid is theirs:
training fraction and ξ from 0.1 to 0.9 in steps of 0.05, weight decay {0, 5, 15, 20} (AdamW's
decoupled decay, θ ← θ·(1 − lr·wd)): a GPU study (1,156 trials). The headline plot is the phase
diagram over training fraction × ξ, one panel per weight decay, by Doshi's rule (coexistence,
partial / full inversion, memorization, forgetting, confusion), read at the end of training; the
trial table also has the train accuracy on the clean and on the corrupted part of the training
set and the network's Fourier IPR. ``measures=all`` logs the IPR on a log schedule; ``grokray
trial --set ...`` reproduces one cell, e.g. ξ = 0.35, fraction 0.5: weight decay 0 → coexistence,
5 → partial inversion, 15 → full inversion, 20 → forgetting (their notebook's four examples).
"""

from grokray import Plot, Study, grid

FRACTIONS = [round(0.1 + 0.05 * i, 2) for i in range(17)]  # np.linspace(0.1, 0.9, 17)

study = Study(
    name="corruption",
    description=__doc__,
    config={
        "task": "modular",
        "op": "+",
        "p": 97,
        "encoding": "onehot",
        "model": "mlp",
        "width": 500,
        "depth": 1,
        "activation": "quadratic",
        "bias": False,
        "init": "doshi",
        "loss": "mse",
        "optimizer": "adamw",
        "lr": 0.01,
        "beta1": 0.9,
        "beta2": 0.98,
        "steps": 2000,
        "eval_every": 100,
        "measures": "all",
        "grok_threshold": 0.9,
        "memorize_threshold": 0.9,
    },
    space={
        "train_fraction": grid(FRACTIONS),
        "corruption": grid(FRACTIONS),
        "weight_decay": grid([0.0, 5.0, 15.0, 20.0]),
    },
    seeds=1,
    early_stop=False,  # phases are read at the end of training: inversion comes after grokking
    sampler="grid",
    max_concurrent=2,
    plots=[
        Plot("phase", x="train_fraction", y="corruption", value="doshi_phase", facet="weight_decay"),
        Plot("trials", x="corruption", y="final_train_acc_clean", color="weight_decay"),
    ],
    quick={
        "p": 23,
        "width": 64,
        "steps": 200,
        "eval_every": 50,
        "space": {"train_fraction": grid([0.5]), "corruption": grid([0.0, 0.3]), "weight_decay": grid([5.0])},
    },
)
