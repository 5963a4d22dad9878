"""Headline plots of studies: drawn from synthetic trial tables, and validated in the study spec."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.image import imread

from grokray.analysis.study_plots import study_plots
from grokray.config import StudyError
from grokray.study import Plot, Study


def _table() -> pd.DataFrame:
    rows = []
    for i, (frac, xi, wd) in enumerate(
        [(f, x, w) for f in (0.3, 0.6) for x in (0.0, 0.2) for w in (0.1, 1.0)]
    ):
        phase = "coexistence" if frac > 0.5 else "memorization"
        rows.append(
            {
                "trial_id": f"t{i}-r0",
                "train_fraction": frac,
                "corruption": xi,
                "weight_decay": wd,
                "reg_strength": wd,
                "regularizer": "l1" if i % 2 else "l2",
                "grokking_delay": 100.0 * (i + 1),
                "doshi_phase": phase,
            }
        )
    return pd.DataFrame(rows)


def test_every_kind_draws_a_png(tmp_path):
    table = _table()
    curves = pd.DataFrame(
        [
            {"trial_id": t, "step": s, "complexity_bytes": 100.0 + s}
            for t in table["trial_id"]
            for s in (0, 10, 20)
        ]
    )
    plots = [
        Plot("trials", x="reg_strength", y="grokking_delay", color="regularizer", logx=True),
        Plot("phase", x="train_fraction", y="corruption", value="doshi_phase", facet="weight_decay"),
        Plot("curves", y="complexity_bytes", color="reg_strength"),
    ]
    paths = study_plots(plots, table, curves, tmp_path)
    assert [p.name for p in paths] == [p.file_name() for p in plots]
    for path in paths:
        image = imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0.01  # not a blank canvas


@pytest.mark.parametrize(
    ("plot", "field"),
    [
        (Plot("pie", x="train_fraction", y="grokked"), "plots.kind"),
        (Plot("trials", x="no_such_name", y="grokking_delay"), "plots.x"),
        (Plot("phase", x="train_fraction", y="corruption"), "plots"),
        (Plot("curves"), "plots.y"),
    ],
)
def test_bad_plots_are_refused(plot, field):
    with pytest.raises(StudyError) as err:
        Study(name="x", plots=[plot], num_samples=1, seeds=2).validate()
    assert err.value.field == field


def test_log_axes_without_positive_values_still_draw(tmp_path):
    """Nobody grokked: every grokking_delay is missing, a log y axis must not break the figure."""
    table = _table().assign(grokking_delay=None)
    curves = pd.DataFrame(
        [{"trial_id": t, "step": s, "val_loss": 0.0} for t in table["trial_id"] for s in (0, 10)]
    )
    plots = [
        Plot("trials", x="reg_strength", y="grokking_delay", color="regularizer", logx=True, logy=True),
        Plot("curves", y="val_loss", color="regularizer", logy=True),
    ]
    assert len(study_plots(plots, table, curves, tmp_path)) == 2
