"""The ``notsawo-modular`` row: its smoke profile, and its verdict on runs of a known law."""

from __future__ import annotations

import math

import pytest

from grokray.reproduce import load_rows
from grokray.reproduce import notsawo_modular as module
from grokray.reproduce.core import Context


def test_quick_profile_fills_the_row_and_draws_its_figure(tmp_path):
    row = load_rows()["notsawo-modular"](Context(out=tmp_path, quick=True, progress=lambda line: None))
    assert row.key == "notsawo-modular"
    for field in ("paper", "figure", "claim", "reference", "measured", "tolerance", "scaled", "command"):
        assert getattr(row, field), field
    assert row.command.startswith("grokray run studies/regularizers.py --set p=31")
    assert (tmp_path / row.plot).stat().st_size > 0
    assert row.values["control"]["runs"] == 1
    assert {r["regularizer"] for r in row.values["runs"]} == {"l2", "none"}


def fake_runs(exponent: float, control_generalizes: bool = False):
    """Outcomes in which delay = 2·(lr·β)^exponent exactly, and a β = 0 control."""

    def run_configs(configs, **_):
        outcomes = []
        for c in configs:
            if c["regularizer"] == "none":
                grok = 300 if control_generalizes else None
                outcomes.append(_outcome(c, 100, grok))
            else:
                delay = 2.0 * (c["lr"] * c["reg_strength"]) ** exponent
                outcomes.append(_outcome(c, 100, 100 + delay))
        return outcomes

    return run_configs


def _outcome(config, memorized, grokked):
    return {
        "memorization_step": memorized,
        "grokking_step": grokked,
        "grokking_delay": None if grokked is None else grokked - memorized,
        "final_train_acc": 1.0,
        "final_val_acc": 1.0 if grokked else 0.02,
        "steps_run": config["steps"],
    }


def test_an_exact_inverse_law_passes_and_every_norm_is_fitted_over_both_lrs(tmp_path, monkeypatch):
    monkeypatch.setattr(module, "run_configs", fake_runs(-1.0))
    row = module.notsawo_modular(Context(out=tmp_path, progress=lambda line: None))
    assert row.passed, row.measured
    fits = {f["group"]: f for f in row.values["fits"]}
    assert set(fits) == {"l1", "l2", "nuclear", "pooled"}
    for fit in fits.values():
        assert fit["slope"] == pytest.approx(-1.0)
        assert fit["n_used"] == 3 * 2 * 2 * (3 if fit["group"] == "pooled" else 1)  # β × lr × seeds
    assert row.values["slope_vs_beta_by_lr"]["l2@lr=0.3"] == pytest.approx(-1.0)
    assert row.values["per_seed_slopes"]["nuclear"] == pytest.approx([-1.0, -1.0])
    assert row.values["control"] == {
        "runs": 4,
        "memorized": 4,
        "generalized": 0,
        "final_val_acc": [0.02] * 4,
        "steps": 6000,
    }  # 2 lrs × 2 seeds
    assert "l1 -1.00 (CI [-1.00, -1.00], n=12, 0 censored" in row.measured


@pytest.mark.parametrize(("exponent", "control_generalizes"), [(-0.5, False), (-1.0, True)])
def test_a_shallower_law_or_a_generalizing_control_fails(
    tmp_path, monkeypatch, exponent, control_generalizes
):
    monkeypatch.setattr(module, "run_configs", fake_runs(exponent, control_generalizes))
    row = module.notsawo_modular(Context(out=tmp_path, progress=lambda line: None))
    assert not row.passed
    assert math.isclose(row.values["fits"][0]["slope"], exponent)
