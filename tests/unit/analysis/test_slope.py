"""The log-log fit of the grokking delay against lr·β (grokray.analysis.slope)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from grokray.analysis.slope import SLOPE_KEYS, classify, delay_slope, format_slopes, study_slopes


def run(lr: float, beta: float, delay: float | None, memorized: bool = True, reg: str = "l2") -> dict:
    mem = 100 if memorized else None
    grok = None if delay is None else mem + delay if memorized else 500
    return {
        "regularizer": reg,
        "lr": lr,
        "reg_strength": beta,
        "memorization_step": mem,
        "grokking_step": grok,
        "grokking_delay": None if delay is None or not memorized else delay,
    }


def test_an_exact_inverse_law_has_slope_minus_one_and_a_tiny_interval():
    runs = [run(lr, b, 5.0 / (lr * b)) for lr in (1e-3, 1e-2) for b in (1e-4, 3e-4, 1e-3, 3e-3)]
    (fit,) = delay_slope(runs)
    assert fit["slope"] == pytest.approx(-1.0, abs=1e-12)
    assert fit["ci_high"] - fit["ci_low"] < 1e-9
    assert fit["intercept"] == pytest.approx(math.log(5.0), abs=1e-9)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["n_used"] == 8 and fit["x_min"] == pytest.approx(1e-7) and fit["x_max"] == pytest.approx(3e-5)
    assert set(fit) == set(SLOPE_KEYS)


def test_the_t_interval_equals_the_textbook_formula():
    # x = log(lr·β) = 0, 1, 2, 3; y = 0, 1, 1, 3 (hand-computed: b = 0.9, a = −0.1, SSR = 0.7)
    xs, ys = [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 1.0, 3.0]
    runs = [run(1.0, math.exp(x), math.exp(y)) for x, y in zip(xs, ys, strict=True)]
    (fit,) = delay_slope(runs)
    assert fit["slope"] == pytest.approx(0.9)
    assert fit["intercept"] == pytest.approx(-0.1)
    half = 4.302652729911275 * math.sqrt(0.7 / 2 / 5.0)  # t(0.975, df=2) · sqrt(SSR/df/Sxx)
    assert fit["ci_low"] == pytest.approx(0.9 - half)
    assert fit["ci_high"] == pytest.approx(0.9 + half)


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_noisy_data_per_group_and_pooled_intervals_cover_the_truth(method):
    rng = np.random.default_rng(3)
    runs = []
    for reg, prefactor in (("l1", 0.01), ("l2", 1.0), ("nuclear", 0.3)):  # different intercepts
        for b in np.logspace(-5, -2, 8):
            for noise in rng.normal(0, 0.2, 3):
                runs.append(run(1e-2, float(b), prefactor / (1e-2 * b) * math.exp(noise), reg=reg))
    fits = delay_slope(pd.DataFrame(runs), method=method, n_bootstrap=500)
    assert [f["group"] for f in fits] == ["l1", "l2", "nuclear", "pooled"]
    for fit in fits:
        assert fit["ci_low"] < -1.0 < fit["ci_high"], fit
        assert fit["ci_high"] - fit["ci_low"] < 0.25
    pooled = fits[-1]
    assert pooled["n_used"] == 72
    # one common slope with a line per norm: a single line through all three would be far off
    assert pooled["slope"] == pytest.approx(-1.0, abs=0.05)
    assert math.isnan(pooled["intercept"])


def test_the_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    runs = [run(1.0, float(b), 1.0 / b * math.exp(rng.normal(0, 0.3))) for b in np.logspace(-4, -1, 10)]
    first = delay_slope(runs, method="bootstrap", n_bootstrap=200, seed=7)
    again = delay_slope(runs, method="bootstrap", n_bootstrap=200, seed=7)
    other = delay_slope(runs, method="bootstrap", n_bootstrap=200, seed=8)
    assert first == again
    assert first[0]["ci_low"] != other[0]["ci_low"]


def test_runs_without_a_delay_are_counted_not_fitted():
    runs = [
        run(1e-2, 1e-3, 1000.0),
        run(1e-2, 1e-4, 10000.0),
        run(1e-2, 3e-4, 10000.0 / 3),
        run(1e-2, 1e-5, None),  # memorized, not generalized within the budget
        run(1e-2, 1e-1, None, memorized=False),  # never fitted the training set
        run(1e-2, 0.0, None),  # the β = 0 control
        {**run(1e-2, 1e-3, 0.0), "grokking_step": 100},  # generalized as it memorized
    ]
    (fit,) = delay_slope(runs)
    assert fit["slope"] == pytest.approx(-1.0)
    counts = ("n_used", "n_censored", "n_not_memorized", "n_control", "n_no_delay")
    assert tuple(fit[k] for k in counts) == (3, 1, 1, 1, 1)
    assert classify(run(1e-2, 0.0, 500.0), ("lr", "reg_strength"))[0] == "control"
    assert classify({"lr": float("nan"), "reg_strength": 1.0}, ("lr", "reg_strength"))[0] == "control"


def test_too_few_points_give_nan_not_a_number_from_nowhere():
    (one_x,) = delay_slope([run(1e-2, 1e-3, 100.0), run(1e-2, 1e-3, 120.0)])
    assert math.isnan(one_x["slope"]) and math.isnan(one_x["ci_low"])
    (two,) = delay_slope([run(1e-2, 1e-3, 100.0), run(1e-2, 1e-4, 1000.0)])
    assert two["slope"] == pytest.approx(-1.0) and math.isnan(two["ci_low"])  # no residual df
    (empty,) = delay_slope([run(1e-2, 1e-3, None)])
    assert empty["n_used"] == 0 and empty["n_censored"] == 1 and math.isnan(empty["slope"])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="method"):
        delay_slope([], method="ols")
    with pytest.raises(ValueError, match="level"):
        delay_slope([], level=95)


def test_format_and_study_slopes():
    runs = [run(1e-2, b, 1.0 / b, reg=reg) for reg in ("l1", "l2") for b in (1e-4, 1e-3, 1e-2)]
    runs.append(run(1e-2, 1e-6, None, reg="l1"))
    fits = study_slopes(pd.DataFrame(runs), searched=["regularizer"])
    assert fits is not None and [f["group"] for f in fits] == ["l1", "l2", "pooled"]
    text = format_slopes(fits)
    assert "l1: slope -1.00 [-1.00, -1.00] (n=3, 1 censored)" in text
    assert text.splitlines()[0].startswith("grokking delay vs lr·β")
    fixed = [run(1e-2, 1e-3, 100.0), run(1e-2, 1e-3, 110.0)]
    assert study_slopes(pd.DataFrame(fixed), searched=["lr"]) is None
    (single,) = study_slopes(pd.DataFrame(runs[:3]), searched=["reg_strength"])
    assert single["group"] == "all"


def test_the_delay_plot_takes_a_product_axis_and_shows_the_fitted_slope(tmp_path):
    from matplotlib.figure import Figure

    from grokray.analysis.study_plots import _annotate_slopes, _column, plot_trials
    from grokray.study import Plot

    runs = [
        run(lr, b, 2.0 / (lr * b), reg=reg)
        for reg in ("l1", "l2")
        for lr in (1e-3, 1e-2)
        for b in (1e-4, 1e-3, 1e-2)
    ]
    table = pd.DataFrame(runs)
    assert list(_column(table, "lr*reg_strength")) == pytest.approx(list(table["lr"] * table["reg_strength"]))
    ax = Figure().add_subplot()
    _annotate_slopes(ax, table.assign(_color=table["regularizer"]), "lr*reg_strength")
    (text,) = ax.texts
    assert text.get_text().splitlines() == [
        "l1: slope -1.00 [-1.00, -1.00] (n=6)",
        "l2: slope -1.00 [-1.00, -1.00] (n=6)",
        "pooled: slope -1.00 [-1.00, -1.00] (n=12)",
    ]
    plot = Plot("trials", x="lr*reg_strength", y="grokking_delay", color="regularizer", logx=True, logy=True)
    assert plot_trials(table, plot, tmp_path / "delay.png").stat().st_size > 0
