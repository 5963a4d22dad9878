"""Tests of grokray.analysis against synthetic trial tables with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokray.analysis import (
    ESTIMATE_KEYS,
    bootstrap_curves,
    bootstrap_logistic,
    critical_data_size,
    critical_point,
    fit_logistic,
    format_estimates,
    grok_probability_by_size,
    plot_grok_probability,
    plot_validation_curves,
)

N_TOTAL = 97 * 97
BUDGET = 5000
FRACTIONS = np.round(np.arange(0.10, 0.90 + 1e-9, 0.05), 2)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def synthetic_table(
    f0: float = 0.45,
    k: float = 25.0,
    fractions: np.ndarray = FRACTIONS,
    seeds: int = 8,
    rng_seed: int = 1,
    **extra: object,
) -> pd.DataFrame:
    """Trials whose grokking is drawn from sigmoid(k (f - f0)); slowest grokking near f0."""
    rng = np.random.default_rng(rng_seed)
    f = np.repeat(fractions, seeds).astype(float)
    grokked = rng.random(f.size) < _sigmoid(k * (f - f0))
    step = np.where(grokked, 1000 + 3000 * np.exp(-(((f - f0) / 0.1) ** 2)), np.nan)
    table = pd.DataFrame(
        {
            "train_fraction": f,
            "seed": np.tile(np.arange(seeds), fractions.size),
            "grokked": grokked,
            "grokking_step": step,
            "steps": BUDGET,
            "n_total": N_TOTAL,
        }
    )
    for name, value in extra.items():
        table[name] = value
    return table


# ----------------------------------------------------------------------------- logistic


def test_fit_logistic_recovers_known_curve() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, 4000)
    y = rng.random(x.size) < _sigmoid(20 * (x - 0.4))
    a, b = fit_logistic(x, y)
    assert b == pytest.approx(20, rel=0.15)
    assert a == pytest.approx(-8, rel=0.15)
    assert -a / b == pytest.approx(0.4, abs=0.02)
    assert critical_point(x, y) == pytest.approx(-a / b)


def test_fit_logistic_is_scale_invariant() -> None:
    """Fitting sizes instead of fractions gives the same curve (ridge is standardized)."""
    table = synthetic_table()
    x, y = table["train_fraction"].to_numpy(), table["grokked"].to_numpy()
    a, b = fit_logistic(x, y)
    a_size, b_size = fit_logistic(x * N_TOTAL, y)
    assert a_size == pytest.approx(a, rel=1e-6)
    assert b_size * N_TOTAL == pytest.approx(b, rel=1e-6)


def test_fit_logistic_rejects_single_class() -> None:
    with pytest.raises(ValueError):
        fit_logistic(np.array([0.1, 0.2, 0.3]), np.array([1, 1, 1]))
    assert math.isnan(critical_point(np.array([0.1, 0.2]), np.array([0, 0])))
    assert math.isnan(critical_point(np.array([0.3, 0.3]), np.array([0, 1])))


def test_perfect_separation_is_finite_and_between_the_classes() -> None:
    x = np.round(np.arange(0.1, 0.9 + 1e-9, 0.1), 2)
    y = x >= 0.5
    a, b = fit_logistic(x, y)
    assert math.isfinite(a) and math.isfinite(b) and b > 20
    assert 0.4 < critical_point(x, y) < 0.5


def test_bootstrap_curves_match_bootstrap_critical_points() -> None:
    table = synthetic_table()
    x, y = table["train_fraction"].to_numpy(), table["grokked"].to_numpy()
    grid = np.linspace(0.1, 0.9, 50)
    boot = bootstrap_logistic(x, y, n_bootstrap=200, seed=3)
    curves = bootstrap_curves(x, y, grid, n_bootstrap=200, seed=3)
    assert curves.shape == (200, 50)
    np.testing.assert_array_equal(curves, boot.curves(grid))
    assert np.all((curves >= 0) & (curves <= 1))
    # each fitted curve crosses 0.5 at its own critical point
    fitted = np.flatnonzero(boot.status == 0)[:20]
    for i in fitted:
        p = _sigmoid(boot.intercepts[i] + boot.slopes[i] * boot.critical[i])
        assert p == pytest.approx(0.5, abs=1e-6) or boot.critical[i] in (0.1, 0.9)


def test_bootstrap_counts_degenerate_resamples_at_the_range_edge() -> None:
    # only one failure, at the smallest fraction: many resamples are all-grokked
    x = np.repeat([0.1, 0.2, 0.3], 4)
    y = np.ones(x.size)
    y[0] = 0
    boot = bootstrap_logistic(x, y, n_bootstrap=300, seed=0)
    assert (boot.status == 1).any() and (boot.status == 0).any()
    assert np.all(boot.critical[boot.status == 1] == 0.1)
    assert np.all((boot.critical >= 0.1) & (boot.critical <= 0.3))
    assert np.all(boot.curves(np.array([0.2]))[boot.status == 1] == 1.0)


# ------------------------------------------------------------------ critical data size


def test_critical_data_size_known_answer() -> None:
    [est] = critical_data_size(synthetic_table(), n_bootstrap=500)
    assert set(est) == set(ESTIMATE_KEYS)
    assert est["group"] == {}
    assert est["critical_fraction"] == pytest.approx(0.45, abs=0.05)
    assert est["ci_low"] < 0.45 < est["ci_high"]
    assert est["ci_low"] <= est["critical_fraction"] <= est["ci_high"]
    assert est["ci_high"] - est["ci_low"] < 0.2
    assert est["critical_size"] == round(est["critical_fraction"] * N_TOTAL)
    assert isinstance(est["critical_size"], int)
    assert est["n_trials"] == FRACTIONS.size * 8
    assert est["budget_steps"] == BUDGET
    assert est["slope"] > 0
    assert est["note"] == ""
    json.dumps(est, allow_nan=True)  # plain Python types only


def test_train_size_column_is_treated_as_sizes() -> None:
    table = synthetic_table()
    table["train_size"] = (table["train_fraction"] * N_TOTAL).round().astype(int)
    [by_fraction] = critical_data_size(table, n_bootstrap=200)
    [by_size] = critical_data_size(table, size_col="train_size", n_bootstrap=200)
    assert by_size["critical_fraction"] == pytest.approx(by_fraction["critical_fraction"], abs=1e-3)
    assert by_size["ci_low"] == pytest.approx(by_fraction["ci_low"], abs=1e-3)
    assert abs(by_size["critical_size"] - by_fraction["critical_size"]) <= 5
    assert by_size["peak_size"] == by_fraction["peak_size"]


def test_perfectly_separated_table() -> None:
    f = np.repeat(np.round(np.arange(0.1, 0.9 + 1e-9, 0.1), 2), 3)
    table = pd.DataFrame(
        {
            "train_fraction": f,
            "grokked": f >= 0.5,
            "grokking_step": np.where(f >= 0.5, 100.0, np.nan),
            "steps": 1000,
            "n_total": 100,
        }
    )
    [est] = critical_data_size(table, n_bootstrap=100)
    assert 0.4 < est["critical_fraction"] < 0.5
    assert "perfectly separated" in est["note"]
    # every resample is identical, yet the interval spans the bracket the sweep cannot resolve
    assert est["ci_low"] == pytest.approx(0.4) and est["ci_high"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("grokked", "note"),
    [
        (True, "all trials grokked: critical fraction below 0.1"),
        (False, "no trial grokked: critical fraction above 0.9"),
    ],
)
def test_unidentifiable_when_all_or_none_grokked(grokked: bool, note: str) -> None:
    table = synthetic_table()
    table["grokked"] = grokked
    table["grokking_step"] = 1000.0 if grokked else np.nan
    [est] = critical_data_size(table, n_bootstrap=50)
    for key in ("critical_fraction", "ci_low", "ci_high", "critical_size", "slope"):
        assert math.isnan(est[key]), key
    assert est["note"] == note
    assert est["n_grokked"] == (est["n_trials"] if grokked else 0)


def test_crossing_outside_the_range_is_clipped_with_a_note() -> None:
    [est] = critical_data_size(synthetic_table(f0=0.0, k=10, rng_seed=5), n_bootstrap=100)
    assert est["critical_fraction"] == 0.1
    assert 0.1 <= est["ci_low"] <= est["ci_high"] <= 0.9
    assert "below the tried range" in est["note"]


def test_single_fraction_is_not_identifiable() -> None:
    table = pd.DataFrame(
        {
            "train_fraction": 0.3,
            "grokked": [True, False, True],
            "steps": 100,
            "n_total": 10,
        }
    )
    [est] = critical_data_size(table, n_bootstrap=50)
    assert math.isnan(est["critical_fraction"])
    assert "not identifiable" in est["note"]


def test_peak_fraction_of_mean_steps_to_grok() -> None:
    fractions = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    mean_step = {
        0.2: 900.0,
        0.3: 1500.0,
        0.4: 2500.0,
        0.5: 4000.0,
        0.6: 3000.0,
        0.7: 1000.0,
        0.8: 500.0,
    }
    rows = []
    for f in fractions:
        for s in range(4):
            grokked = f >= 0.4 or s == 0  # at least one grokked trial everywhere
            step = mean_step[f] + (s - 1.5) * 10 if grokked else np.nan
            rows.append(
                {
                    "train_fraction": f,
                    "seed": s,
                    "grokked": grokked,
                    "grokking_step": step,
                    "steps": 5000,
                    "n_total": 1000,
                }
            )
    table = pd.DataFrame(rows)
    [est] = critical_data_size(table, n_bootstrap=50)
    assert est["peak_fraction"] == 0.5
    assert est["peak_size"] == 500
    empirical = grok_probability_by_size(table)
    assert list(empirical.columns) == [
        "train_fraction",
        "n",
        "n_grokked",
        "p_grok",
        "mean_grokking_step",
    ]
    assert empirical["n"].tolist() == [4] * fractions.size
    assert empirical.loc[empirical["train_fraction"] == 0.2, "p_grok"].item() == 0.25


def test_grouping_by_categorical_column() -> None:
    table = pd.concat(
        [
            synthetic_table(f0=0.6, rng_seed=2, weight_decay=0.1),
            synthetic_table(f0=0.3, rng_seed=3, weight_decay=1.0),
        ],
        ignore_index=True,
    )
    estimates = critical_data_size(table, group_cols=["weight_decay", "seed"], n_bootstrap=200)
    assert [e["group"] for e in estimates] == [
        {"weight_decay": 0.1},
        {"weight_decay": 1.0},
    ]
    assert estimates[0]["critical_fraction"] == pytest.approx(0.6, abs=0.05)
    assert estimates[1]["critical_fraction"] == pytest.approx(0.3, abs=0.05)
    assert all(e["n_trials"] == FRACTIONS.size * 8 for e in estimates)
    json.dumps(estimates, allow_nan=True)


def test_numeric_column_with_many_values_is_binned() -> None:
    table = synthetic_table(seeds=12)
    table["init_scale"] = np.tile(np.geomspace(0.01, 10.0, 12), FRACTIONS.size)
    estimates = critical_data_size(table, group_cols=["init_scale"], n_bootstrap=50, n_bins=3)
    labels = [e["group"]["init_scale"] for e in estimates]
    assert labels == [
        "[0.01, 0.1)",
        "[0.1, 1)",
        "[1, 10]",
    ]  # log-spaced: spans 3 decades
    assert sum(e["n_trials"] for e in estimates) == len(table)
    # values spanning less than a decade: equal-width bins
    table["init_scale"] = np.tile(np.linspace(1.0, 2.0, 12), FRACTIONS.size)
    estimates = critical_data_size(table, group_cols=["init_scale"], n_bootstrap=20)
    labels = [e["group"]["init_scale"] for e in estimates]
    assert labels == ["[1, 1.33)", "[1.33, 1.67)", "[1.67, 2]"]
    assert [e["n_trials"] for e in estimates] == [4 * FRACTIONS.size] * 3
    # no more distinct values than bins: grouped by value
    table["init_scale"] = np.tile([2.0, 0.5, 1.0], 4 * FRACTIONS.size)
    estimates = critical_data_size(table, group_cols=["init_scale"], n_bootstrap=20)
    assert [e["group"]["init_scale"] for e in estimates] == [0.5, 1.0, 2.0]


def test_failed_trials_are_ignored() -> None:
    table = synthetic_table()
    failed = table.iloc[:5].copy()
    failed["grokked"] = None
    failed["grokking_step"] = np.nan
    with_failures = pd.concat([table.astype({"grokked": object}), failed], ignore_index=True)
    [est] = critical_data_size(with_failures, n_bootstrap=100)
    [clean] = critical_data_size(table, n_bootstrap=100)
    assert est["n_trials"] == len(table)
    assert est["critical_fraction"] == clean["critical_fraction"]
    assert est["ci_low"] == clean["ci_low"]


def test_same_seed_same_interval() -> None:
    table = synthetic_table()
    first = critical_data_size(table, n_bootstrap=300, seed=7)
    again = critical_data_size(table, n_bootstrap=300, seed=7)
    other = critical_data_size(table, n_bootstrap=300, seed=8)
    assert (first[0]["ci_low"], first[0]["ci_high"]) == (
        again[0]["ci_low"],
        again[0]["ci_high"],
    )
    assert (first[0]["ci_low"], first[0]["ci_high"]) != (
        other[0]["ci_low"],
        other[0]["ci_high"],
    )


def test_format_estimates_shows_the_numbers() -> None:
    table = pd.concat(
        [
            synthetic_table(f0=0.6, rng_seed=2, weight_decay=0.1),
            synthetic_table(f0=0.3, rng_seed=3, weight_decay=1.0),
        ],
        ignore_index=True,
    )
    all_grokked = synthetic_table(weight_decay=3.0)
    all_grokked["grokked"] = True
    table = pd.concat([table, all_grokked], ignore_index=True)
    estimates = critical_data_size(table, group_cols=["weight_decay"], n_bootstrap=100)
    text = format_estimates(estimates)
    lines = text.split("\n\n")[0].splitlines()  # the table; the notes are footnotes under it
    assert len(lines) == 2 + len(estimates)
    assert max(len(line) for line in text.splitlines()) <= 100
    for est, line in zip(estimates, lines[2:], strict=True):
        assert f"weight_decay={est['group']['weight_decay']}" in line
        assert f"{est['n_grokked']}/{est['n_trials']}" in line
        assert str(est["budget_steps"]) in line
        if math.isfinite(est["critical_fraction"]):
            assert f"{est['critical_fraction']:.3f}" in line
            assert f"[{est['ci_low']:.3f}, {est['ci_high']:.3f}]" in line
            assert str(est["critical_size"]) in line
        else:
            assert line.endswith(")") and est["note"][:40] in " ".join(text.split())
    assert format_estimates([]).startswith("no completed trials")


# ----------------------------------------------------------------------------- plots


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_plot_validation_curves(tmp_path: Path) -> None:
    table = pd.DataFrame({"trial_id": ["a", "b", "c"], "train_fraction": [0.2, 0.4, 0.6]})
    steps = np.arange(0, 1000, 50)
    curves = pd.concat(
        [
            pd.DataFrame(
                {
                    "trial_id": tid,
                    "step": steps,
                    "val_acc": _sigmoid((steps - 900 + 400 * f) / 50),
                    "train_acc": np.minimum(1.0, steps / 200),
                }
            )
            for tid, f in zip(table["trial_id"], table["train_fraction"], strict=True)
        ],
        ignore_index=True,
    )
    out = plot_validation_curves(curves, table, tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    assert _is_png(out)


def test_plot_grok_probability(tmp_path: Path) -> None:
    table = pd.concat(
        [
            synthetic_table(f0=0.6, rng_seed=2, weight_decay=0.1, seeds=4),
            synthetic_table(f0=0.3, rng_seed=3, weight_decay=1.0, seeds=4),
        ],
        ignore_index=True,
    )
    estimates = critical_data_size(table, group_cols=["weight_decay"], n_bootstrap=100)
    out = plot_grok_probability(table, estimates, str(tmp_path / "p.png"), n_bootstrap=100)
    assert isinstance(out, Path)
    assert _is_png(out)
    # degenerate inputs still draw: no estimate, and an all-grokked group
    table["grokked"] = True
    assert _is_png(plot_grok_probability(table, [], tmp_path / "empty.png", n_bootstrap=20))
    estimates = critical_data_size(table, n_bootstrap=20)
    assert _is_png(plot_grok_probability(table, estimates, tmp_path / "all.png", n_bootstrap=20))


def test_train_size_study_is_drawn_against_its_sizes(tmp_path: Path) -> None:
    from grokray.analysis.plots import grok_probability_figure, size_column, validation_curves_figure

    sizes = np.array([100, 200, 300, 400, 500, 600])
    table = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(sizes.size * 2)],
            "train_size": np.repeat(sizes, 2),
            "train_fraction": 0.5,  # the unused default of a train_size study
            "grokked": np.repeat([False, False, False, True, True, True], 2),
            "grokking_step": np.repeat([np.nan, np.nan, np.nan, 3000.0, 2000.0, 1000.0], 2),
            "steps": BUDGET,
            "n_total": 1000,
        }
    )
    table.loc[5, "grokked"], table.loc[5, "grokking_step"] = True, 4000.0  # one of two at 300
    assert size_column(table) == "train_size"
    assert size_column(table.assign(train_size=0)) == "train_fraction"
    estimates = critical_data_size(table, size_col="train_size", n_bootstrap=50)
    fig = grok_probability_figure(table, estimates, n_bootstrap=50)  # size column inferred
    ax, ax_steps = fig.axes[0], fig.axes[1]
    points = ax.collections[0].get_offsets()
    assert points[:, 0].tolist() == sizes.tolist()
    assert points[:, 1].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    fit = ax.lines[0].get_xdata()  # the logistic curve spans the tried sizes
    assert fit.min() == 100 and fit.max() == 600
    critical = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"]
    assert critical == pytest.approx([estimates[0]["critical_fraction"] * 1000])
    assert 200 < critical[0] < 400
    steps = ax_steps.lines[0]  # mean steps-to-grok per size: NaN where none grokked
    assert steps.get_xdata().tolist() == sizes.tolist()
    assert np.asarray(steps.get_ydata())[2:].tolist() == [4000.0, 3000.0, 2000.0, 1000.0]
    assert ax.get_xlabel() == "training examples (train_size)"
    assert _is_png(plot_grok_probability(table, estimates, tmp_path / "p.png", n_bootstrap=50))

    curves = pd.DataFrame({"trial_id": ["t0", "t0", "t11", "t11"], "step": [0, 50] * 2, "val_acc": 0.5})
    colorbar = validation_curves_figure(curves, table).axes[1]
    labels = [t.get_text() for t in colorbar.get_yticklabels()]
    assert labels == ["100", "200", "300", "400", "500", "600"]  # by train_size, not the constant 0.5
