"""Figures of a grokking study: learning curves and P(grok) vs data size.

Figures are built with matplotlib's object-oriented API (``matplotlib.figure.Figure``)
rather than ``pyplot``: no global figure registry, no GUI backend (``savefig`` renders PNG
with Agg), no backend switch that would leak into the rest of the process, and safe to
call from worker threads.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grokray.analysis.critical import (
    bootstrap_logistic,
    fit_logistic,
    grok_probability_by_size,
    split_groups,
)

__all__ = [
    "grok_probability_figure",
    "plot_critical_by_budget",
    "plot_grok_probability",
    "plot_phase_boundary",
    "plot_run_curves",
    "plot_validation_curves",
    "run_curves_figure",
    "size_column",
    "validation_curves_figure",
]

DPI = 110

SIZE_LABELS = {"train_fraction": "training fraction", "train_size": "training examples (train_size)"}


def size_column(table: pd.DataFrame) -> str:
    """The column that holds a trial's training-set size: ``train_size`` where every trial set one
    (> 0 overrides ``train_fraction`` in the split, see ``grokray.tasks.pool.split``), else
    ``train_fraction``. A ``train_size`` study's ``train_fraction`` is the unused default (0.5)."""
    if "train_size" in table.columns:
        sizes = pd.to_numeric(table["train_size"], errors="coerce")
        if sizes.notna().any() and (sizes.dropna() > 0).all():
            return "train_size"
    return "train_fraction"


def _size_label(size_col: str) -> str:
    return SIZE_LABELS.get(size_col, size_col)


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png", bbox_inches="tight")
    return out


def _size_colors(values: list[float]) -> tuple[dict[float, Any], Any, Any]:
    """A colour per distinct size, by rank (not value): nearby fractions (0.40, 0.425) get colours
    as far apart as 0.1 and 0.9 would on a value scale. Returns the colours, the colormap and its
    boundary norm (for a discrete colorbar)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    distinct = sorted(set(values))
    base = colormaps["turbo"] if len(distinct) > 10 else colormaps["viridis"]
    n = max(1, len(distinct))
    palette = [base(0.08 + 0.84 * i / max(1, n - 1)) for i in range(n)]
    cmap = ListedColormap(palette)
    norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
    return dict(zip(distinct, palette, strict=True)), cmap, norm


def _size_text(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:.0f}"


def _facets(table: pd.DataFrame, facet_col: str | None, max_facets: int = 6) -> list[tuple[str, set]]:
    """(title, trial ids) per panel: one per value of ``facet_col`` (quantile bins of a numeric
    column with more than ``max_facets`` values); one panel of every trial without it."""
    if not facet_col or facet_col not in table or "trial_id" not in table:
        return [("", set(table["trial_id"]) if "trial_id" in table else set())]
    column = table[facet_col]
    numeric = pd.to_numeric(column, errors="coerce")
    if column.nunique() > max_facets and numeric.notna().all():
        bins = pd.qcut(numeric, q=min(4, max_facets), duplicates="drop")
        labels = bins.map(lambda b: f"{facet_col} in ({b.left:.3g}, {b.right:.3g}]")
        keys = sorted(labels.unique(), key=lambda t: float(t.split("(")[1].split(",")[0]))
        return [(k, set(table.loc[labels == k, "trial_id"])) for k in keys]
    keys = sorted(column.dropna().unique(), key=lambda v: (str(type(v)), v))
    if len(keys) <= 1:
        return [("", set(table["trial_id"]))]
    return [
        (
            f"{facet_col}={v:.3g}" if isinstance(v, float) else f"{facet_col}={v}",
            set(table.loc[column == v, "trial_id"]),
        )
        for v in keys
    ]


def validation_curves_figure(
    curves: pd.DataFrame,
    table: pd.DataFrame,
    size_col: str | None = None,
    facet_col: str | None = None,
) -> Figure:
    """The study's grokking figure: validation (solid) and train (faint dashed) accuracy against a
    log step axis (symlog: step 0 stays on it), one line per run, each run's grokking step marked
    (●) on its validation curve.

    Lines are coloured by the run's training-set size ``size_col`` (default: ``size_column`` of
    ``table``) by rank, with a discrete colorbar, so that nearby sizes are told apart; runs missing
    from ``table`` are drawn grey. ``facet_col`` (a second searched dimension: weight decay, width)
    gives one panel per value (quantile bins when it has many), sharing the axes.
    """
    size_col = size_col or size_column(table)
    sizes: dict[Hashable, float] = {}
    steps_at: dict[Hashable, float] = {}
    if {"trial_id", size_col} <= set(table.columns):
        known = table.dropna(subset=[size_col]).drop_duplicates("trial_id")
        sizes = dict(zip(known["trial_id"], known[size_col].astype(float), strict=True))
        if "grokking_step" in known:
            grokked = known.dropna(subset=["grokking_step"])
            steps_at = dict(zip(grokked["trial_id"], grokked["grokking_step"].astype(float), strict=True))
    colors, cmap, norm = _size_colors(list(sizes.values()))
    facets = _facets(table, facet_col)
    if len(facets) > 1:  # curves of runs outside the table still get drawn, in a panel of their own
        unplaced = set(curves["trial_id"]) - set().union(*(ids for _, ids in facets))
        if unplaced:
            facets.append(("not in the trial table", unplaced))
    columns = min(3, len(facets))
    rows = math.ceil(len(facets) / columns)
    fig = Figure(figsize=(5.2 * columns + 1.6, 3.9 * rows + 0.6))
    axes = [fig.add_subplot(rows, columns, i + 1) for i in range(len(facets))]
    has_train = "train_acc" in curves.columns
    positive = curves.loc[curves["step"] > 0, "step"] if "step" in curves else pd.Series(dtype=float)
    by_trial = dict(tuple(curves.groupby("trial_id", sort=True))) if len(curves) else {}
    for ax, (title, ids) in zip(axes, facets, strict=True):
        for trial_id, trial in by_trial.items():
            if len(facets) > 1 and trial_id not in ids:
                continue
            trial = trial.sort_values("step")
            size = sizes.get(trial_id)
            color = colors[size] if size is not None else (0.5, 0.5, 0.5, 1.0)
            if has_train:
                ax.plot(trial["step"], trial["train_acc"], ls="--", lw=0.8, alpha=0.3, color=color)
            ax.plot(trial["step"], trial["val_acc"], ls="-", lw=1.3, alpha=0.9, color=color)
            step = steps_at.get(trial_id)
            if step is not None and trial["val_acc"].notna().any():
                known = trial.dropna(subset=["val_acc"])
                at = float(np.interp(step, known["step"], known["val_acc"]))  # an evaluation step as a rule
                ax.plot([step], [at], "o", ms=4, color=color, mec="k", mew=0.4, zorder=4)
        ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
        ax.set_xlabel("step (log scale)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title or "validation and train accuracy vs step", fontsize=10)
        ax.grid(alpha=0.3, which="both")

    distinct = sorted(colors)
    if distinct:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=_size_label(size_col))
        every = max(1, math.ceil(len(distinct) / 20))  # at most 20 tick labels
        ticks = list(range(0, len(distinct), every))
        bar.set_ticks(ticks, labels=[_size_text(distinct[i]) for i in ticks])
    handles = [Line2D([], [], color="k", ls="-", label="validation")]
    if has_train:
        handles.append(Line2D([], [], color="k", ls="--", alpha=0.4, label="train"))
    if steps_at:
        handles.append(Line2D([], [], color="w", marker="o", mfc="grey", mec="k", label="grokking step"))
    axes[0].legend(handles=handles, loc="lower right", fontsize=8)
    if len(facets) > 1:
        fig.suptitle(f"accuracy vs step, by {facet_col}", fontsize=11)
    return fig


def run_curves_figure(curve: pd.DataFrame, outcome: dict[str, Any], title: str = "") -> Figure:
    """The classic grokking figure of one run: train and validation accuracy against a log step
    axis (symlog: step 0 stays on it), the memorization and grokking steps marked."""
    curve = curve.sort_values("step")
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    if "train_acc" in curve.columns:
        ax.plot(curve["step"], curve["train_acc"], color="C0", lw=1.5, label="train accuracy")
    ax.plot(curve["step"], curve["val_acc"], color="C1", lw=1.5, label="validation accuracy")
    positive = curve.loc[curve["step"] > 0, "step"]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    for key, color, text in (("memorization_step", "C0", "memorized"), ("grokking_step", "C1", "grokked")):
        step = outcome.get(key)
        if step is not None and not (isinstance(step, float) and math.isnan(step)):
            ax.axvline(float(step), color=color, ls="--", lw=1)
            ax.annotate(f"{text} @ {int(step)}", (float(step), 0.03 if key == "grokking_step" else 0.12),
                        color=color, fontsize=8, xytext=(4, 0), textcoords="offset points")  # fmt: skip
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step (log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "train and validation accuracy", fontsize=9)
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def plot_run_curves(curve: pd.DataFrame, outcome: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """``run_curves_figure`` saved as a PNG at ``path``."""
    return _save(run_curves_figure(curve, outcome, title), path)


def plot_validation_curves(
    curves: pd.DataFrame,
    table: pd.DataFrame,
    path: str | Path,
    size_col: str | None = None,
    facet_col: str | None = None,
) -> Path:
    """``validation_curves_figure`` saved as a PNG at ``path``."""
    return _save(validation_curves_figure(curves, table, size_col, facet_col), path)


def _group_key(group: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(group.items())


def _group_label(group: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) if group else "all trials"


def _budget_text(estimates: list[dict]) -> str:
    budgets = sorted({int(e["budget_steps"]) for e in estimates})
    if not budgets:
        return "budget"
    if len(budgets) == 1:
        return f"{budgets[0]:,} steps"
    return f"{budgets[0]:,}–{budgets[-1]:,} steps"


def _flagged_by_size(trials: pd.DataFrame, size_col: str, sizes: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per size of ``sizes``: the runs inferred (dominated) and the runs ``grok_unconfirmed`` of
    ``trials``, as the per-size summary counts them (``grokray.analysis.sizes.size_summary``)."""
    from grokray.analysis.sizes import size_summary

    counts = size_summary(trials, size_col).set_index(size_col)
    inferred = counts["dominated"].reindex(sizes, fill_value=0).to_numpy(dtype=float)
    unconfirmed = counts["unconfirmed"].reindex(sizes, fill_value=0).to_numpy(dtype=float)
    return inferred, unconfirmed


def grok_probability_figure(
    table: pd.DataFrame,
    estimates: list[dict],
    *,
    size_col: str | None = None,
    n_bins: int = 3,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Figure:
    """P(grok within budget) vs data size: data, logistic fit, band and critical size.

    Per group of ``estimates`` (as returned by ``critical_data_size``): empirical P(grok)
    per size (marker area ∝ number of runs, the number written by it; hollow where every run was
    inferred — dominated, never trained — and "k inf." where some were), an ✕ where runs were above
    the threshold at the budget without confirmation (``grok_unconfirmed``: P had they grokked),
    the fitted logistic curve, its bootstrap 95 % band, a dashed vertical line at the critical
    size with its CI shaded; on a second y-axis the mean steps-to-grok per size, its peak (★)
    marking the critical regime. The legend lists only what is drawn.

    The x axis is the size column ``size_col``: ``train_fraction``, or ``train_size`` in
    examples (default: ``size_column`` of ``table``, so a ``train_size`` sweep is drawn against
    its sizes). The groups are rebuilt from ``table`` with the group columns named in
    ``estimates``; pass the ``size_col``, ``n_bins``, ``n_bootstrap`` and ``seed`` that produced
    the estimates so that the band is drawn from the very resamples behind the reported CI.
    """
    size_col = size_col or size_column(table)
    group_cols = list(estimates[0]["group"]) if estimates else []
    groups = {_group_key(g): trials for g, trials in split_groups(table, group_cols, n_bins, size_col)}
    if not estimates:  # nothing estimated: still show the data
        estimates_to_draw: list[dict] = [{"group": g} for g, _ in split_groups(table, (), n_bins, size_col)]
    else:
        estimates_to_draw = estimates
    fraction_axis = size_col == "train_fraction"

    fig = Figure(figsize=(8.5, 5))
    ax = fig.add_subplot()
    ax_steps = ax.twinx()
    colors = colormaps["tab10"]
    any_inferred = any_unconfirmed = drawn_fit = drawn_critical = drawn_steps = False

    for i, estimate in enumerate(estimates_to_draw):
        trials = groups.get(_group_key(estimate["group"]))
        if trials is None or trials.empty:
            continue
        color = colors(i % 10)
        empirical = grok_probability_by_size(trials, size_col)
        xs = empirical[size_col].to_numpy(dtype=float)
        counts = empirical["n"].to_numpy(dtype=float)
        inferred, unconfirmed = _flagged_by_size(trials, size_col, empirical[size_col])
        sizes = 20 + 100 * counts / counts.max()
        cf = float(estimate.get("critical_fraction", math.nan))
        label = _group_label(estimate["group"])
        if math.isfinite(cf):
            size = estimate.get("critical_size")
            label += (
                f": critical fraction {cf:.3f}"
                if fraction_axis or size is None or not math.isfinite(size)
                else f": critical size {size:g}"
            )
        # measured points filled; a point whose every run was inferred (dominated: never trained,
        # counted as not grokked by the monotone rule) hollow
        faces = [(1, 1, 1, 1) if k == c else color for k, c in zip(inferred, counts, strict=True)]
        ax.scatter(
            xs,
            empirical["p_grok"],
            s=sizes,
            facecolors=faces,
            edgecolors=color,
            linewidth=1.2,
            alpha=0.85,
            zorder=3,
            label=label,
        )
        any_inferred |= bool(inferred.sum())
        for x_i, p_i, n_i, k_i in zip(xs, empirical["p_grok"], counts, inferred, strict=True):
            text = f"{int(n_i)}" + (f" ({int(k_i)} inf.)" if 0 < k_i < n_i else "")
            ax.annotate(text, (x_i, p_i), xytext=(0, 7 if p_i < 0.9 else -11), textcoords="offset points",
                        ha="center", fontsize=6.5, color="0.25")  # fmt: skip
        if unconfirmed.sum():  # where P would be had the unconfirmed runs grokked
            flagged = unconfirmed > 0
            ax.scatter(xs[flagged], (empirical["p_grok"] + unconfirmed / counts)[flagged], marker="x", s=40,
                       color=color, linewidth=1.5, zorder=4)  # fmt: skip
            any_unconfirmed = True

        x = trials[size_col].to_numpy(dtype=float)
        y = trials["grokked"].to_numpy(dtype=float)
        identifiable = 0 < y.sum() < y.size and x.min() < x.max()
        if identifiable:
            grid = np.linspace(x.min(), x.max(), 200)
            a, b = fit_logistic(x, y)
            ax.plot(grid, 1 / (1 + np.exp(-(a + b * grid))), color=color, lw=2, zorder=2)
            drawn_fit = True
            if n_bootstrap > 0:
                band = bootstrap_logistic(x, y, n_bootstrap, seed).curves(grid)
                low, high = np.percentile(band, [2.5, 97.5], axis=0)
                ax.fill_between(grid, low, high, color=color, alpha=0.18, lw=0, zorder=1)

        # critical point and CI (estimates hold fractions; convert on a size axis)
        scale = 1.0
        if not fraction_axis:
            totals = pd.to_numeric(trials.get("n_total", pd.Series(dtype=float)), errors="coerce")
            scale = float(totals.median()) if totals.notna().any() else math.nan
        lo_ci = float(estimate.get("ci_low", math.nan)) * scale
        hi_ci = float(estimate.get("ci_high", math.nan)) * scale
        if math.isfinite(cf * scale):
            ax.axvline(cf * scale, color=color, ls="--", lw=1.5, zorder=2)
            drawn_critical = True
        if math.isfinite(lo_ci) and math.isfinite(hi_ci):
            ax.axvspan(lo_ci, hi_ci, color=color, alpha=0.08, lw=0, zorder=0)

        steps = empirical["mean_grokking_step"]
        if steps.notna().any():
            ax_steps.plot(xs, steps, color=color, ls=":", marker="s", ms=4, alpha=0.9)
            drawn_steps = True
            peak = int(steps.idxmax())  # first maximum, as in critical_data_size
            ax_steps.plot(
                xs[peak],
                steps.iloc[peak],
                marker="*",
                ms=13,
                color=color,
                markeredgecolor="k",
                linestyle="none",
            )

    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(_size_label(size_col))
    ax.set_ylabel("P(grok within budget)  (numbers: runs per point)")
    ax_steps.set_ylabel("mean steps to grok (grokked runs)")
    if not drawn_steps:
        ax_steps.set_yticks([])
        ax_steps.set_ylabel("")
    ax.set_title(f"P(grok within {_budget_text(estimates)}) vs {_size_label(size_col)}")
    ax.grid(alpha=0.3)
    # the legend names what is drawn, nothing else
    handles = ax.get_legend_handles_labels()[0]
    inferred_text = "inferred: dominated, not trained (hollow; 'inf.' in the count)"
    unconfirmed_text = "if the runs above threshold at the budget (patience not reached) grokked"
    for drawn, style, text in (
        (any_inferred, {"ls": "none", "marker": "o", "mfc": "w", "mec": "k"}, inferred_text),
        (any_unconfirmed, {"ls": "none", "marker": "x", "color": "k"}, unconfirmed_text),
        (drawn_fit, {"color": "k", "lw": 2}, "logistic fit (band: 95% bootstrap)"),
        (drawn_critical, {"color": "k", "ls": "--"}, "critical size (shade: 95% CI)"),
        (drawn_steps, {"color": "k", "ls": ":", "marker": "s", "ms": 4}, "mean steps to grok (right axis)"),
        (drawn_steps, {"ls": "none", "marker": "*", "ms": 11, "color": "w", "mec": "k"},
         "its peak: the critical regime (right axis)"),
    ):  # fmt: skip
        if drawn:
            handles.append(Line2D([], [], label=text, **style))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.13, 1.0), fontsize=7, frameon=False)
    return fig


def plot_grok_probability(
    table: pd.DataFrame,
    estimates: list[dict],
    path: str | Path,
    *,
    size_col: str | None = None,
    n_bins: int = 3,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Path:
    """``grok_probability_figure`` saved as a PNG at ``path``."""
    figure = grok_probability_figure(
        table, estimates, size_col=size_col, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed
    )
    return _save(figure, path)


def plot_critical_by_budget(rows: list[dict], path: str | Path, *, size_col: str = "train_fraction") -> Path:
    """The critical size against the step budget (``grokray.analysis.critical.critical_by_budget``):
    one line per group with its 95 % interval as a band; budgets where nothing (everything)
    grokked have no crossing and are left out."""
    fig = Figure(figsize=(6.4, 4.2), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    groups: dict[tuple[tuple[str, Any], ...], list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row["group"]), []).append(row)
    cmap = colormaps["viridis"]
    for i, (key, members) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        members = sorted(members, key=lambda r: r["budget"])
        x = np.array([r["budget"] for r in members], dtype=float)
        y = np.array([r["critical_fraction"] for r in members], dtype=float)
        low = np.array([r["ci_low"] for r in members], dtype=float)
        high = np.array([r["ci_high"] for r in members], dtype=float)
        color = cmap(i / max(1, len(groups) - 1)) if len(groups) > 1 else "tab:blue"
        ok = np.isfinite(y)
        ax.fill_between(x[ok], low[ok], high[ok], color=color, alpha=0.2, linewidth=0)
        ax.plot(x[ok], y[ok], "o-", color=color, label=_group_label(dict(key)), markersize=4)
    ax.set_xlabel("step budget b (a run counts as grokked if it grokked within b steps)")
    ax.set_ylabel(f"critical {_size_label('train_fraction')} (P(grok within b) = ½)")
    if size_col != "train_fraction":
        ax.set_ylabel("critical training fraction (P(grok within b) = ½)")
    ax.set_title("Critical data size at every budget (from the same runs)")
    ax.grid(alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=7, frameon=False)
    return _save(fig, path)


def plot_phase_boundary(
    table: pd.DataFrame,
    estimates: list[dict],
    path: str | Path,
    *,
    size_col: str,
    dim: str,
) -> Path:
    """A phase boundary: the critical size (with its 95 % interval as a band) against a second
    searched name ``dim``, over the runs (grokked ●, not ○) the boundary search placed."""
    fig = Figure(figsize=(6.4, 4.6), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    done = table[table["grokked"].notna()]
    values = pd.to_numeric(done[dim], errors="coerce")
    numeric = bool(values.notna().all())
    xs = values if numeric else done[dim].astype(str)
    sizes = pd.to_numeric(done[size_col], errors="coerce")
    grokked = done["grokked"].astype(bool).to_numpy()
    # a run the monotone rule stopped before it trained (below sizes where every seed failed)
    trained = pd.to_numeric(done.get("steps_run", pd.Series(1, index=done.index)), errors="coerce")
    skipped = (trained.fillna(1) <= 0).to_numpy() & ~grokked
    ax.scatter(
        xs[grokked], sizes[grokked], s=18, color="tab:green", label="grokked within the budget", zorder=3
    )
    failed = ~grokked & ~skipped
    ax.scatter(xs[failed], sizes[failed], s=18, facecolors="none", edgecolors="tab:red",
               label="not grokked", zorder=3)  # fmt: skip
    if skipped.any():
        ax.scatter(xs[skipped], sizes[skipped], s=10, marker="x", color="0.6", zorder=2,
                   label="not trained (below sizes that failed)")  # fmt: skip
    rows = [e for e in estimates if dim in e["group"]]
    rows.sort(key=lambda e: float(e["group"][dim]) if numeric else str(e["group"][dim]))
    gx = [float(e["group"][dim]) if numeric else str(e["group"][dim]) for e in rows]
    scale = 1.0
    if size_col == "train_size" and "n_total" in table:
        scale = float(pd.to_numeric(table["n_total"], errors="coerce").median())
    crit = np.array([e["critical_fraction"] for e in rows], dtype=float) * scale
    low = np.array([e["ci_low"] for e in rows], dtype=float) * scale
    high = np.array([e["ci_high"] for e in rows], dtype=float) * scale
    ok = np.isfinite(crit)
    ax.fill_between(np.array(gx, dtype=object)[ok] if not numeric else np.array(gx)[ok], low[ok], high[ok],
                    color="tab:blue", alpha=0.2, linewidth=0, label="95 % interval")  # fmt: skip
    ax.plot(np.array(gx)[ok], crit[ok], "s-", color="tab:blue", label="critical size (P(grok) = ½)")
    if numeric and values.min() > 0 and values.max() / values.min() >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(dim)
    ax.set_ylabel(_size_label(size_col))
    ax.set_title("Phase boundary: where grokking within the budget begins")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="best")
    return _save(fig, path)
