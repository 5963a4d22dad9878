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
from matplotlib.colors import Normalize
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
    "plot_grok_probability",
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


def validation_curves_figure(
    curves: pd.DataFrame, table: pd.DataFrame, size_col: str | None = None
) -> Figure:
    """Validation (solid) and train (faint dashed) accuracy vs step, one line per trial.

    Lines are coloured by the trial's training-set size ``size_col`` (default: ``size_column``
    of ``table``; viridis, with a colorbar); trials missing from ``table`` are drawn grey.
    Linear step axis (steps start at 0).
    """
    size_col = size_col or size_column(table)
    sizes: dict[Hashable, float] = {}
    if {"trial_id", size_col} <= set(table.columns):
        known = table.dropna(subset=[size_col]).drop_duplicates("trial_id")
        sizes = dict(zip(known["trial_id"], known[size_col].astype(float), strict=True))
    values = list(sizes.values())
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low == high:
        pad = 0.05 if size_col == "train_fraction" else max(1.0, 0.05 * abs(low))
        low, high = low - pad, high + pad
    norm = Normalize(vmin=low, vmax=high)
    cmap = colormaps["viridis"]

    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    has_train = "train_acc" in curves.columns
    for trial_id, trial in curves.groupby("trial_id", sort=True):
        trial = trial.sort_values("step")
        size = sizes.get(trial_id)
        color = cmap(norm(size)) if size is not None else (0.5, 0.5, 0.5, 1.0)
        if has_train:
            ax.plot(
                trial["step"],
                trial["train_acc"],
                ls="--",
                lw=0.8,
                alpha=0.3,
                color=color,
            )
        ax.plot(trial["step"], trial["val_acc"], ls="-", lw=1.3, alpha=0.9, color=color)

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=_size_label(size_col))
    handles = [Line2D([], [], color="k", ls="-", label="validation")]
    if has_train:
        handles.append(Line2D([], [], color="k", ls="--", alpha=0.4, label="train"))
    ax.legend(handles=handles, loc="lower right")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Validation accuracy vs step")
    ax.grid(alpha=0.3)
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
    curves: pd.DataFrame, table: pd.DataFrame, path: str | Path, size_col: str | None = None
) -> Path:
    """``validation_curves_figure`` saved as a PNG at ``path``."""
    return _save(validation_curves_figure(curves, table, size_col), path)


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
    per size (marker area ∝ number of trials), the fitted logistic curve, its bootstrap
    95 % band, a dashed vertical line at the critical size with its CI shaded; on a second
    y-axis the mean steps-to-grok per size, whose peak marks the critical regime.

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

    for i, estimate in enumerate(estimates_to_draw):
        trials = groups.get(_group_key(estimate["group"]))
        if trials is None or trials.empty:
            continue
        color = colors(i % 10)
        empirical = grok_probability_by_size(trials, size_col)
        xs = empirical[size_col].to_numpy(dtype=float)
        counts = empirical["n"].to_numpy(dtype=float)
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
        ax.scatter(
            xs,
            empirical["p_grok"],
            s=sizes,
            color=color,
            alpha=0.75,
            edgecolor="k",
            linewidth=0.5,
            zorder=3,
            label=label,
        )

        x = trials[size_col].to_numpy(dtype=float)
        y = trials["grokked"].to_numpy(dtype=float)
        identifiable = 0 < y.sum() < y.size and x.min() < x.max()
        if identifiable:
            grid = np.linspace(x.min(), x.max(), 200)
            a, b = fit_logistic(x, y)
            ax.plot(grid, 1 / (1 + np.exp(-(a + b * grid))), color=color, lw=2, zorder=2)
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
        if math.isfinite(lo_ci) and math.isfinite(hi_ci):
            ax.axvspan(lo_ci, hi_ci, color=color, alpha=0.08, lw=0, zorder=0)

        steps = empirical["mean_grokking_step"]
        if steps.notna().any():
            ax_steps.plot(xs, steps, color=color, ls=":", marker="s", ms=4, alpha=0.9)
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
    ax.set_ylabel("P(grok within budget)")
    ax_steps.set_ylabel("mean steps to grok (grokked trials, ■; ★ = peak)")
    ax.set_title(f"P(grok within {_budget_text(estimates)}) vs {_size_label(size_col)}")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    handles += [
        Line2D([], [], color="k", lw=2, label="logistic fit (band: 95% bootstrap)"),
        Line2D([], [], color="k", ls="--", label="critical size (shade: 95% CI)"),
    ]
    ax.legend(handles=handles, loc="center right", fontsize=8)
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
