"""The power law of the grokking delay: log(delay) = a + b·log(lr·β), fitted over runs.

Notsawo, Dumas and Rabusseau (2025) predict that a small norm penalty β·‖θ‖ delays generalization
after memorization by a time ∝ 1/(lr·β): a slope b = −1 on log-log axes. ``delay_slope`` fits b
per group (one per regularizer: the norms' prefactors differ, so each has its own intercept) and
pooled (one common slope with an intercept per group: the fixed-effects, or ANCOVA, slope), with
a 95 % interval either from the OLS t distribution (``method="t"``, the default: exact under
Gaussian residuals, and deterministic) or from a seeded bootstrap over runs (``method="bootstrap"``:
runs resampled with replacement within each group, percentile interval).

A delay is defined only for a run that memorized, then generalized strictly later; the rest are
counted, not fitted: ``n_censored`` memorized but had not generalized by the end of the budget
(right-censored: leaving them out flattens the fitted line at the small-β end, so a study must
keep their number small), ``n_not_memorized``, ``n_no_delay`` (generalized no later than it
memorized), ``n_control`` (lr·β = 0, the unregularized control, which has no place on a log axis).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

SLOPE_KEYS = (
    "group", "slope", "ci_low", "ci_high", "intercept", "r2", "n_used", "n_censored",
    "n_not_memorized", "n_no_delay", "n_control", "x_min", "x_max", "method", "level",
)  # fmt: skip
POOLED = "pooled"


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _records(table: Any) -> list[Mapping[str, Any]]:
    if hasattr(table, "to_dict"):  # a pandas DataFrame (the trial table)
        return list(table.to_dict("records"))
    return list(table)


def classify(
    run: Mapping[str, Any], x_cols: Sequence[str], delay_col: str = "grokking_delay"
) -> tuple[str, float | None, float | None]:
    """(status, x, delay) of one run: status ``used``, ``control``, ``not_memorized``,
    ``censored`` or ``no_delay``; x = the product of ``x_cols`` (e.g. lr·β)."""
    factors = [_number(run.get(col)) for col in x_cols]
    x = math.prod(factors) if all(f is not None for f in factors) else None  # type: ignore[misc]
    if x is None or x <= 0:
        return "control", None, None
    if _number(run.get("memorization_step")) is None:
        return "not_memorized", x, None
    if _number(run.get("grokking_step")) is None:
        return "censored", x, None
    delay = _number(run.get(delay_col))
    if delay is None or delay <= 0:
        return "no_delay", x, None
    return "used", x, delay


def _fit(groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[float], float, float, int]:
    """Common slope over groups with one intercept each: (slope, intercepts, SSR, R², df)."""
    sxy = sum(float(((u - u.mean()) * (v - v.mean())).sum()) for u, v in groups)
    sxx = sum(float(((u - u.mean()) ** 2).sum()) for u, _ in groups)
    if sxx <= 0:
        return math.nan, [math.nan] * len(groups), math.nan, math.nan, 0
    slope = sxy / sxx
    intercepts = [float(v.mean() - slope * u.mean()) for u, v in groups]
    ssr = sum(float(((v - a - slope * u) ** 2).sum()) for (u, v), a in zip(groups, intercepts, strict=True))
    syy = sum(float(((v - v.mean()) ** 2).sum()) for _, v in groups)
    r2 = 1.0 - ssr / syy if syy > 0 else 1.0
    df = sum(len(u) for u, _ in groups) - len(groups) - 1
    return slope, intercepts, ssr, r2, df


def _t_interval(
    groups: Sequence[tuple[np.ndarray, np.ndarray]], slope: float, ssr: float, df: int, level: float
) -> tuple[float, float]:
    if df <= 0 or not math.isfinite(slope):
        return math.nan, math.nan
    from scipy import stats

    sxx = sum(float(((u - u.mean()) ** 2).sum()) for u, _ in groups)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(ssr / df / sxx)
    return slope - half, slope + half


def _bootstrap_interval(
    groups: Sequence[tuple[np.ndarray, np.ndarray]], level: float, n_bootstrap: int, seed: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(n_bootstrap):
        resampled = []
        for u, v in groups:
            pick = rng.integers(0, len(u), len(u))
            resampled.append((u[pick], v[pick]))
        slope = _fit(resampled)[0]
        if math.isfinite(slope):
            slopes.append(slope)
    if not slopes:
        return math.nan, math.nan
    low, high = np.quantile(slopes, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def delay_slope(
    table: Any,
    group_col: str | None = "regularizer",
    x_cols: Sequence[str] = ("lr", "reg_strength"),
    delay_col: str = "grokking_delay",
    method: str = "t",
    level: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Fit log(delay) = a + b·log(∏ x_cols) per value of ``group_col`` and pooled.

    ``table`` is the trial table (a DataFrame) or any iterable of run mappings with the columns
    ``x_cols``, ``memorization_step``, ``grokking_step`` and ``delay_col``. Returns one dict per
    group (sorted by name; keys ``SLOPE_KEYS``), then, with more than one group, the ``pooled``
    one (common slope, one intercept per group; its ``intercept`` is NaN). A group with fewer
    than two distinct x among its fitted runs has slope NaN; the interval needs at least one
    residual degree of freedom (n − groups − 1 ≥ 1), else it is NaN.
    """
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method: got {method!r}; allowed: t, bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level: got {level!r}; allowed: a number in (0, 1)")
    by_group: dict[str, list[tuple[str, float | None, float | None]]] = {}
    for run in _records(table):
        name = str(run.get(group_col)) if group_col else "all"
        by_group.setdefault(name, []).append(classify(run, x_cols, delay_col))

    def summarise(name: str, runs: list[tuple[str, float | None, float | None]]) -> dict[str, Any]:
        counts = {
            s: sum(1 for status, _, _ in runs if status == s)
            for s in ("used", "censored", "not_memorized", "no_delay", "control")
        }
        return {
            "group": name,
            "n_used": counts["used"],
            "n_censored": counts["censored"],
            "n_not_memorized": counts["not_memorized"],
            "n_no_delay": counts["no_delay"],
            "n_control": counts["control"],
            "method": method,
            "level": level,
        }

    def arrays(runs: list[tuple[str, float | None, float | None]]) -> tuple[np.ndarray, np.ndarray]:
        used = [(x, d) for status, x, d in runs if status == "used"]
        return (
            np.log(np.array([x for x, _ in used], dtype=float)),
            np.log(np.array([d for _, d in used], dtype=float)),
        )

    def estimate(entry: dict[str, Any], groups: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        groups = [g for g in groups if len(g[0])]
        slope, intercepts, ssr, r2, df = _fit(groups) if groups else (math.nan, [], math.nan, math.nan, 0)
        if method == "t":
            low, high = _t_interval(groups, slope, ssr, df, level)
        elif df > 0 and math.isfinite(slope):
            low, high = _bootstrap_interval(groups, level, n_bootstrap, seed)
        else:
            low, high = math.nan, math.nan
        xs = np.concatenate([u for u, _ in groups]) if groups else np.array([])
        entry.update(
            slope=slope, ci_low=low, ci_high=high,
            intercept=intercepts[0] if len(intercepts) == 1 else math.nan,
            r2=r2, x_min=float(np.exp(xs.min())) if len(xs) else math.nan,
            x_max=float(np.exp(xs.max())) if len(xs) else math.nan,
        )  # fmt: skip
        return {key: entry[key] for key in SLOPE_KEYS}

    results = [estimate(summarise(name, runs), [arrays(runs)]) for name, runs in sorted(by_group.items())]
    if len(by_group) > 1:
        every = [run for runs in by_group.values() for run in runs]
        pooled = estimate(summarise(POOLED, every), [arrays(runs) for _, runs in sorted(by_group.items())])
        results.append(pooled)
    return results


def format_slopes(slopes: Iterable[Mapping[str, Any]], x_label: str = "lr·β") -> str:
    """One line per group: ``l2: slope -0.98 [-1.10, -0.86] (n=12, 2 censored, ...)``."""
    slopes = list(slopes)
    lines = []
    for s in slopes:
        if math.isfinite(s["slope"]):
            finite = math.isfinite(s["ci_low"])
            interval = f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]" if finite else " [no CI]"
            value = f"slope {s['slope']:.2f}{interval}"
        else:
            value = "slope n/a"
        left_out = [f"{s[k]} {label}" for k, label in (
            ("n_censored", "censored"), ("n_not_memorized", "not memorized"),
            ("n_no_delay", "no delay"), ("n_control", "β=0")) if s[k]]  # fmt: skip
        lines.append(f"{s['group']}: {value} (n={s['n_used']}" + "".join(f", {t}" for t in left_out) + ")")
    method = slopes[0]["method"] if slopes else "t"
    level = slopes[0]["level"] if slopes else 0.95
    header = f"grokking delay vs {x_label}, log-log fit (slope, {level:.0%} CI by {method}):"
    return "\n".join([header, *("  " + line for line in lines)])


def study_slopes(table: Any, searched: Sequence[str]) -> list[dict[str, Any]] | None:
    """The slope rows of a finished study, or None when it does not vary the penalty strength.

    For the end of ``grokray run`` (``grokray.tune.finish``): a study that searches
    ``reg_strength`` (directly or through per-regularizer linked grids, which leave it varying in
    the trial table) gets the fit of log delay on log(lr·β), grouped by ``regularizer`` when that
    varies.
    """
    records = _records(table)
    strengths = {_number(r.get("reg_strength")) for r in records}
    if "reg_strength" not in searched and len(strengths - {None}) < 2:
        return None
    kinds = {str(r.get("regularizer")) for r in records}
    return delay_slope(records, group_col="regularizer" if len(kinds) > 1 else None)


__all__ = ["POOLED", "SLOPE_KEYS", "classify", "delay_slope", "format_slopes", "study_slopes"]
