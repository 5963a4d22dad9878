"""Rows of the reproduction suite for this paper (see grokray.reproduce.core).

Notsawo, Dumas, Rabusseau (2025), modular addition: a small non-squared norm penalty β·‖W‖
(ℓ1, ℓ2, nuclear) delays generalization after memorization by a time ∝ 1/(lr·β), so the slope
of log(delay) against log(lr·β) is −1; without the penalty (β = 0, no weight decay) the network
memorizes and does not generalize. The law is the paper's (sub)gradient-descent result, so the
row trains with full-batch SGD; under Adam the measured slope is ≈ −0.5 (studies/regularizers.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from grokray.analysis.slope import POOLED, delay_slope
from grokray.reproduce.core import Context, Row, figure, row, run_configs, save, spread, study_configs

NORMS = ("l1", "l2", "nuclear")
REFERENCE_SLOPE = -1.0
TOLERANCE = 0.35  # |slope + 1| per norm
LRS = "1.0,0.3"
# p = 31 from 80 % of the table (kept from the earlier Adam setting, where 40–60 % did not generalize
# within 10–12k steps; smaller fractions not measured under SGD); 90 % validation accuracy because
# ℓ1's plateaus at 93–94 % under subgradient descent. lr 1.0 and 0.3 (SGD, momentum 0.9): at lr 0.1
# the β that generalize within 6k steps delay or stop memorization (nuclear 1e-2: memorized at step
# 1,100; ℓ2 0.1: never). Per-step cost is launch overhead at this size, so a norm's β values, lrs and seeds
# train as one batch.
FULL = (
    "p=31",
    "train_fraction=0.8",
    "optimizer=sgd",
    "grok_threshold=0.9",
    f"lr={LRS}",
    "steps=6000",
    "eval_every=25",
    "measures=none",
    "seeds=2",
)
QUICK = ("regularizer=l2,none", "steps=200", "eval_every=50", "measures=none")
KEEP = ("regularizer", "lr", "reg_strength", "seed", "memorization_step", "grokking_step", "grokking_delay",
        "final_train_acc", "final_val_acc", "steps_run")  # fmt: skip


def _table(
    configs: Sequence[Mapping[str, Any]], outcomes: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    return [{k: ({**c, **o}).get(k) for k in KEEP} for c, o in zip(configs, outcomes, strict=True)]


def _per_seed_slopes(runs: Sequence[Mapping[str, Any]], norm: str) -> list[float]:
    seeds = sorted({r["seed"] for r in runs})
    slopes = []
    for seed in seeds:
        (fit,) = delay_slope(
            [r for r in runs if r["seed"] == seed and r["regularizer"] == norm], group_col=None
        )
        slopes.append(fit["slope"])
    return slopes


def _strict(value: Any) -> Any:
    """NaN (a slope without enough delays to fit) as None, so report.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _control(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    control = [r for r in runs if r["regularizer"] == "none"]
    return {
        "runs": len(control),
        "memorized": sum(r["memorization_step"] is not None for r in control),
        "generalized": sum(r["grokking_step"] is not None for r in control),
        "final_val_acc": [r["final_val_acc"] for r in control],
        "steps": max((r["steps_run"] for r in control), default=0),
    }


def _plot(
    ctx: Context,
    runs: Sequence[Mapping[str, Any]],
    fits: Sequence[Mapping[str, Any]],
    control: Mapping[str, Any],
    budget: int,
    threshold: float,
) -> str:
    plt, path = figure(ctx, "notsawo-modular.png")
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    colors = {"l1": "C0", "l2": "C1", "nuclear": "C2"}
    markers = dict(zip(sorted({r["lr"] for r in runs}, reverse=True), ("o", "s", "^", "D"), strict=False))
    by_norm = {f["group"]: f for f in fits}
    for norm in NORMS:
        mine = [r for r in runs if r["regularizer"] == norm]
        for lr, marker in markers.items():
            done = [r for r in mine if r["lr"] == lr and (r["grokking_delay"] or 0) > 0]
            ax.scatter(
                [r["lr"] * r["reg_strength"] for r in done],
                [r["grokking_delay"] for r in done],
                marker=marker,
                color=colors[norm],
                s=22,
                alpha=0.8,
            )
            censored = [
                r
                for r in mine
                if r["lr"] == lr and r["memorization_step"] is not None and r["grokking_step"] is None
            ]
            ax.scatter(
                [r["lr"] * r["reg_strength"] for r in censored],
                [budget] * len(censored),
                marker="v",
                facecolors="none",
                edgecolors=colors[norm],
                s=30,
            )
        fit = by_norm.get(norm)
        if fit and math.isfinite(fit["slope"]):
            xs = [fit["x_min"], fit["x_max"]]
            ax.plot(
                xs,
                [math.exp(fit["intercept"]) * x ** fit["slope"] for x in xs],
                color=colors[norm],
                lw=1.6,
                label=f"{norm}: slope {fit['slope']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]",
            )
    used = [r["lr"] * r["reg_strength"] for r in runs if r["regularizer"] in NORMS and r["reg_strength"]]
    if used:  # the paper's law through the geometric middle of the data, for the eye
        delays = [r["grokking_delay"] for r in runs if (r["grokking_delay"] or 0) > 0] or [budget / 2]
        x0 = math.exp(sum(math.log(x) for x in used) / len(used))
        y0 = math.exp(sum(math.log(d) for d in delays) / len(delays))
        xs = [min(used), max(used)]
        ax.plot(xs, [y0 * (x / x0) ** REFERENCE_SLOPE for x in xs], "k--", lw=1, label="paper: slope −1")
    ax.axhline(budget, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lr·β")
    ax.set_ylabel(f"grokking delay (steps from memorization to {threshold:.0%} val acc)")
    glyphs = {"o": "●", "s": "■", "^": "▲", "D": "◆"}
    marks = ", ".join(f"{glyphs[m]} lr={lr:g}" for lr, m in markers.items())
    ax.set_title(
        f"Notsawo et al.: delay vs lr·β ({marks}; ▽ censored at the budget)\n"
        f"β = 0 control: {control['memorized']}/{control['runs']} memorized, "
        f"{control['generalized']}/{control['runs']} generalized in {control['steps']} steps "
        f"(val acc {spread(control['final_val_acc'], '{:.2f}')})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save(fig, path)


@row("notsawo-modular")
def notsawo_modular(ctx: Context) -> Row:
    overrides = QUICK if ctx.quick else FULL
    configs = study_configs("regularizers.py", overrides, quick=ctx.quick)
    outcomes = run_configs(configs, stop_on_grok=True, progress=ctx.progress, label="notsawo-modular")
    runs = _table(configs, outcomes)
    budget = int(configs[0]["steps"])
    fits = delay_slope([r for r in runs if r["regularizer"] in NORMS], group_col="regularizer")
    by_norm = {f["group"]: f for f in fits}
    control = _control(runs)
    control_ok = (
        control["runs"] > 0 and control["memorized"] == control["runs"] and not control["generalized"]
    )
    per_seed = {n: _per_seed_slopes(runs, n) for n in NORMS if n in by_norm}
    by_lr = {
        f"{f['group']}@lr={lr:g}": f["slope"]
        for lr in sorted({r["lr"] for r in runs})
        for f in delay_slope([r for r in runs if r["regularizer"] in NORMS and r["lr"] == lr],
                             group_col="regularizer", x_cols=("reg_strength",))
    }  # fmt: skip
    norms_ok = all(
        n in by_norm
        and math.isfinite(by_norm[n]["slope"])
        and abs(by_norm[n]["slope"] - REFERENCE_SLOPE) <= TOLERANCE
        for n in NORMS
    )

    def text(group: str) -> str:
        f = by_norm.get(group)
        if f is None or not math.isfinite(f["slope"]):
            return f"{group} n/a ({f['n_censored'] if f else 0} censored)"
        ci = f"CI [{f['ci_low']:.2f}, {f['ci_high']:.2f}]" if math.isfinite(f["ci_low"]) else "no CI"
        seeds = f", per seed {spread(per_seed[group], '{:.2f}')}" if group in per_seed else ""
        return f"{group} {f['slope']:.2f} ({ci}, n={f['n_used']}, {f['n_censored']} censored{seeds})"

    measured = "; ".join(text(g) for g in (*NORMS, POOLED)) + (
        f"; β=0 control: {control['memorized']}/{control['runs']} memorized, "
        f"{control['generalized']} generalized in {control['steps']} steps"
    )
    lrs = sorted({r["lr"] for r in runs}, reverse=True)
    fixed_lr = ", ".join(
        f"{n} " + " | ".join(f"{by_lr.get(f'{n}@lr={lr:g}', math.nan):.2f}" for lr in lrs) for n in NORMS
    )
    measured += f"; slope vs β at fixed lr ({' | '.join(f'{lr:g}' for lr in lrs)}): {fixed_lr}"
    plot = _plot(ctx, runs, fits, control, budget, float(configs[0]["grok_threshold"]))
    return Row(
        key="notsawo-modular",
        paper="Notsawo, Dumas, Rabusseau 2025",
        figure="Fig. 2 (and App.), delay vs lr·β on modular addition, ℓ1 / ℓ2 / nuclear",
        claim="a small norm penalty delays generalization by ∝ 1/(lr·β) under gradient descent; β = 0 "
        "memorizes, never generalizes",
        reference="slope −1 per norm; β = 0 does not generalize",
        measured=measured,
        tolerance=f"each norm's slope within −1 ± {TOLERANCE} (OLS 95 % t-interval shown) and the control "
        "memorizes without generalizing",
        passed=norms_ok and control_ok,
        scaled="p = 31 (paper 97), training fraction 0.8 (paper 0.4: under Adam at p = 31, 40–60 % "
        "did not generalize within 10–12k steps), generalization at 90 % validation accuracy (ℓ1 plateaus "
        f"at 93–94 %), full batch, 6,000 steps, lr ∈ {{{LRS}}}, 2 seeds, 3 β per norm. Full-batch SGD "
        "(momentum 0.9) instead of the paper's Adam: 1/(lr·β) is the paper's gradient-descent law "
        "(the penalty's flow runs at rate lr·β), the paper fits no slope for its Adam MLP, and under "
        "Adam grokray measures ≈ −0.5 (Adam rescales the penalty's gradient). The β grids sit in the "
        "window where memorization still comes first (a larger β stops it) and the delay fits the "
        "budget. grokray's concatenated-embedding MLP (the paper multiplies the two embeddings as "
        "matrices). Every fitted delay has memorization first; censored runs (memorized, not "
        "generalized in the budget) and runs that never memorized are counted, not fitted",
        command="grokray run studies/regularizers.py " + " ".join(f"--set {o}" for o in FULL),
        values=_strict(
            {
                "fits": fits,
                "slope_vs_beta_by_lr": by_lr,
                "per_seed_slopes": per_seed,
                "control": control,
                "runs": runs,
                "budget": budget,
            }
        ),
        plot=plot,
    )
