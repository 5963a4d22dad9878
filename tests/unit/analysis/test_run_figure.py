"""The classic grokking figure of one run."""

from __future__ import annotations

import pandas as pd

from grokray.analysis.plots import plot_run_curves, run_curves_figure


def _curve() -> pd.DataFrame:
    steps = [0, 50, 100, 200, 400, 800, 1600]
    return pd.DataFrame(
        {
            "step": steps,
            "train_acc": [0.05, 0.6, 1.0, 1.0, 1.0, 1.0, 1.0],
            "val_acc": [0.04, 0.05, 0.06, 0.1, 0.5, 0.99, 1.0],
        }
    )


def test_the_run_figure_has_a_log_step_axis_and_marks_both_onsets(tmp_path):
    outcome = {"memorization_step": 100, "grokking_step": 800}
    fig = run_curves_figure(_curve(), outcome, "f=0.3 seed=0 grokked@800")
    (ax,) = fig.axes
    assert ax.get_xscale() == "symlog"
    marks = sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--")
    assert marks == [100.0, 800.0]
    assert [t.get_text() for t in ax.texts] == ["memorized @ 100", "grokked @ 800"]
    assert {line.get_label() for line in ax.lines} >= {"train accuracy", "validation accuracy"}
    path = plot_run_curves(_curve(), outcome, tmp_path / "run.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_run_that_never_grokked_marks_only_its_memorization():
    fig = run_curves_figure(_curve(), {"memorization_step": 100, "grokking_step": None})
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["memorized @ 100"]
