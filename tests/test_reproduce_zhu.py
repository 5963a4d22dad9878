"""Zhu et al. rows of the reproduction suite: the sweep's early-stopping rule and pass rules on
hand-made outcomes, and the quick smoke of each row (fields filled, PNG written)."""

from __future__ import annotations

import math

import pytest

from grokray.reproduce import Context, load_rows, zhu


def fake_run(outcomes_by_fraction, calls):
    """A run_configs stand-in: grokked where the hand-made table says so."""

    def run(configs, stop_on_grok=True, progress=None, label=""):
        fraction = configs[0]["train_fraction"]
        calls.append(fraction)
        return [
            {
                "grokked": step is not None,
                "grokking_step": step,
                "stop_reason": "grokked" if step is not None else "budget",
                "n_total": 961,
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
        0.4: 0, 0.5: 0, 0.6: 0, 0.7: 0, 0.8: 1, 0.9: 2
    }
    assert zhu.mean_steps(table)[0.9] == 150 and zhu.mean_steps(table)[0.8] == 900
    assert math.isnan(zhu.mean_steps(table)[0.7])


def test_a_failure_above_a_grokked_fraction_does_not_count(monkeypatch):
    outcomes = {0.9: [None, None], 0.8: [300, 400], 0.7: [None, None], 0.6: [None, None], 0.5: [None, None]}
    calls = []
    monkeypatch.setattr(zhu, "run_configs", fake_run(outcomes, calls))
    zhu.sweep_fractions(configs(sorted(outcomes)))
    assert calls == [0.9, 0.8, 0.7, 0.6]  # 0.9's failure lies above 0.8, which grokked: 0.7 is trained


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
    else:
        assert set(result.values["p_grok"]) == {0.2, 0.8}
