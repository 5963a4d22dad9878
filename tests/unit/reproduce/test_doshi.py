"""Doshi et al.'s reproduction rows (quick smoke) and the settings of the corruption study."""

from __future__ import annotations

import pytest
import torch

from grokray.outcomes import doshi_phase
from grokray.reproduce import doshi
from grokray.reproduce.core import STUDIES, Context
from grokray.study import load_study


@pytest.fixture(scope="module")
def quick_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("doshi")
    ctx = Context(out=out, quick=True, progress=lambda line: None)
    rows = [function(ctx) for function in (doshi.clean, doshi.inversion)]
    return out, rows


def test_quick_rows_fill_every_field_and_draw_their_plots(quick_rows):
    out, rows = quick_rows
    assert [r.key for r in rows] == ["doshi-clean", "doshi-inversion"]
    for result in rows:
        assert result.paper == doshi.PAPER
        for field in ("figure", "claim", "reference", "measured", "tolerance", "command", "plot"):
            assert getattr(result, field), (result.key, field)
        assert (out / result.plot).stat().st_size > 1000
        assert result.values["setting"]["p"] == 23  # the study's quick profile
        assert result.values["setting"]["init"] == "doshi"
    clean, inversion = rows
    assert len(clean.values["grokking_step"]) == 1  # one seed in the quick profile
    assert set(inversion.values) == {"wd=0", "wd=5", "wd=15", "setting"}
    assert all(len(cell["phases"]) == 1 for key, cell in inversion.values.items() if key != "setting")


def test_the_rows_commands_are_grokray_trial_lines_that_load(quick_rows):
    _, rows = quick_rows
    for result in rows:
        program, study_file, *rest = result.command.replace("grokray trial", "grokray-trial").split()
        assert (program, study_file) == ("grokray-trial", "studies/corruption.py")
        assert rest[::2] == ["--set"] * (len(rest) // 2)
        config = load_study(STUDIES / doshi.STUDY, rest[1::2]).resolve({})
        assert config["train_fraction"] == 0.5 and config["init"] == "doshi"


def test_reference_curve_interpolation_by_hand():
    curve = [(0, 0.0, 1.0), (10, 1.0, 0.0), (30, 0.5, 0.5)]
    assert doshi._at(curve, 10) == (1.0, 0.0)
    assert doshi._at(curve, 5) == pytest.approx((0.5, 0.5))
    assert doshi._at(curve, 20) == pytest.approx((0.75, 0.25))
    with pytest.raises(ValueError, match="outside"):
        doshi._at(curve, 31)


def test_the_papers_numbers_are_the_phases_they_are_quoted_for():
    """The notebook's end points fall in the phase the row expects, by grokray's rule of the paper."""
    for weight_decay, (phase, curve) in doshi.INVERSION.items():
        _, train, test = curve[-1]
        assert doshi_phase(train, test, doshi.XI, ever_generalized=True) == phase, weight_decay
    # full inversion ends at the clean share plus the corrupted labels that are right by chance
    assert doshi.INVERSION[15.0][1][-1][1] == pytest.approx(1 - doshi.XI + doshi.XI / 97, abs=2e-3)
    first = next(step for step, _, test in doshi.CLEAN_CURVE if test >= 0.9)
    assert first == doshi.CLEAN_GROKKING_STEP
    assert next(step for step, train, _ in doshi.CLEAN_CURVE if train >= 0.9) == doshi.CLEAN_MEMORIZATION_STEP
    for weight_decay, steps in doshi.INVERSION_STEPS.items():  # budgets inside the reference curves
        doshi._at(doshi.INVERSION[weight_decay][1], steps)


def test_corruption_study_has_doshis_phase_diagram_settings():
    """Their Training_scripts/phase_diagrams_wd.py: N=500, p=97, 2,000 epochs, lr 1e-2,
    fractions and ξ = linspace(0.1, 0.9, 17), wds [0, 5, 15, 20], AdamW betas (0.9, 0.98)."""
    study = load_study(STUDIES / "corruption.py")
    config = study.resolve(study.grid_points()[0])
    expected = {
        "p": 97, "width": 500, "depth": 1, "bias": False, "activation": "quadratic", "encoding": "onehot",
        "init": "doshi", "loss": "mse", "optimizer": "adamw", "lr": 0.01, "beta1": 0.9, "beta2": 0.98,
        "steps": 2000, "batch_size": 0,
    }  # fmt: skip
    assert {k: config[k] for k in expected} == expected
    points = study.grid_points()
    linspace = [0.1 + 0.05 * i for i in range(17)]
    assert sorted({p["weight_decay"] for p in points}) == [0.0, 5.0, 15.0, 20.0]
    for key in ("train_fraction", "corruption"):
        assert sorted({p[key] for p in points}) == pytest.approx(linspace)
    assert len(points) == 17 * 17 * 4


def test_corruption_study_builds_the_network_with_doshis_init():
    """The config's ``init`` reaches the model: both layers N(0, 0.05²) at width 500."""
    from grokray.models import build_model

    config = load_study(STUDIES / "corruption.py").resolve({"train_fraction": 0.5, "corruption": 0.0,
                                                           "weight_decay": 5.0})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config)
    for name, parameter in model.named_parameters():
        assert float(parameter.detach().std()) == pytest.approx(0.05, rel=0.02), name
