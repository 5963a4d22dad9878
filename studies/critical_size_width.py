"""Critical data size vs model size (Zhu et al. 2024, model-wise): the paper reports that the
critical size grows with model size (a 1-layer BERT-style encoder on IMDB, hidden 16 … 256).

The setting of ``studies/critical_size_text.py`` (their encoder and recipe on the shipped review
sample, grokking induced by rescaling every parameter by α = 10) at hidden sizes 16 … 128, each
swept over the training size in examples. The study's answer is one critical size per hidden
size (the estimate table groups by width) and the P(grok) figure has one curve per width.

Changed from critical_size_text.py, for a sweep of several widths on two CPU cores: 16 tokens
(cls + the longest sample review, 14 words, fit; half the attention cost of 32), 1,500 steps at
weight decay 2 (lr·wd·steps = 3, as the text study's 3,000 steps at weight decay 1; the paper's
700k steps at 1e-2 give 7), and training sizes 30 … 60 around where the sample's critical size
sits. FFN is 4·hidden (the paper keeps it at 512 for every hidden size).

Measured (``python -m grokray.reproduce --rows zhu-width``, hidden 16, 32, 64, 2 seeds, sizes
30, 38, 46, 60; 288 s here under load): critical size 42.6 examples [95% CI 34, 53] at hidden
16, 38.0 [30, 42] at 32, 46.0 [42, 60] at 64 (4/8, 5/8, 3/8 runs grokked): flat within the CIs.
Runs that grok take 650 … 1,450 steps at every hidden size; the runs at 38 and 46 examples that
do not grok end at val accuracy 0.73 … 0.90 (the same configs, one seed groks where the other
does not at four of the six (hidden, size) pairs there). The sample does not show the paper's growth at
this scale: its ~120 words of templated reviews let every hidden size memorize and leave few
words to learn, and the critical size moves with the seed more than with the hidden size.

The paper's model-wise experiment on IMDB (a GPU job): ``--set data_path=/data/imdb.parquet
--set max_len=256 --set weight_decay=0.01 --set steps=700000 --set eval_every=1000
--set train_size=2500,5000,10000,25000 --set width=16,32,64,128``.

Before this study used the encoder it swept grokray's one-hidden-layer MLP on x+y mod 31 (5,000
steps, weight decay 1); there the critical fraction FELL with width (``make reproduce``, row
zhu-width, 3 seeds: 0.69 [0.65, 0.70] at width 32, 0.54 [0.50, 0.58] at 64, 0.48 [0.45, 0.50]
at 128): a narrow MLP lacks the capacity for the modular solution.
"""

from grokray import Plot, Study, grid

study = Study(
    name="critical-size-width",
    description=__doc__,
    config={
        "task": "text",
        "data_path": "data/text_sample.csv",
        "max_len": 16,
        "vocab_size": 2000,
        "model": "encoder",
        "heads": 4,
        "depth": 1,
        "init_scale": 10.0,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 2.0,
        "batch_size": 128,
        "steps": 1500,
        "eval_every": 50,
        "grok_threshold": 0.9,
        "memorize_threshold": 0.99,
    },
    space={
        "width": grid([16, 32, 64, 128]),
        "train_size": grid([30, 38, 46, 60]),
    },
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[Plot("trials", x="train_size", y="grokking_step", color="width")],
    quick={
        "steps": 100,
        "seeds": 1,
        "space": {"width": grid([16, 32]), "train_size": grid([40, 160])},
    },
)
