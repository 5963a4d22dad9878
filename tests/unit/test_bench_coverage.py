"""bench.coverage's model of a run and its grid design, against hand-computed values."""

import math

import numpy as np
import pytest

from bench.coverage import grid_design, simulate_run, true_critical


def test_the_true_critical_fraction_is_where_a_run_groks_at_the_budget():
    f_star = true_critical(0.575, 5000)
    assert f_star == pytest.approx(0.575 + 60 / 4750 - 0.01)
    rng = np.random.default_rng(0)
    # sd 0: every run's threshold is mu; at f* a run groks exactly at the budget, just below it fails
    assert simulate_run(f_star + 1e-9, 0.575, 0.0, 5000, rng)[0]
    grokked, steps, step = simulate_run(f_star - 1e-6, 0.575, 0.0, 5000, rng)
    assert not grokked and steps == 5000 and math.isnan(step)
    grokked, steps, step = simulate_run(0.675, 0.575, 0.0, 5000, rng)
    assert grokked and step == pytest.approx(250 + 60 / 0.11) and steps == 796


def test_with_sd_the_share_that_groks_at_f_star_is_one_half():
    rng = np.random.default_rng(1)
    f_star = true_critical(0.5, 2500)
    share = np.mean([simulate_run(f_star, 0.5, 0.03, 2500, rng)[0] for _ in range(4000)])
    assert share == pytest.approx(0.5, abs=0.03)


def test_the_grid_trains_largest_first_and_the_monotone_rule_skips_below_two_failures():
    table = grid_design(0.48, 0.0, 5000, np.random.default_rng(0))  # f* = 0.483: 0.5 and up grok
    by_size = table.groupby("train_fraction")
    assert len(table) == 34
    assert all(by_size.get_group(f)["grokked"].all() for f in (0.5, 0.7, 0.9))
    assert list(by_size.get_group(0.45)["stop_reason"]) == ["budget", "budget"]
    assert list(by_size.get_group(0.4)["stop_reason"]) == ["budget", "budget"]
    dominated = table[table["stop_reason"] == "dominated"]
    assert sorted(set(dominated["train_fraction"])) == [0.1, 0.15, 0.2, 0.25, 0.3, 0.35]
    assert (dominated["steps_run"] == 0).all() and not dominated["grokked"].any()
