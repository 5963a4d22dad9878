"""Zhang et al.'s rows: the quick smokes of ``zhang-wand`` and ``zhang-norm``, their criteria on
hand-made outcomes, and the glass studies as shipped (each optimizer with its own settings; WanD at
the paper's x + y setting no longer explodes)."""

from __future__ import annotations

import math

import pytest

from grokray.reproduce import Context
from grokray.reproduce.core import run_configs, study_configs
from grokray.reproduce.zhang import (
    GROK_OVER_MEMORIZE,
    NORM_BOUND,
    delay_of,
    norm_constraint,
    norm_verdict,
    wand,
    wand_summary,
    wand_verdict,
)
from grokray.settings import PROJECT_ROOT
from grokray.study import load_study


def quiet(tmp_path):
    return Context(out=tmp_path, quick=True, progress=lambda line: None)


@pytest.mark.parametrize("function", [wand, norm_constraint])
def test_quick_smoke_fills_the_row_and_draws_the_png(tmp_path, function):
    result = function(quiet(tmp_path))
    assert result.key in ("zhang-wand", "zhang-norm") and result.paper == "Zhang et al. 2025"
    for field in ("figure", "claim", "reference", "measured", "tolerance", "scaled", "command"):
        assert getattr(result, field), field
    assert result.command.startswith("grokray trial studies/glass")
    assert (tmp_path / result.plot).stat().st_size > 0
    assert result.values["checks"]


def history(*rows):
    return [
        {"step": s, "train_loss": loss, "train_acc": 1.0, "val_acc": acc, "weight_norm": norm}
        for s, loss, acc, norm in rows
    ]


def test_wand_summary_and_verdict_by_hand():
    p = 41  # 2·ln 41 = 7.43
    steady = {"history": history((0, 3.7, 0.02, 12.0), (100, 0.5, 0.6, 30.0), (200, 0.01, 0.95, 40.0)),
              "grokking_step": 200, "memorization_step": 100, "steps_run": 200}  # fmt: skip
    spiky = {"history": history((0, 3.7, 0.02, 12.0), (100, 25.0, 0.9, 200.0), (200, 0.01, 0.5, 60.0)),
             "grokking_step": None, "memorization_step": 100, "steps_run": 200}  # fmt: skip
    s = wand_summary(steady, p, 0.9)
    assert (s["first_above"], s["peak_val_acc"], s["final_val_acc"], s["max_train_loss"]) == (
        200,
        0.95,
        0.95,
        3.7,
    )
    assert not s["diverged"] and s["max_weight_norm"] == 40.0
    t = wand_summary(spiky, p, 0.9)
    assert t["diverged"] and t["first_above"] == 100 and t["max_weight_norm"] == 200.0
    assert wand_verdict([s, s], 0.9) == dict.fromkeys(
        ("every_seed_generalizes", "ends_generalized", "no_divergence", "norm_bounded"), True
    )
    assert wand_verdict([s, t], 0.9) == dict.fromkeys(
        ("every_seed_generalizes", "ends_generalized", "no_divergence", "norm_bounded"), False
    )
    nan = {**steady, "history": history((0, 3.7, 0.02, 12.0), (100, math.nan, 0.0, math.nan))}
    assert wand_summary(nan, p, 0.9)["diverged"]
    assert NORM_BOUND == 175.0


def test_delay_is_censored_at_the_budget_and_the_norm_verdict_compares_per_width():
    assert delay_of({"memorization_step": 300, "grokking_step": 450}, 1500) == (150.0, False)
    assert delay_of({"memorization_step": 300, "grokking_step": None}, 1500) == (1200.0, True)
    assert delay_of({"memorization_step": None, "grokking_step": None}, 1500) == (None, True)
    assert delay_of({"memorization_step": 400, "grokking_step": 350}, 1500) == (0.0, False)

    def seed(mem, grok):
        return {"memorization_step": mem, "grokking_step": grok}

    budget = 1500
    cells = {
        32: {30.0: [seed(850, 1100), seed(650, 1150)], 0.0: [seed(450, None), seed(450, 1000)]},
        64: {30.0: [seed(350, 400), seed(300, 650)], 0.0: [seed(300, None), seed(300, None)]},  # 650 > 600
        16: {30.0: [seed(200, 300), seed(None, None)], 0.0: [seed(300, None), seed(300, None)]},
        8: {30.0: [seed(200, 300), seed(200, 300)], 0.0: [seed(800, None), seed(300, 500)]},  # 1500 < 1600
    }
    assert GROK_OVER_MEMORIZE == 2.0
    assert norm_verdict(cells, budget) == {
        "width_32": True,
        "width_64": False,
        "width_16": False,
        "width_8": False,
    }


def test_glass_gives_each_optimizer_its_own_settings_and_temperature_grid():
    study = load_study(PROJECT_ROOT / "studies" / "glass.py")
    configs = {}
    for point in study.grid_points():
        config = study.resolve(point)
        configs.setdefault(config["optimizer"], []).append(config)
    adamw, sgd, wand_ = configs["adamw"], configs["sgd"], configs["wand"]
    assert {(c["lr"], c["weight_decay"]) for c in adamw} == {(3e-3, 1.0)}  # the paper's Table 1
    assert {(c["lr"], c["momentum"], c["weight_decay"]) for c in sgd} == {(0.1, 0.9, 0.0)}
    assert {(c["lr"], c["weight_decay"], c["friction"], c["wand_l0"]) for c in wand_} == {
        (3e-3, 0.0, 0.5, -8.0)
    }
    assert 0.5 in [c["temperature"] for c in wand_]  # the paper's x + y k_B·T
    assert (
        max(c["temperature"] for c in adamw)
        <= 1e-4
        < min(c["temperature"] for c in wand_ if c["temperature"])
    )
    assert {(c["p"], c["width"], c["heads"], c["depth"], c["train_fraction"]) for c in adamw + wand_} == {
        (67, 128, 4, 1, 0.5)
    }


def test_glass_norm_is_adamw_without_weight_decay_at_three_widths_with_and_without_norm_30():
    study = load_study(PROJECT_ROOT / "studies" / "glass_norm.py")
    configs = [study.resolve(point) for point in study.grid_points()]
    assert sorted({(c["width"], c["norm_constraint"]) for c in configs}) == [
        (w, n) for w in (32, 64, 128) for n in (0.0, 30.0)
    ]
    assert {(c["optimizer"], c["lr"], c["weight_decay"], c["p"]) for c in configs} == {
        ("adamw", 1e-3, 0.0, 67)
    }


def _run(overrides):
    configs = study_configs("glass.py", ["optimizer=wand", "temperature=0.5", "steps=40", "eval_every=10",
                                         "seeds=1", *overrides], quick=True)  # fmt: skip
    [outcome] = run_configs(configs, stop_on_grok=False)
    return [r["weight_norm"] for r in outcome["history"]], [r["train_loss"] for r in outcome["history"]]


def test_wand_at_the_papers_x_plus_y_setting_no_longer_explodes():
    norms, losses = _run([])
    assert max(norms) < 1.2 * norms[0] and all(loss < 2 * math.log(11) for loss in losses)
    # the old study's wand step (lr = dt = 0.5) at the same temperature: thrown into the thousands
    norms, losses = _run(["lr=0.5"])
    assert max(norms) > 10 * norms[0] and max(losses) > 1e3
