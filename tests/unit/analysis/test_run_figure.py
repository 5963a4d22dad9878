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


# ----------------------------------------------------------------------------- the study's figures


def _study(facet_values=(0.1, 1.0)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two seeds at four nearby fractions per weight decay: the largest grok at 800, 0.42 runs to
    the budget, once above the threshold unconfirmed, and 0.40 is dominated (never trained)."""
    rows, curves = [], []
    for wd in facet_values:
        for f, reason in ((0.40, "dominated"), (0.42, "budget"), (0.44, "grokked"), (0.46, "grokked")):
            for seed in (0, 1):
                tid = f"wd{wd}-f{f}-s{seed}"
                grokked = reason == "grokked"
                rows.append(
                    {
                        "trial_id": tid, "train_fraction": f, "weight_decay": wd, "seed": seed,
                        "grokked": grokked, "grokking_step": 800.0 if grokked else None,
                        "stop_reason": reason, "grok_unconfirmed": reason == "budget" and seed == 0,
                    }
                )  # fmt: skip
                if reason != "dominated":
                    frame = _curve().assign(trial_id=tid)
                    curves.append(frame)
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def test_the_study_figure_has_log_steps_distinct_colours_marks_and_a_panel_per_second_dimension():
    from matplotlib.colors import to_hex

    from grokray.analysis.plots import validation_curves_figure

    table, curves = _study()
    fig = validation_curves_figure(curves, table, facet_col="weight_decay")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["weight_decay=0.1", "weight_decay=1"]
    assert all(ax.get_xscale() == "symlog" for ax in panels)
    # each panel draws its own runs only: 3 trained fractions x 2 seeds, a val and a train line each
    solid = [ln for ln in panels[0].lines if ln.get_linestyle() == "-"]
    assert len(solid) == 6
    # nearby fractions 0.42 / 0.44 / 0.46 get colours far apart (by rank), not three near-identical shades
    colours = {to_hex(ln.get_color()) for ln in solid}
    assert len(colours) == 3
    # the grokking step of each grokked run is marked on its validation curve (4 runs per panel)
    marks = [ln for ln in panels[0].lines if ln.get_marker() == "o"]
    assert [float(m.get_xdata()[0]) for m in marks] == [800.0] * 4
    assert [float(m.get_ydata()[0]) for m in marks] == [0.99] * 4
    bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0.4", "0.42", "0.44", "0.46"]
    # without a second dimension: one panel of every run
    single = validation_curves_figure(curves, table)
    assert len([ax for ax in single.axes if ax.get_label() != "<colorbar>"]) == 1


def test_the_p_grok_figure_draws_inferred_runs_hollow_counts_runs_and_flags_unconfirmed_ones():
    from matplotlib.colors import to_rgba

    from grokray.analysis import critical_data_size
    from grokray.analysis.plots import grok_probability_figure

    table, _ = _study(facet_values=(0.1,))
    estimates = critical_data_size(table, n_bootstrap=20)
    fig = grok_probability_figure(table, estimates, n_bootstrap=20)
    ax, ax_steps = fig.axes[0], fig.axes[1]
    points = ax.collections[0]
    assert points.get_offsets()[:, 0].tolist() == [0.40, 0.42, 0.44, 0.46]
    faces = [tuple(c[:3]) for c in points.get_facecolors()]
    white = to_rgba("white")[:3]
    assert faces[0] == white and all(f != white for f in faces[1:])
    assert [t.get_text() for t in ax.texts] == ["2", "2", "2", "2"]  # runs behind each point
    # the unconfirmed run at 0.42: an x where P(grok) would be had it grokked (1 of 2)
    crosses = [c for c in ax.collections[1:] if c.get_offsets().shape[0] == 1]
    assert any(c.get_offsets()[0].tolist() == [0.42, 0.5] for c in crosses)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("inferred") for label in labels)
    assert any("patience not reached" in label for label in labels)
    assert any("mean steps to grok" in label for label in labels) and any("peak" in label for label in labels)
    assert ax_steps.lines[0].get_xdata().tolist() == [0.40, 0.42, 0.44, 0.46]


def test_the_p_grok_legend_lists_only_what_is_drawn():
    from grokray.analysis.plots import grok_probability_figure

    table = pd.DataFrame(
        {"train_fraction": [0.3, 0.3, 0.6, 0.6], "grokked": [False] * 4, "stop_reason": ["budget"] * 4}
    )
    fig = grok_probability_figure(table, [], n_bootstrap=0)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["all trials"]  # no fit, critical line, steps series, inferred or unconfirmed entries
