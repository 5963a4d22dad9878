"""Critical data size on text (Zhu et al. 2024): sentiment classification with a 1-layer
BERT-style encoder trained from scratch, grokking induced by rescaling every parameter by α = 10.

The data is a Parquet or CSV file with ``text`` and ``label`` columns (and optionally ``split``:
rows marked ``test`` are the fixed test set; without it a fixed 20 % of the rows is held out). The
vocabulary comes from the other rows only, the ones a seed may train on. The repository ships a tiny
sample (``data/text_sample.csv``, 300 made-up reviews: 240 trainable, 60 held out) so that the
study runs anywhere; ``train_size`` is swept in absolute examples.

Zhu et al.'s recipe (their ``run_grokking_on_imdb.sh``): encoder hidden 128, 4 heads, FFN 512,
1 layer, GELU, post-LayerNorm, no dropout; every parameter ×10 after init; AdamW lr 1e-3,
weight decay 1e-2, batch 128, 256 tokens, 700,000 steps. Kept here: the encoder, α = 10, lr 1e-3,
batch 128 (full batch below 128 examples, as their loader gives). Changed, for the sample on two
CPU cores: 3,000 steps and weight decay 1, which keeps AdamW's decay time lr·wd·steps at 3
(theirs: 7); at weight decay 1e-2 the weights barely shrink in 3,000 steps (lr·wd·steps = 0.03)
and nothing groks (train_size 80: val accuracy 0.72 at step 3,000, against 0.98 and grokking at
step 2,050 with weight decay 1, after memorizing at 1,100). 32 tokens: every sample review
fits. The paper's setting, on IMDB in this shape (train and test rows, ``split`` marking the
25,000 test reviews; a GPU job): ``--set data_path=/data/imdb.parquet --set weight_decay=0.01
--set steps=700000 --set max_len=256 --set eval_every=1000 --set train_size=2500,5000,10000,25000``
(their sweep: 0.1 … 1.0 of IMDB's 25,000 training reviews).
"""

from grokray import Plot, Study, grid

study = Study(
    name="critical-size-text",
    description=__doc__,
    config={
        "task": "text",
        "data_path": "data/text_sample.csv",
        "max_len": 32,
        "vocab_size": 2000,
        "model": "encoder",
        "width": 128,
        "heads": 4,
        "depth": 1,
        "init_scale": 10.0,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1.0,
        "batch_size": 128,
        "steps": 3000,
        "eval_every": 50,
        "grok_threshold": 0.9,
        "memorize_threshold": 0.99,
    },
    space={"train_size": grid([20, 40, 80, 120, 160, 200])},
    seeds=2,
    sampler="grid",
    max_concurrent=2,
    plots=[Plot("trials", x="train_size", y="grokking_step")],
    quick={"steps": 100, "seeds": 1, "space": {"train_size": grid([40, 160])}},
)
