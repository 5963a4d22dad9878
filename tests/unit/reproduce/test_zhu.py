"""Zhu et al. rows of the reproduction suite: the sweep's early-stopping rule and pass rules on
hand-made outcomes, and the quick smoke of each row (fields filled, PNG written)."""

from __future__ import annotations

import math

import pytest

from grokray.reproduce import Context, load_rows, zhu


def fake_run(outcomes_by_fraction, calls, key="train_fraction", n_total=961):
    """A run_configs stand-in: grokked where the hand-made table says so."""

    def run(configs, stop_on_grok=True, progress=None, label=""):
        fraction = configs[0][key]
        calls.append(fraction)
        return [
            {
                "grokked": step is not None,
                "grokking_step": step,
                "stop_reason": "grokked" if step is not None else "budget",
                "n_total": n_total,
            }
            for step in outcomes_by_fraction[fraction][: len(configs)]
        ]

    return run


def configs(fractions, seeds=2):
    return [
        {"train_fraction": f, "seed": s, "width": 128, "steps": 5000} for f in fractions for s in range(seeds)
    ]


def test_sweep_skips_fractions_below_two_failed_ones(monkeypatch):
    outcomes = {
        0.9: [100, 200],
        0.8: [None, 900],  # one seed grokked: not a failure
        0.7: [None, None],
        0.6: [None, None],
        0.5: [4000, None],  # never trained: below two failures
        0.4: [None, None],
    }
    calls = []
    monkeypatch.setattr(zhu, "run_configs", fake_run(outcomes, calls))
    table = zhu.sweep_fractions(configs(sorted(outcomes)))
    assert calls == [0.9, 0.8, 0.7, 0.6]  # largest first, then 0.5 and 0.4 dominated
    dominated = table[table["stop_reason"] == "dominated"]
    assert sorted(dominated["train_fraction"].unique()) == [0.4, 0.5] and not dominated["grokked"].any()
    assert table.groupby("train_fraction")["grokked"].sum().to_dict() == {
        0.4: 0,
        0.5: 0,
        0.6: 0,
        0.7: 0,
        0.8: 1,
        0.9: 2,
    }
    assert zhu.mean_steps(table)[0.9] == 150 and zhu.mean_steps(table)[0.8] == 900
    assert math.isnan(zhu.mean_steps(table)[0.7])


def test_a_failure_above_a_grokked_fraction_does_not_count(monkeypatch):
    outcomes = {0.9: [None, None], 0.8: [300, 400], 0.7: [None, None], 0.6: [None, None], 0.5: [None, None]}
    calls = []
    monkeypatch.setattr(zhu, "run_configs", fake_run(outcomes, calls))
    zhu.sweep_fractions(configs(sorted(outcomes)))
    assert calls == [0.9, 0.8, 0.7, 0.6]  # 0.9's failure lies above 0.8, which grokked: 0.7 is trained


def test_sweep_by_train_size_and_its_estimate_in_examples(monkeypatch):
    """The width row sweeps train_size (examples of the text sample, n_total 300): the same
    largest-first rule, and an estimate whose crossing, perfectly separated between 38 and 46
    examples, lies in (38, 46] with its CI (fractions of n_total) inside the tried sizes."""
    outcomes = {60: [700, 900], 46: [1000, 1200], 38: [None, None], 30: [None, None], 24: [500, None]}
    calls = []
    monkeypatch.setattr(zhu, "run_configs", fake_run(outcomes, calls, key="train_size", n_total=300))
    lines = []
    grid = [
        {"train_size": n, "seed": s, "width": 16, "steps": 1500} for n in sorted(outcomes) for s in (0, 1)
    ]
    table = zhu.sweep_fractions(grid, lines.append, "w16", size_key="train_size")
    assert calls == [60, 46, 38, 30]  # 24 lies below two all-failed sizes: not trained
    assert "train_fraction" not in table.columns and table["train_size"].max() == 60
    assert lines[0] == "  w16 train_size 60: 2/2 grokked, steps 800 [700, 900]"
    result = zhu.estimate(table, size_col="train_size")
    assert 38 < result["critical_size"] <= 46
    assert result["n_grokked"] == 4 and result["n_trials"] == 10
    assert 38 / 300 - 1e-9 <= result["ci_low"] <= result["ci_high"] <= 46 / 300 + 1e-9
    assert zhu._examples(table) == 300


def test_pass_rules_on_hand_made_estimates():
    assert zhu.grid_step([0.1, 0.15, 0.2, 0.3]) == pytest.approx(0.05)
    at = {"critical_fraction": 0.49, "ci_low": 0.45, "ci_high": 0.55, "peak_fraction": 0.5}
    assert zhu.peak_at_critical(at, 0.05)
    assert zhu.peak_at_critical({**at, "peak_fraction": 0.54}, 0.05)  # 0.05 away, inside the CI
    assert zhu.peak_at_critical({**at, "peak_fraction": 0.6, "ci_high": 0.62}, 0.05)  # in the CI
    assert not zhu.peak_at_critical({**at, "peak_fraction": 0.6}, 0.05)
    assert not zhu.peak_at_critical({**at, "peak_fraction": math.nan}, 0.05)

    def est(low, high):
        return {"ci_low": low, "ci_high": high}

    assert zhu.monotone_within_ci([est(0.4, 0.5), est(0.45, 0.55), est(0.5, 0.6)])
    assert zhu.monotone_within_ci([est(0.4, 0.5), est(0.3, 0.4)])  # touching CIs: not a fall
    assert not zhu.monotone_within_ci([est(0.6, 0.7), est(0.45, 0.55)])  # falls beyond the CIs
    assert not zhu.monotone_within_ci([est(0.4, 0.5), est(math.nan, math.nan)])
    assert zhu.direction([est(0.65, 0.7), est(0.5, 0.58), est(0.4, 0.5)]) == "falls with width beyond the CIs"
    assert zhu.direction([est(0.4, 0.5), est(0.55, 0.6)]) == "rises with width beyond the CIs"
    assert zhu.direction([est(0.4, 0.5), est(0.45, 0.55)]) == "flat within the CIs"


def test_width_pass_rule_needs_a_rise_beyond_the_cis():
    def est(critical, low, high):
        return {"critical_fraction": critical, "ci_low": low, "ci_high": high}

    assert zhu.grows_beyond_ci([est(0.1, 0.08, 0.12), est(0.15, 0.12, 0.18), est(0.2, 0.18, 0.22)])
    # the row's measurement (hidden 16, 32, 64 in examples of 300): 42.6 [34, 53], 38 [30, 42],
    # 46 [42, 60]: a dip and overlapping end-point CIs, no pass
    measured = [
        est(42.6 / 300, 34 / 300, 53 / 300),
        est(38 / 300, 30 / 300, 42 / 300),
        est(46 / 300, 42 / 300, 0.2),
    ]
    assert zhu.monotone_within_ci(measured)  # the old rule alone would have passed it
    assert not zhu.grows_beyond_ci(measured)
    assert not zhu.grows_beyond_ci([est(0.1, 0.08, 0.12), est(0.11, 0.09, 0.13)])  # CIs overlap
    assert not zhu.grows_beyond_ci([est(0.1, 0.08, 0.12), est(0.3, 0.25, 0.35), est(0.2, 0.18, 0.22)])
    assert not zhu.grows_beyond_ci([est(0.1, 0.08, 0.12), est(math.nan, math.nan, math.nan)])


@pytest.mark.parametrize("key", ["zhu-peak", "zhu-width"])
def test_quick_smoke(key, tmp_path):
    rows = load_rows()
    lines = []
    result = rows[key](Context(out=tmp_path, quick=True, progress=lines.append))
    assert result.key == key and result.paper == zhu.PAPER
    for field in ("figure", "claim", "reference", "measured", "tolerance", "scaled", "command"):
        assert getattr(result, field), field
    assert result.command.startswith("grokray trial studies/critical_size")
    assert (tmp_path / result.plot).read_bytes()[:4] == b"\x89PNG"
    assert lines and all(key in line for line in lines)  # one progress line per fraction trained
    if key == "zhu-width":
        assert [e["group"]["width"] for e in result.values["estimates"]] == list(zhu.WIDTHS[:2])
        assert result.values["n_total"] == 300  # the shipped text sample's rows
        assert set(result.values["p_grok"][zhu.WIDTHS[0]]) == {40, 160}  # the quick profile's sizes
    else:
        assert set(result.values["p_grok"]) == {0.2, 0.8}
