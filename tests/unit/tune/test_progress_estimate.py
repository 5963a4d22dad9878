"""The running estimate on a study's progress line: pooled for a size-only study, one per group
(a weight decay) for a phase boundary, never a pooled number across groups."""

from grokray.tune.callbacks import _quick_estimate


def _rows(f0: float, **group: float) -> list[dict]:
    return [{"train_fraction": f / 10, "grokked": f / 10 > f0, **group} for f in range(1, 10)]


def test_a_size_only_study_shows_one_estimate_with_its_interval():
    text = _quick_estimate(_rows(0.45))
    assert text.startswith("critical fraction ≈ 0.450 [")  # separated: midway between 0.4 and 0.5


def test_a_phase_boundary_shows_one_estimate_per_group():
    rows = _rows(0.75, weight_decay=0.1) + _rows(0.45, weight_decay=1.0)
    text = _quick_estimate(rows, "train_fraction", ["weight_decay"])
    assert text == "critical fraction by weight_decay ≈ 0.1: 0.750; 1.0: 0.450"


def test_too_few_sizes_show_nothing():
    assert _quick_estimate([{"train_fraction": 0.5, "grokked": True}]) == ""
