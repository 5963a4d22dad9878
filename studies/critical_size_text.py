"""Critical data size on text (Zhu et al. 2024): sentiment classification with a 1-layer
BERT-style encoder trained from scratch, grokking induced by rescaling every parameter by α = 10.

The data is a Parquet or CSV file with ``text`` and ``label`` columns. The repository ships a
tiny sample (``data/text_sample.csv``) so that the study runs anywhere; for the paper's setting
point ``data_path`` at IMDB or Yelp in that shape, e.g.
``--set data_path=/data/imdb.parquet --set train_size=500,1000,2000,4000,8000``.
Encoder: hidden 128, 4 heads, FFN 512; AdamW lr 1e-3, weight decay 1; the training set size
``train_size`` is swept in absolute examples (the rest of the file is the test set).
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
