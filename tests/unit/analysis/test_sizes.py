"""The per-size summary against a hand-counted table."""

from __future__ import annotations

import math

import pandas as pd

from grokray.analysis.sizes import format_size_summary, size_summary


def test_size_summary_counts_by_hand():
    table = pd.DataFrame(
        {
            "train_fraction": [0.2, 0.2, 0.4, 0.4, 0.4, 0.8, 0.8],
            "grokked": [False, False, True, False, None, True, True],
            "grokking_step": [None, None, 900, None, None, 300, 500],
            "stop_reason": ["dominated", "budget", "grokked", "budget", "failed", "grokked", "grokked"],
            "grok_unconfirmed": [False, False, False, True, False, False, False],
        }
    )
    out = size_summary(table)
    assert list(out["train_fraction"]) == [0.2, 0.4, 0.8]
    assert list(out["n"]) == [2, 3, 2] and list(out["failed"]) == [0, 1, 0]
    assert list(out["censored"]) == [1, 1, 0] and list(out["dominated"]) == [1, 0, 0]
    assert list(out["unconfirmed"]) == [0, 1, 0]  # flagged, and still not grokked within the budget
    assert list(out["p_grok"]) == [0.0, 0.5, 1.0]  # the failed run is not counted at 0.4
    assert math.isnan(out.loc[0, "median_grokking_step"]) and list(out["median_grokking_step"][1:]) == [
        900,
        400,
    ]
    text = format_size_summary(out)
    assert text.splitlines()[0].split() == [
        "train_fraction", "n", "p_grok", "median", "grok", "step", "censored", "unconfirmed", "dominated",
        "failed",
    ]  # fmt: skip
    assert max(len(line) for line in text.splitlines()) <= 100


def test_size_summary_per_group():
    table = pd.DataFrame(
        {
            "width": [32, 32, 64, 64],
            "train_size": [10, 20, 10, 20],
            "grokked": [False, True, False, False],
            "grokking_step": [None, 100, None, None],
            "stop_reason": ["budget", "grokked", "budget", "budget"],
        }
    )
    out = size_summary(table, "train_size", ["width"])
    assert list(out.columns[:2]) == ["width", "train_size"]
    assert list(out["p_grok"]) == [0.0, 1.0, 0.0, 0.0]
