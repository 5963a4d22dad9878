"""The headline figures a study names in ``Study(plots=[Plot(...)])``, drawn from its trial table.

Same conventions as ``plots.py``: matplotlib's object-oriented API, Agg, no pyplot state.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from grokray.analysis.plots import _save

# Doshi et al.'s and Liu et al.'s phases, in a fixed order with fixed colours across figures.
PHASE_COLORS = {
    "coexistence": "#1b9e77",
    "partial_inversion": "#66a61e",
    "full_inversion": "#e6ab02",
    "memorization": "#d95f02",
    "forgetting": "#7570b3",
    "confusion": "#999999",
    "comprehension": "#1f78b4",
    "grokking": "#33a02c",
}


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    if name in table:
        return table[name]
    if "*" in name:  # a product of columns, e.g. ``lr*reg_strength`` (Notsawo et al.'s lr·β)
        factors = [pd.to_numeric(_column(table, part.strip()), errors="coerce") for part in name.split("*")]
        product = factors[0]
        for factor in factors[1:]:
            product = product * factor
        return product.rename(name)
    if f"final_{name}" in table:
        return table[f"final_{name}"]
    raise KeyError(f"{name!r} is not a column of the trial table")


def plot_trials(table: pd.DataFrame, plot: Any, path: str | Path) -> Path:
    """``y`` vs ``x``: per value of ``color`` the mean over seeds (line) and every run (dots)."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    data = pd.DataFrame(
        {"x": _column(table, plot.x), "y": pd.to_numeric(_column(table, plot.y), errors="coerce")}
    )
    data["c"] = _column(table, plot.color).astype(str) if plot.color else "all"
    colors = colormaps["tab10"]
    for i, (label, group) in enumerate(data.groupby("c", sort=True)):
        color = colors(i % 10)
        ax.scatter(group["x"], group["y"], s=14, alpha=0.45, color=color)
        mean = group.groupby("x")["y"].mean().dropna()
        ax.plot(mean.index, mean.values, "-o", ms=4, lw=1.6, color=color, label=f"{plot.color}={label}")
    missing = int(data["y"].isna().sum())
    drawn = data.dropna(subset=["y"])  # a log axis needs positive data to place its ticks
    if plot.logx and (pd.to_numeric(drawn["x"], errors="coerce") > 0).any():
        ax.set_xscale("log")
    if plot.logy and (drawn["y"] > 0).any():
        ax.set_yscale("log")
    if plot.logx and plot.logy and plot.y == "grokking_delay":
        _annotate_slopes(ax, table.assign(_color=data["c"]), plot.x)
    ax.set_xlabel(plot.x)
    ax.set_ylabel(plot.y)
    title = plot.title or f"{plot.y} vs {plot.x}"
    if missing:
        title += f" ({missing} runs without a value: not grokked within budget)"
    ax.set_title(title, fontsize=10)
    if plot.color:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _annotate_slopes(ax: Any, table: pd.DataFrame, x: str) -> None:
    """The fitted slope of log(delay) on log(x) per colour, with its 95 % CI, in the corner."""
    from grokray.analysis.slope import delay_slope

    table = table.assign(_x=_column(table, x))
    lines = []
    for f in delay_slope(table, group_col="_color", x_cols=("_x",)):
        if not math.isfinite(f["slope"]):  # too few delays to fit
            continue
        interval = f" [{f['ci_low']:.2f}, {f['ci_high']:.2f}]" if math.isfinite(f["ci_low"]) else ""
        censored = f", {f['n_censored']} censored" if f["n_censored"] else ""
        lines.append(f"{f['group']}: slope {f['slope']:.2f}{interval} (n={f['n_used']}{censored})")
    if lines:
        ax.text(
            0.02,
            0.02,
            "\n".join(lines),
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )


def _majority(values: pd.Series) -> str:
    counts = values.dropna().astype(str).value_counts()
    return str(counts.index[0]) if len(counts) else ""


def plot_phase(table: pd.DataFrame, plot: Any, path: str | Path) -> Path:
    """A phase diagram: cells over ``x`` × ``y``, coloured by the majority phase of their runs."""
    facets: Sequence[Any] = sorted(_column(table, plot.facet).unique()) if plot.facet else [None]
    fig = Figure(figsize=(4.2 * len(facets) + 1.8, 4.2))
    seen: set[str] = set()
    for i, facet in enumerate(facets):
        ax = fig.add_subplot(1, len(facets), i + 1)
        part = table if facet is None else table[_column(table, plot.facet) == facet]
        xs = sorted(_column(part, plot.x).unique())
        ys = sorted(_column(part, plot.y).unique())
        cells = part.groupby([_column(part, plot.x), _column(part, plot.y)])[plot.value].agg(_majority)
        for (x, y), phase in cells.items():
            seen.add(phase)
            ax.add_patch(_cell(xs.index(x), ys.index(y), PHASE_COLORS.get(phase, "#ffffff")))
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, float) else str(v) for v in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [f"{v:g}" if isinstance(v, float) else str(v) for v in ys])
        ax.set_xlabel(plot.x)
        ax.set_ylabel(plot.y)
        if facet is not None:
            ax.set_title(f"{plot.facet}={facet}", fontsize=10)
    handles = [Patch(color=PHASE_COLORS.get(p, "#ffffff"), label=p) for p in PHASE_COLORS if p in seen]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.suptitle(plot.title or f"{plot.value} over {plot.x} × {plot.y}", fontsize=11)
    fig.subplots_adjust(right=1 - 1.6 / (4.2 * len(facets) + 1.8))
    return _save(fig, path)


def _cell(x: int, y: int, color: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1.0, 1.0, facecolor=color, edgecolor="white")


def plot_curves(curves: pd.DataFrame, table: pd.DataFrame, plot: Any, path: str | Path) -> Path:
    """The curve ``y`` against step, one line per run, coloured by its config value ``color``."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    if plot.y not in curves:
        ax.text(0.5, 0.5, f"no run logged {plot.y!r}", ha="center", va="center", transform=ax.transAxes)
        return _save(fig, path)
    by_run = dict(zip(table["trial_id"], _column(table, plot.color), strict=True)) if plot.color else {}
    values = [v for v in by_run.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    numeric = len(values) == len(by_run) and len(set(values)) > 1
    if numeric:
        positive = min(values) > 0 and max(values) / min(values) > 20
        norm = LogNorm(min(values), max(values)) if positive else Normalize(min(values), max(values))
        cmap = colormaps["viridis"]
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=plot.color)
    labels = sorted({str(v) for v in by_run.values()})
    for run, frame in curves.groupby("trial_id", sort=True):
        frame = frame.dropna(subset=[plot.y]).sort_values("step")
        value = by_run.get(run)
        if numeric:
            color = cmap(norm(value))
        elif plot.color:
            color = colormaps["tab10"](labels.index(str(value)) % 10)
        else:
            color = "C0"
        ax.plot(frame["step"], frame[plot.y], lw=1.1, alpha=0.8, color=color)
    if plot.color and not numeric:
        handles = [
            Patch(color=colormaps["tab10"](i % 10), label=f"{plot.color}={v}") for i, v in enumerate(labels)
        ]
        ax.legend(handles=handles, fontsize=8)
    if plot.logx:
        ax.set_xscale("symlog")
    if plot.logy and (pd.to_numeric(curves[plot.y], errors="coerce") > 0).any():
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(plot.y)
    ax.set_title(plot.title or f"{plot.y} vs step", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def study_plots(
    plots: Sequence[Any], table: pd.DataFrame, curves: pd.DataFrame | None, out_dir: str | Path
) -> list[Path]:
    """Draw every ``Plot`` of a study into ``out_dir``; return the PNG paths."""
    paths = []
    for plot in plots:
        path = Path(out_dir) / plot.file_name()
        try:
            if plot.kind == "trials":
                paths.append(plot_trials(table, plot, path))
            elif plot.kind == "phase":
                paths.append(plot_phase(table, plot, path))
            elif plot.kind == "curves":
                paths.append(plot_curves(curves if curves is not None else pd.DataFrame(), table, plot, path))
        except Exception as err:  # a figure must never cost the study its results
            print(f"grokray: plot {plot.file_name()} skipped: {type(err).__name__}: {err}", file=sys.stderr)
    return paths


__all__ = ["PHASE_COLORS", "plot_curves", "plot_phase", "plot_trials", "study_plots"]
