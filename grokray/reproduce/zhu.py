"""Rows of Zhu et al. 2024, "Critical data size of language models from a grokking perspective".

zhu-peak sweeps the training fraction of modular addition (``studies/critical_size.py``);
zhu-width sweeps the training size, in examples, of the shipped review sample at several hidden
sizes of the paper's 1-layer encoder (``studies/critical_size_width.py``). Both read the answer
the way a study does: a trial table (one row per seed and size) handed to
``grokray.analysis.critical_data_size``, which fits P(grok within the budget) against the size
and reports the crossing, its bootstrap CI and the size where the mean steps-to-grok peaks.

A sweep trains one fraction at a time (its seeds as one batch), from the largest fraction down, as
the study's ``LargestFirstGridSampler`` visits the grid, and skips the fractions the study's
early stopping (``monotone_stop = 2``, ``GrokStopper``) would stop: those below two larger
fractions where every seed spent its whole budget without grokking (all of them below the
smallest fraction that grokked). They enter the table as not grokked with ``stop_reason``
``dominated``, as in a study's trial table. One fraction per batch also keeps the batch from
padding every replica to the largest training set.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from grokray.reproduce.core import Context, Row, figure, row, run_configs, save, spread, study_configs

PAPER = "Zhu et al. 2024"
MONOTONE_STOP = 2  # the shipped studies' Study.monotone_stop
PEAK_STUDY = "critical_size.py"
WIDTH_STUDY = "critical_size_width.py"
SEEDS = 3
SEEDS_WIDTH = 2  # the width study's own seeds
WIDTHS = (16, 32, 64)  # three of critical_size_width.py's hidden sizes (16 … 128)
SIZE = "train_size"  # the width study sweeps training examples of the text sample
BOOTSTRAP = 1000
REPORTED = ("group", "critical_fraction", "ci_low", "ci_high", "peak_fraction", "n_grokked", "n_trials",
            "note")  # fmt: skip
REPORTED_WIDTH = (*REPORTED[:-1], "critical_size", "peak_size", "note")
WIDTH_WHY = (
    "Why the comparison survives the scaling: every hidden size sees the same examples, budget, "
    "threshold and decay time, so only the model differs; the budget is set (lr·wd·steps) so that "
    "every size that generalizes does so within it, and the sample is small enough that the "
    "smallest sizes only memorize. What it cannot carry: IMDB's vocabulary (30,522 BERT tokens, so "
    "the paper's embedding grows with hidden size by 30,522 rows a unit) against the sample's ~120 "
    "words of templated reviews, where every hidden size can memorize and the separating words are "
    "few; and 2 seeds a size resolve differences of a few examples only."
)


def sweep_fractions(
    configs: Sequence[Mapping[str, Any]],
    progress: Callable[[str], None] | None = None,
    label: str = "",
    monotone: int = MONOTONE_STOP,
    size_key: str = "train_fraction",
) -> pd.DataFrame:
    """Train ``configs`` (one shape, several sizes × seeds) a size at a time, largest first,
    skipping dominated sizes; one trial-table row per config. ``size_key`` is the swept size:
    ``train_fraction`` (modular addition) or ``train_size`` (text, in examples)."""
    by_fraction: dict[float, list[Mapping[str, Any]]] = {}
    for config in configs:
        by_fraction.setdefault(float(config[size_key]), []).append(config)
    failed: list[float] = []
    smallest_grokked = math.inf
    rows = []
    for fraction in sorted(by_fraction, reverse=True):
        members = by_fraction[fraction]
        below_failures = [f for f in failed if fraction < f < smallest_grokked]
        if monotone and len(below_failures) >= monotone:
            for config in members:
                rows.append(_table_row(config, None, size_key))
            continue
        outcomes = run_configs(members, stop_on_grok=True)
        if any(o["grokked"] for o in outcomes):
            smallest_grokked = min(smallest_grokked, fraction)
        elif all(o.get("stop_reason") == "budget" for o in outcomes):
            failed.append(fraction)
        if progress is not None:
            steps = [o["grokking_step"] for o in outcomes if o["grokked"]]
            size = f"fraction {fraction:.2f}" if size_key == "train_fraction" else f"{size_key} {fraction:g}"
            progress(
                f"  {label} {size}: {len(steps)}/{len(outcomes)} grokked"
                + (f", steps {spread(steps, '{:.0f}')}" if steps else "")
            )
        rows.extend(_table_row(c, o, size_key) for c, o in zip(members, outcomes, strict=True))
    return pd.DataFrame(rows)


def _table_row(
    config: Mapping[str, Any], outcome: Mapping[str, Any] | None, size_key: str = "train_fraction"
) -> dict[str, Any]:
    """A trial-table row; ``outcome`` None = not trained (dominated)."""
    base = {
        size_key: float(config[size_key]),
        "seed": int(config["seed"]),
        "width": int(config["width"]),
        "steps": int(config["steps"]),
    }
    if outcome is None:
        return {**base, "grokked": False, "grokking_step": math.nan, "n_total": math.nan,
                "stop_reason": "dominated"}  # fmt: skip
    step = outcome["grokking_step"]
    return {
        **base,
        "grokked": bool(outcome["grokked"]),
        "grokking_step": float(step) if step is not None else math.nan,
        "n_total": int(outcome["n_total"]),
        "stop_reason": outcome.get("stop_reason"),
    }


def estimate(table: pd.DataFrame, size_col: str = "train_fraction") -> dict[str, Any]:
    """The critical-size estimate of one group of trials (all rows of ``table``); its ``ci_low``
    and ``ci_high`` are fractions of ``n_total`` whatever ``size_col`` is."""
    from grokray.analysis import critical_data_size

    [result] = critical_data_size(table, size_col=size_col, group_cols=(), n_bootstrap=BOOTSTRAP)
    return result


def grid_step(fractions: Sequence[float]) -> float:
    """The spacing of a fraction grid (its smallest gap)."""
    values = sorted(set(float(f) for f in fractions))
    return min(b - a for a, b in itertools.pairwise(values)) if len(values) > 1 else math.nan


def mean_steps(table: pd.DataFrame) -> dict[float, float]:
    """Mean steps-to-grok per fraction, over the seeds that grokked (NaN where none did)."""
    grokked = table[table["grokked"]]
    means = grokked.groupby("train_fraction")["grokking_step"].mean()
    return {float(f): float(means.get(f, math.nan)) for f in sorted(table["train_fraction"].unique())}


def peak_at_critical(result: Mapping[str, Any], step: float) -> bool:
    """The steps-to-grok peak within one grid step of the critical fraction, or inside its CI."""
    peak, critical = result["peak_fraction"], result["critical_fraction"]
    low, high = result["ci_low"], result["ci_high"]
    if not (math.isfinite(peak) and math.isfinite(critical)):
        return False
    inside = math.isfinite(low) and math.isfinite(high) and low - 1e-9 <= peak <= high + 1e-9
    return abs(peak - critical) <= step + 1e-9 or inside


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


@row("zhu-peak")
def zhu_peak(ctx: Context) -> Row:
    overrides = ("steps=400",) if ctx.quick else (f"seeds={SEEDS}",)
    configs = study_configs(PEAK_STUDY, overrides, quick=ctx.quick)
    table = sweep_fractions(configs, ctx.progress, "zhu-peak")
    result = estimate(table)
    critical, low, high = result["critical_fraction"], result["ci_low"], result["ci_high"]
    peak = result["peak_fraction"]
    step = grid_step(table["train_fraction"])
    steps = mean_steps(table)
    tolerance_ok = peak_at_critical(result, step)

    from grokray.analysis.plots import grok_probability_figure

    _, path = figure(ctx, "zhu-peak.png")
    fig = grok_probability_figure(table, [result], size_col="train_fraction", n_bootstrap=BOOTSTRAP)
    fig.axes[0].set_title(
        f"zhu-peak: modular addition p={configs[0]['p']}, MLP width {configs[0]['width']}, "
        f"{configs[0]['steps']} steps, {table['seed'].nunique()} seeds"
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")

    above = [steps[f] for f in sorted(steps) if math.isfinite(peak) and f > peak]
    peak_steps = steps.get(peak, math.nan) if math.isfinite(peak) else math.nan
    seeds = table["seed"].nunique()
    return Row(
        key="zhu-peak",
        paper=PAPER,
        figure="Fig. 1B (steps to generalize vs training size, modular addition)",
        claim="the steps-to-generalize peak sits at the critical data size; below it no "
        "generalization, above it faster generalization",
        reference="peak of steps-to-generalize at the critical data size (Fig. 1B: 1-layer "
        "transformer, modular addition; no test-accuracy rise below it)",
        measured=f"critical fraction {_fmt(critical)} [95% CI {_fmt(low)}, {_fmt(high)}]; "
        f"steps-to-grok peak at {_fmt(peak, 2)} ({_fmt(peak_steps, 0)} steps, mean of the grokked "
        f"seeds), falling to {_fmt(above[-1], 0) if above else 'n/a'} at "
        f"{_fmt(max(steps), 2)}; {result['n_grokked']}/{result['n_trials']} runs grokked",
        tolerance=f"|peak − critical| ≤ one grid step ({_fmt(step, 2)}), or the peak inside the "
        "critical fraction's 95% CI",
        passed=bool(tolerance_ok),
        scaled=f"grokray's one-hidden-layer MLP on x+y mod {configs[0]['p']} (the paper's Fig. 1: a "
        "1-layer transformer on p=113 as text) at the study's 5,000-step budget; "
        f"{seeds} seeds a fraction (the study: 2); fractions below two larger fractions where no "
        "seed grokked are not trained and count as not grokked (the study's monotone_stop=2). "
        "Within a fixed budget the slowest grokkers sit where P(grok) falls, the paper's "
        "'no generalization below the critical size' read within the budget.",
        command=f"grokray trial studies/{PEAK_STUDY} --set train_fraction={_fmt(peak, 2)} --set seed=0",
        values={
            "critical_fraction": critical,
            "ci_low": low,
            "ci_high": high,
            "peak_fraction": peak,
            "grid_step": step,
            "mean_grokking_step": steps,
            "p_grok": table.groupby("train_fraction")["grokked"].mean().to_dict(),
            "seeds": seeds,
            "budget": int(configs[0]["steps"]),
            "note": result["note"],
        },
        plot=path.name,
    )


def monotone_within_ci(estimates: Sequence[Mapping[str, Any]]) -> bool:
    """Each wider network's CI reaches up to the narrower one's: ``ci_high[i+1] ≥ ci_low[i]``
    (the critical fraction does not fall with width beyond the uncertainty), for widths in
    increasing order; every estimate must have a finite CI."""
    for narrow, wide in itertools.pairwise(estimates):
        if not (math.isfinite(narrow["ci_low"]) and math.isfinite(wide["ci_high"])):
            return False
        if wide["ci_high"] < narrow["ci_low"] - 1e-9:
            return False
    return all(math.isfinite(e["ci_low"]) and math.isfinite(e["ci_high"]) for e in estimates)


def direction(estimates: Sequence[Mapping[str, Any]]) -> str:
    """How the critical fraction moves from the narrowest to the widest width, judged by the CIs:
    rises / falls when the end points' CIs do not overlap, else flat within the CIs."""
    first, last = estimates[0], estimates[-1]
    if last["ci_low"] > first["ci_high"]:
        return "rises with width beyond the CIs"
    if last["ci_high"] < first["ci_low"]:
        return "falls with width beyond the CIs"
    return "flat within the CIs"


def _examples(table: pd.DataFrame) -> float:
    """The pool size that the estimate's fractions are fractions of (``n_total``, the trained rows')."""
    totals = pd.to_numeric(table["n_total"], errors="coerce").dropna()
    return float(totals.median()) if len(totals) else math.nan


def grows_beyond_ci(estimates: Sequence[Mapping[str, Any]]) -> bool:
    """The width row's pass rule: no fall beyond the CIs between consecutive widths
    (``monotone_within_ci``), point estimates that never fall, and the widest width's CI above the
    narrowest's (``direction`` says "rises"): a rise that the seeds' scatter cannot explain."""
    critical = [e["critical_fraction"] for e in estimates]
    if not all(math.isfinite(c) for c in critical):
        return False
    never_falls = all(b >= a - 1e-9 for a, b in itertools.pairwise(critical))
    return monotone_within_ci(estimates) and never_falls and direction(estimates).startswith("rises")


@row("zhu-width")
def zhu_width(ctx: Context) -> Row:
    widths = WIDTHS[:2] if ctx.quick else WIDTHS
    overrides = [f"width={','.join(str(w) for w in widths)}"]
    if not ctx.quick:
        overrides.append(f"seeds={SEEDS_WIDTH}")
    configs = study_configs(WIDTH_STUDY, overrides, quick=ctx.quick)
    first = configs[0]
    tables, estimates = {}, []
    for width in widths:
        members = [c for c in configs if int(c["width"]) == width]
        tables[width] = sweep_fractions(members, ctx.progress, f"zhu-width {width}", size_key=SIZE)
        estimates.append({**estimate(tables[width], size_col=SIZE), "group": {"width": width}})
    n_total = _examples(pd.concat(tables.values()))
    critical = [e["critical_fraction"] for e in estimates]
    passed = grows_beyond_ci(estimates)

    def examples(fraction: float) -> str:
        return _fmt(fraction * n_total, 1)

    plt, path = figure(ctx, "zhu-width.png")
    fig, (ax_p, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (width, e) in enumerate(zip(widths, estimates, strict=True)):
        color = plt.cm.viridis(i / max(1, len(widths) - 1))
        p_grok = tables[width].groupby(SIZE)["grokked"].mean()
        ax_p.plot(p_grok.index, p_grok.values, "o-", color=color, label=f"width {width}")
        if math.isfinite(e["critical_fraction"]):
            ax_p.axvline(e["critical_fraction"] * n_total, color=color, ls="--", lw=1)
    ax_p.set_xlabel("training examples")
    ax_p.set_ylabel("P(val acc ≥ threshold within budget)")
    ax_p.legend(fontsize=8)
    ax_p.grid(alpha=0.3)
    x = np.arange(len(widths))
    y = np.array(critical, dtype=float) * n_total
    err = np.array(
        [[c - e["ci_low"] * n_total for c, e in zip(y, estimates, strict=True)],
         [e["ci_high"] * n_total - c for c, e in zip(y, estimates, strict=True)]]
    )  # fmt: skip
    ax_c.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o-", capsize=4, color="k")
    ax_c.set_xticks(x, [str(w) for w in widths])
    ax_c.set_xlabel("encoder hidden size")
    ax_c.set_ylabel("critical size, examples (95% CI)")
    ax_c.grid(alpha=0.3)
    fig.suptitle(f"zhu-width: critical data size vs hidden size (1-layer encoder, {first['data_path']}, "
                 f"{first['steps']} steps)")  # fmt: skip
    save(fig, path)

    seeds = tables[widths[0]]["seed"].nunique()
    sizes = sorted({int(c[SIZE]) for c in configs})
    return Row(
        key="zhu-width",
        paper=PAPER,
        figure="abstract and model-wise grokking (IMDB, 1-layer encoder, hidden size 16–256)",
        claim="the critical data size grows with model size (larger models need more data)",
        reference="'As the model size increases, this critical point also becomes larger' "
        "(hidden 16–256 in steps of 16, IMDB fractions 0.1–1.0)",
        measured="; ".join(
            f"hidden {w}: {examples(e['critical_fraction'])} examples "
            f"[{examples(e['ci_low'])}, {examples(e['ci_high'])}] ({e['n_grokked']}/{e['n_trials']} grokked)"
            for w, e in zip(widths, estimates, strict=True)
        )
        + f" ({direction(estimates).replace('width', 'hidden size')})",
        tolerance="a rise beyond the seeds' scatter: the critical size never falls from one hidden size "
        "to the next (point estimates), no fall beyond the CIs (CI_high(h') ≥ CI_low(h) for h < h'), "
        "and the largest hidden size's 95% CI above the smallest's",
        passed=bool(passed),
        scaled=f"the paper's architecture and recipe (1-layer post-LN BERT-style encoder, 4 heads, "
        f"every parameter ×{first['init_scale']:g} after init, AdamW lr {first['lr']:g}, batch "
        f"{first['batch_size']}) on grokray's shipped sample ({first['data_path']}: made-up reviews, "
        f"{int(n_total) if math.isfinite(n_total) else 'n/a'} rows, "
        f"{first['max_len']} tokens fit every one) for IMDB; hidden {', '.join(map(str, widths))} "
        f"of the paper's 16–256 (FFN 4·hidden, theirs 512 at every size); training sizes "
        f"{', '.join(map(str, sizes))} examples; {seeds} seeds a size; {first['steps']} steps at "
        f"weight decay {first['weight_decay']:g} for their 700k at 1e-2 (lr·wd·steps "
        f"{first['lr'] * first['weight_decay'] * first['steps']:g}, theirs 7); grokked = val "
        f"accuracy ≥ {first['grok_threshold']:g} within the budget; sizes below two larger "
        "all-failed sizes count as not grokked (monotone_stop=2). " + WIDTH_WHY,
        command=f"grokray trial studies/{WIDTH_STUDY} --set width={widths[-1]} "
        f"--set train_size={sizes[len(sizes) // 2]} --set seed=0",
        values={
            "widths": list(widths),
            "n_total": n_total,
            "estimates": [{k: e[k] for k in REPORTED_WIDTH} for e in estimates],
            "p_grok": {w: t.groupby(SIZE)["grokked"].mean().to_dict() for w, t in tables.items()},
            "mean_grokking_step": {
                w: t[t["grokked"]].groupby(SIZE)["grokking_step"].mean().to_dict() for w, t in tables.items()
            },
            "seeds": seeds,
            "budget": int(first["steps"]),
        },
        plot=path.name,
    )
