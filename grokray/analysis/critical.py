"""Critical data size of grokking: logistic fit of P(grok within budget) vs data size.

The critical data size of a group of trials that differ only in training-set size is the
size at which the probability of grokking within the step budget is one half.  We fit
``P(grok) = sigmoid(a + b·x)`` by penalized maximum likelihood (Newton's method, vectorized
so that a thousand bootstrap refits cost about as much as one), read off ``x0 = -a/b``, and
get a 95 % confidence interval from a stratified bootstrap.

Bootstrap design (the choices the brief left open):

* **Stratified by size value.**  Each resample draws, for every distinct size, as many
  trials as the original had at that size (with replacement).  The design of the sweep
  (which sizes were tried, how many seeds each) is fixed by the experimenter, not random,
  so only the outcomes are resampled.  This also keeps the size range identical in every
  resample.
* **Clipped to the observed range.**  A resample's ``x0`` is clipped to ``[min_x, max_x]``:
  the data cannot locate a crossing outside the sizes that were tried.  A resample in which
  every trial grokked (none grokked) has its crossing below (above) the range and counts as
  ``min_x`` (``max_x``); its "curve" is the constant 1 (0).  So no resample is dropped and
  the interval honestly widens to the range edge when the data are that uncertain.
* **Never finer than the tried sizes.**  The interval spans at least the tried sizes just
  below and above the estimate (``_resolution_floor``): with separated outcomes every
  resample is identical and the percentile interval alone would be a point.
* **Drawn from the fit where sizes were tried once.**  A size tried by one run has nothing to
  resample within it, so a design of single runs (the boundary search's, a random search over
  sizes) would give every resample the same data and a point for an interval. There, the
  bootstrap is parametric (Wichmann & Hill 2001, as psignifit does): each resample draws every
  run's outcome from the fitted curve at its size. A design whose every size has two or more
  runs (a grid with seeds) is resampled within sizes as above.
* **Seeded per group.**  Every group uses a fresh ``numpy.random.default_rng(seed)``, so a
  group's interval does not depend on which other groups exist, and the plot can redraw
  exactly the resamples behind the reported interval.

The slope carries a tiny ridge penalty, applied in standardized units of ``x`` (so fitting
fractions or absolute sizes gives the same curve): with perfectly separated outcomes the
unpenalized MLE has an infinite slope, the penalized one is finite and steep and puts the
crossing between the last failing and the first grokking size.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_RIDGE",
    "ESTIMATE_KEYS",
    "LogisticBootstrap",
    "bootstrap_curves",
    "bootstrap_logistic",
    "critical_by_budget",
    "critical_data_size",
    "critical_point",
    "fit_logistic",
    "format_estimates",
    "grok_probability_by_size",
    "logistic_fit_p",
    "split_groups",
]

DEFAULT_RIDGE = 1e-3
"""Ridge penalty ``λ·β²/2`` on the slope β of the standardized predictor."""

_MAX_NEWTON_ITER = 100
_MAX_HALVINGS = 60
_ARMIJO = 1e-4
_NEWTON_TOL = 1e-10  # on the Newton decrement g·H⁻¹g (≈ 2 × distance to the optimum)

ESTIMATE_KEYS: tuple[str, ...] = (
    "group",
    "critical_fraction",
    "ci_low",
    "ci_high",
    "critical_size",
    "peak_fraction",
    "peak_size",
    "n_trials",
    "n_grokked",
    "budget_steps",
    "slope",
    "fit_p",
    "note",
)


# --------------------------------------------------------------------------------------
# Logistic regression
# --------------------------------------------------------------------------------------


def _sigmoid(eta: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    return np.exp(-np.logaddexp(0.0, -eta))


def _penalized_nll(theta: np.ndarray, z: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    eta = theta[:, :1] + theta[:, 1:] * z
    return np.sum(np.logaddexp(0.0, eta) - y * eta, axis=1) + 0.5 * ridge * theta[:, 1] ** 2


def _fit_logistic_batch(
    x: np.ndarray, y: np.ndarray, ridge: float = DEFAULT_RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one logistic regression per row of ``x``/``y`` (shape ``(B, n)``) at once.

    Damped Newton (Armijo backtracking) on the penalized negative log-likelihood in
    standardized coordinates ``z = (x - mean) / sd``.  Every row must contain both classes;
    then the objective is strictly convex and coercive (the intercept is pinned by the two
    classes, the slope by the ridge), so the minimizer is finite and unique.

    Returns ``(a, b)`` arrays of shape ``(B,)`` in the original units of ``x``.
    """
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu) / sd
    n_rows = x.shape[0]

    ybar = np.clip(y.mean(axis=1), 1e-9, 1 - 1e-9)
    theta = np.column_stack([np.log(ybar / (1 - ybar)), np.zeros(n_rows)])
    objective = _penalized_nll(theta, z, y, ridge)
    active = np.ones(n_rows, dtype=bool)

    for _ in range(_MAX_NEWTON_ITER):
        if not active.any():
            break
        eta = theta[:, :1] + theta[:, 1:] * z
        p = _sigmoid(eta)
        r = p - y
        w = p * (1 - p)
        g0 = r.sum(axis=1)
        g1 = (r * z).sum(axis=1) + ridge * theta[:, 1]
        h00 = w.sum(axis=1) + 1e-12  # jitter: saturated fits make this ~0
        h01 = (w * z).sum(axis=1)
        h11 = (w * z * z).sum(axis=1) + ridge
        det = h00 * h11 - h01**2
        step = np.column_stack([-(h11 * g0 - h01 * g1) / det, -(h00 * g1 - h01 * g0) / det])
        decrement = -(g0 * step[:, 0] + g1 * step[:, 1])
        active &= np.isfinite(decrement) & (decrement > _NEWTON_TOL)
        if not active.any():
            break

        t = np.ones(n_rows)
        accepted = np.zeros(n_rows, dtype=bool)
        candidate_obj = objective
        candidate = theta
        for _ in range(_MAX_HALVINGS):
            candidate = theta + t[:, None] * step
            candidate_obj = _penalized_nll(candidate, z, y, ridge)
            accepted = np.isfinite(candidate_obj) & (candidate_obj <= objective - _ARMIJO * t * decrement)
            if np.all(accepted | ~active):
                break
            t = np.where(accepted | ~active, t, 0.5 * t)
        update = active & accepted
        theta = np.where(update[:, None], candidate, theta)
        objective = np.where(update, candidate_obj, objective)
        active &= accepted  # no acceptable step left: we are at the optimum to rounding

    b = theta[:, 1] / sd[:, 0]
    a = theta[:, 0] - b * mu[:, 0]
    return a, b


def _as_xy(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length: {xa.size} != {ya.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite")
    if np.any((ya != 0) & (ya != 1)):
        raise ValueError("y must be 0/1 (or bool)")
    return xa, ya


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = DEFAULT_RIDGE) -> tuple[float, float]:
    """MLE (with tiny ridge on slope) of P(y=1)=sigmoid(a + b x). Returns (a, b).

    The ridge ``ridge·β²/2`` acts on the slope β of the *standardized* ``x``, so the fit is
    invariant to rescaling ``x`` (fractions vs absolute sizes).  ``y`` must contain both
    classes (otherwise the intercept MLE is infinite): ``ValueError`` if not.
    """
    xa, ya = _as_xy(x, y)
    if xa.size == 0 or ya.min() == ya.max():
        raise ValueError("y must contain both 0 and 1 for a finite logistic fit")
    a, b = _fit_logistic_batch(xa[None, :], ya[None, :], ridge)
    return float(a[0]), float(b[0])


def critical_point(x: np.ndarray, y: np.ndarray, ridge: float = DEFAULT_RIDGE) -> float:
    """The x where the fitted P(y=1) is 0.5: ``-a/b`` clipped to ``[x.min(), x.max()]``.

    NaN when not identifiable: no data, a single distinct x, or y all 0 / all 1.
    """
    xa, ya = _as_xy(x, y)
    if xa.size == 0 or xa.min() == xa.max() or ya.min() == ya.max():
        return math.nan
    a, b = fit_logistic(xa, ya, ridge)
    if b == 0 or not math.isfinite(a / b):
        return math.nan
    return float(np.clip(-a / b, xa.min(), xa.max()))


# --------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticBootstrap:
    """Logistic refits on bootstrap resamples; CI and confidence band share them.

    ``status[i]`` is 0 for a fitted resample, +1 when resample ``i`` had every outcome 1
    and -1 when it had every outcome 0; those have NaN ``intercepts``/``slopes``, a
    constant curve (1 or 0) and ``critical`` at the low / high end of the x range.
    """

    intercepts: np.ndarray
    slopes: np.ndarray
    critical: np.ndarray
    status: np.ndarray

    def curves(self, grid: np.ndarray) -> np.ndarray:
        """Fitted P(y=1) of every resample on ``grid``: shape ``(n_bootstrap, len(grid))``."""
        g = np.asarray(grid, dtype=float).ravel()
        fitted = self.status == 0
        out = np.empty((self.status.size, g.size))
        out[fitted] = _sigmoid(self.intercepts[fitted, None] + self.slopes[fitted, None] * g)
        out[self.status > 0] = 1.0
        out[self.status < 0] = 0.0
        return out

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of the resampled critical points (NaN if none)."""
        finite = self.critical[np.isfinite(self.critical)]
        if finite.size == 0:
            return math.nan, math.nan
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(finite, [tail, 100.0 - tail])
        return float(low), float(high)


def _stratified_indices(x: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Resample indices ``(n_bootstrap, n)``, with replacement within each distinct x."""
    blocks = []
    for value in np.unique(x):
        members = np.flatnonzero(x == value)
        blocks.append(members[rng.integers(0, members.size, size=(n_bootstrap, members.size))])
    return np.concatenate(blocks, axis=1)


def bootstrap_logistic(
    x: np.ndarray,
    y: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ridge: float = DEFAULT_RIDGE,
    parametric: bool | None = None,
) -> LogisticBootstrap:
    """Refit the logistic on ``n_bootstrap`` resamples stratified by x value, or (``parametric``;
    by default when some x value has a single run) drawn from the fitted curve at each x.

    See the module docstring for why resamples are stratified and how all-1 / all-0
    resamples are counted.  Deterministic for a given ``seed``.
    """
    xa, ya = _as_xy(x, y)
    if xa.size == 0:
        raise ValueError("cannot bootstrap an empty sample")
    rng = np.random.default_rng(seed)
    if parametric is None:  # a size tried once has nothing to resample within it
        parametric = bool(np.any(np.unique(xa, return_counts=True)[1] < 2))
    if parametric and 0 < ya.sum() < ya.size:
        a0, b0 = fit_logistic(xa, ya, ridge)
        xb = np.broadcast_to(xa, (n_bootstrap, xa.size))
        yb = (rng.random((n_bootstrap, xa.size)) < _sigmoid(a0 + b0 * xa)).astype(float)
    else:
        idx = _stratified_indices(xa, n_bootstrap, rng)
        xb, yb = xa[idx], ya[idx]
    n_pos = yb.sum(axis=1)
    status = np.where(n_pos == xa.size, 1, np.where(n_pos == 0, -1, 0)).astype(np.int8)
    lo, hi = float(xa.min()), float(xa.max())

    intercepts = np.full(n_bootstrap, math.nan)
    slopes = np.full(n_bootstrap, math.nan)
    critical = np.where(status > 0, lo, hi).astype(float)
    fitted = status == 0
    if fitted.any():
        a, b = _fit_logistic_batch(xb[fitted], yb[fitted], ridge)
        intercepts[fitted], slopes[fitted] = a, b
        with np.errstate(divide="ignore", invalid="ignore"):
            x0 = np.where(b != 0, -a / b, math.nan)
        critical[fitted] = np.clip(x0, lo, hi)  # NaN (only if x is constant) stays NaN
    return LogisticBootstrap(intercepts, slopes, critical, status)


def bootstrap_curves(
    x: np.ndarray,
    y: np.ndarray,
    grid: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ridge: float = DEFAULT_RIDGE,
) -> np.ndarray:
    """Fitted curves of :func:`bootstrap_logistic` on ``grid``, shape ``(n_bootstrap, G)``."""
    return bootstrap_logistic(x, y, n_bootstrap, seed, ridge).curves(grid)


def _deviance(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deviance of fits ``(a, b)`` (one per row of ``y``) against the saturated model of the
    sizes: 2 Σ over sizes of k log(k/np) + (n−k) log((n−k)/(n(1−p))), rows of ``y`` shape (B, n)."""
    sizes, inverse = np.unique(x, return_inverse=True)
    n = np.bincount(inverse).astype(float)
    k = np.stack([np.bincount(inverse, weights=row, minlength=sizes.size) for row in y])
    p = _sigmoid(a[:, None] + b[:, None] * sizes[None, :])
    p = np.clip(p, 1e-12, 1 - 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        grok = np.where(k > 0, k * np.log(k / (n * p)), 0.0)
        fail = np.where(n - k > 0, (n - k) * np.log((n - k) / (n * (1 - p))), 0.0)
    return 2.0 * (grok + fail).sum(axis=1)


def logistic_fit_p(
    x: np.ndarray, y: np.ndarray, n_sims: int = 500, seed: int = 0, ridge: float = DEFAULT_RIDGE
) -> float:
    """Goodness of fit of the logistic: the parametric-bootstrap p-value of its deviance.

    Outcomes are drawn from the fitted curve at the tried sizes, refitted, and the p-value is the
    share of simulated deviances at least the observed one (binary outcomes at a few runs per size
    have no trustworthy χ² reference; the simulation is exact for the design). A small p says the
    outcomes are not a logistic in size: grokking that comes and goes with more data (ungrokking,
    a non-monotone band), or a curve of another shape; the crossing is then not a reliable boundary.
    NaN when nothing can be fitted (one class, one size)."""
    xa, ya = _as_xy(x, y)
    if xa.size == 0 or xa.min() == xa.max() or ya.min() == ya.max():
        return math.nan
    a, b = fit_logistic(xa, ya, ridge)
    observed = float(_deviance(xa, ya[None, :], np.array([a]), np.array([b]))[0])
    rng = np.random.default_rng(seed)
    sims = (rng.random((n_sims, xa.size)) < _sigmoid(a + b * xa)).astype(float)
    n_pos = sims.sum(axis=1)
    both = (n_pos > 0) & (n_pos < xa.size)
    simulated = np.zeros(n_sims)  # a one-class draw is fitted exactly by a flat curve
    if both.any():
        sa, sb = _fit_logistic_batch(np.broadcast_to(xa, sims.shape)[both], sims[both], ridge)
        simulated[both] = _deviance(xa, sims[both], sa, sb)
    return float((1 + np.sum(simulated >= observed - 1e-9)) / (1 + n_sims))


#: Below this goodness-of-fit p-value the estimate says the logistic does not describe the runs.
FIT_P_WARN = 0.01


# --------------------------------------------------------------------------------------
# Trial tables
# --------------------------------------------------------------------------------------


def _completed(table: pd.DataFrame, size_col: str) -> pd.DataFrame:
    """Rows of finished trials: ``grokked`` and the size known; ``grokked`` made bool."""
    missing = [c for c in (size_col, "grokked") if c not in table.columns]
    if missing:
        raise ValueError(f"trial table lacks column(s) {missing}")
    done = table[table["grokked"].notna() & table[size_col].notna()].copy()
    done["grokked"] = done["grokked"].astype(bool)
    done[size_col] = done[size_col].astype(float)
    return done


def grok_probability_by_size(table: pd.DataFrame, size_col: str = "train_fraction") -> pd.DataFrame:
    """Empirical grokking probability per size value (failed trials ignored).

    Columns: ``size_col`` (so ``train_fraction`` by default), ``n``, ``n_grokked``,
    ``p_grok`` and ``mean_grokking_step`` (mean over the grokked trials at that size, NaN
    where none grokked or there is no ``grokking_step`` column); sorted by size.
    """
    done = _completed(table, size_col)
    steps = (
        done["grokking_step"].astype(float)
        if "grokking_step" in done.columns
        else pd.Series(math.nan, index=done.index)
    )
    frame = pd.DataFrame(
        {
            size_col: done[size_col],
            "grokked": done["grokked"].astype(int),
            "step": steps.where(done["grokked"]),
        }
    )
    out = (
        frame.groupby(size_col, sort=True)
        .agg(
            n=("grokked", "size"),
            n_grokked=("grokked", "sum"),
            mean_grokking_step=("step", "mean"),
        )
        .reset_index()
    )
    out["n"] = out["n"].astype(int)
    out["n_grokked"] = out["n_grokked"].astype(int)
    out["p_grok"] = out["n_grokked"] / out["n"]
    return out[[size_col, "n", "n_grokked", "p_grok", "mean_grokking_step"]]


def _py(value: Any) -> Any:
    """numpy scalar → plain Python value (JSON-serializable); missing → None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def _fmt_edge(value: float) -> str:
    return f"{value:.3g}"


def _column_codes(values: pd.Series, n_bins: int) -> tuple[np.ndarray, list[Any]]:
    """Integer codes (in sort order) and their labels for one grouping column.

    A numeric column with more than ``n_bins`` distinct values is cut into ``n_bins`` bins
    (log-spaced when all values are positive and span more than a decade, else equal
    width) labelled ``"[lo, hi)"`` (the last bin is closed).  Anything else is grouped by
    value.  Missing values form their own group, labelled ``None``, sorted last.
    """
    present = values.notna().to_numpy()
    codes = np.empty(len(values), dtype=int)
    distinct = pd.unique(values[present])
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)

    if numeric and len(distinct) > n_bins:
        v = values[present].to_numpy(dtype=float)
        lo, hi = float(v.min()), float(v.max())
        if lo > 0 and hi / lo > 10:
            edges = np.geomspace(lo, hi, n_bins + 1)
        else:
            edges = np.linspace(lo, hi, n_bins + 1)
        codes[present] = np.searchsorted(edges[1:-1], v, side="right")
        labels: list[Any] = [
            f"[{_fmt_edge(edges[i])}, {_fmt_edge(edges[i + 1])}{']' if i == n_bins - 1 else ')'}"
            for i in range(n_bins)
        ]
    else:
        try:
            ordered = sorted(distinct)
        except TypeError:  # mixed types: order by text
            ordered = sorted(distinct, key=str)
        position = {value: i for i, value in enumerate(ordered)}
        codes[present] = [position[value] for value in values[present]]
        labels = [_py(value) for value in ordered]
    if not present.all():
        codes[~present] = len(labels)
        labels.append(None)
    return codes, labels


#: A continuous searched dimension's range, binned the same way by the estimate and the stopper:
#: (low, high, log).
Bins = tuple[float, float, bool]


@functools.lru_cache(maxsize=256)
def _cached_edges(
    low: float, high: float, log: bool, n_bins: int
) -> tuple[np.ndarray, tuple[float, ...], tuple[str, ...]]:
    edges = np.geomspace(low, high, n_bins + 1) if log else np.linspace(low, high, n_bins + 1)
    edges.flags.writeable = False  # shared by every caller
    labels = tuple(
        f"[{_fmt_edge(edges[i])}, {_fmt_edge(edges[i + 1])}{']' if i == n_bins - 1 else ')'}"
        for i in range(n_bins)
    )
    return edges, tuple(float(e) for e in edges[1:-1]), labels


def bin_edges(low: float, high: float, log: bool, n_bins: int) -> np.ndarray:
    """The ``n_bins + 1`` edges over ``[low, high]`` (log-spaced when ``log``); read-only, cached:
    the stopper and the pack search label every config they see."""
    return _cached_edges(float(low), float(high), bool(log), int(n_bins))[0]


def bin_label(value: float, bins: Bins, n_bins: int = 3) -> str:
    """The label of ``value``'s bin among ``n_bins`` bins over the dimension's range (log-spaced
    for a log dimension): ``"[lo, hi)"``, the last bin closed. The monotone stopper groups a
    running trial by the same label as the estimate groups the finished table."""
    low, high, log = bins
    _, inner, labels = _cached_edges(float(low), float(high), bool(log), int(n_bins))
    i = bisect.bisect_right(inner, float(value))
    return labels[min(max(i, 0), n_bins - 1)]


def _fixed_bin_codes(values: pd.Series, bins: Bins, n_bins: int) -> tuple[np.ndarray, list[Any]]:
    present = values.notna().to_numpy()
    labels = [bin_label(edge, bins, n_bins) for edge in _bin_centres(bins, n_bins)]
    codes = np.empty(len(values), dtype=int)
    codes[present] = [labels.index(bin_label(v, bins, n_bins)) for v in values[present]]
    if not present.all():
        codes[~present] = len(labels)
        labels.append(None)
    return codes, labels


def _bin_centres(bins: Bins, n_bins: int) -> np.ndarray:
    edges = bin_edges(*bins, n_bins)
    return np.sqrt(edges[:-1] * edges[1:]) if bins[2] else (edges[:-1] + edges[1:]) / 2


def split_groups(
    table: pd.DataFrame,
    group_cols: Sequence[str] = (),
    n_bins: int = 3,
    size_col: str = "train_fraction",
    binned: Mapping[str, Bins] | None = None,
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Split completed trials into groups that differ only in data size.

    Returns ``(group, trials)`` pairs sorted by group key, where ``group`` maps each
    grouping column to its value or bin label.  ``seed`` (replicas) and ``size_col``
    itself are never grouping columns and are dropped if passed; empty groups (e.g. an
    empty bin) are omitted.  Failed trials (``grokked`` missing) are dropped first.

    ``binned`` names the continuous columns (a study's non-grid dimensions) with their
    ranges: those are cut into ``n_bins`` bins over the range, every other column is grouped
    by exact value (a grid of five widths gives five groups). Without ``binned`` (a table of
    unknown origin) a numeric column with more than ``n_bins`` distinct values is binned over
    its data range.
    """
    done = _completed(table, size_col)
    cols = [c for c in dict.fromkeys(group_cols) if c not in ("seed", size_col)]
    missing = [c for c in cols if c not in done.columns]
    if missing:
        raise ValueError(f"trial table lacks grouping column(s) {missing}")
    if done.empty:
        return []
    if not cols:
        return [({}, done)]

    all_codes: list[np.ndarray] = []
    all_labels: list[list[Any]] = []
    for col in cols:
        if binned is None:
            codes, labels = _column_codes(done[col], n_bins)
        elif col in binned:
            codes, labels = _fixed_bin_codes(done[col], binned[col], n_bins)
        else:
            codes, labels = _column_codes(done[col], n_bins=len(done))  # exact values
        all_codes.append(codes)
        all_labels.append(labels)
    keys = np.column_stack(all_codes)
    groups = []
    for key in sorted({tuple(int(c) for c in row) for row in keys}):
        mask = np.all(keys == np.asarray(key), axis=1)
        label = {col: all_labels[j][key[j]] for j, col in enumerate(cols)}
        groups.append((label, done[mask]))
    return groups


def _size_label(size_col: str) -> str:
    return "fraction" if size_col == "train_fraction" else size_col


def _round_size(value: float) -> int | float:
    return round(value) if math.isfinite(value) else math.nan


def _resolution_floor(x: np.ndarray, x0: float, ci_low: float, ci_high: float) -> tuple[float, float]:
    """Widen the interval to at least the tried sizes on either side of ``x0``.

    The stratified bootstrap only resamples outcomes; with (nearly) perfectly separated data every
    resample is the same and the percentile interval collapses to a point, although the crossing
    can lie anywhere between the last failing and the first grokking size. The data cannot locate
    it more finely than the sizes that were tried, so the interval always spans that bracket.
    """
    if not math.isfinite(x0):
        return ci_low, ci_high
    below, above = x[x < x0], x[x > x0]
    low = float(below.max()) if below.size else float(x.min())
    high = float(above.min()) if above.size else float(x.max())
    return min(ci_low, low), max(ci_high, high)


def _estimate_group(
    group: dict[str, Any],
    trials: pd.DataFrame,
    size_col: str,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    x = trials[size_col].to_numpy(dtype=float)
    y = trials["grokked"].to_numpy(dtype=float)
    n_trials, n_grokked = int(y.size), int(y.sum())
    lo, hi = float(x.min()), float(x.max())
    label = _size_label(size_col)
    notes: list[str] = []

    budget = math.nan
    if "steps" in trials.columns:
        budget = float(pd.to_numeric(trials["steps"], errors="coerce").max())
    budget_steps = int(budget) if math.isfinite(budget) else 0

    # size ↔ fraction conversion factor
    n_total = math.nan
    if "n_total" in trials.columns:
        totals = pd.to_numeric(trials["n_total"], errors="coerce").dropna().unique()
        if totals.size:
            n_total = float(np.median(totals))
            if totals.size > 1:
                notes.append(f"n_total varies in group; used median {n_total:g}")

    def to_fraction(v: float) -> float:
        return v if size_col == "train_fraction" else v / n_total

    def to_size(v: float) -> int | float:
        return _round_size(v * n_total if size_col == "train_fraction" else v)

    x0 = slope = ci_low = ci_high = fit_p = math.nan
    if n_grokked == n_trials:
        notes.insert(0, f"all trials grokked: critical {label} below {lo:g}")
    elif n_grokked == 0:
        notes.insert(0, f"no trial grokked: critical {label} above {hi:g}")
    elif lo == hi:
        notes.insert(0, f"all trials have {size_col} = {lo:g}: critical {label} not identifiable")
    else:
        a, slope = fit_logistic(x, y)
        x0 = critical_point(x, y)
        raw = -a / slope if slope != 0 else math.nan
        if math.isfinite(raw) and not lo <= raw <= hi:
            side = "below" if raw < lo else "above"
            notes.insert(0, f"fit crosses 0.5 {side} the tried range; clipped to {x0:g}")
        failed_max, grokked_min = x[y == 0].max(), x[y == 1].min()
        if failed_max < grokked_min:
            notes.insert(
                0,
                f"perfectly separated: critical {label} in ({failed_max:g}, {grokked_min:g}]",
            )
        if slope < 0:
            notes.insert(0, "grokking gets rarer with more data (negative slope)")
        if n_bootstrap > 0:
            ci_low, ci_high = bootstrap_logistic(x, y, n_bootstrap, seed).interval(0.95)
            ci_low, ci_high = _resolution_floor(x, x0, ci_low, ci_high)
            fit_p = logistic_fit_p(x, y, n_sims=max(200, n_bootstrap // 2), seed=seed)
            if fit_p < FIT_P_WARN:
                notes.insert(
                    0,
                    f"the logistic does not fit (goodness of fit p = {fit_p:.3g}): grokking is not "
                    f"monotone in {label} here (it comes and goes, or the curve has another shape); "
                    "the crossing is not a reliable boundary",
                )

    if "stop_reason" in trials.columns:
        dominated = trials[trials["stop_reason"] == "dominated"]
        if len(dominated):
            notes.append(
                f"{len(dominated)} runs at {label} <= {dominated[size_col].max():g} stopped early "
                "below larger sizes that did not grok (monotone_stop)"
            )

    peak_x = math.nan
    empirical = grok_probability_by_size(trials, size_col)
    steps = empirical["mean_grokking_step"]
    if steps.notna().any():
        peak_x = float(empirical.loc[steps.idxmax(), size_col])

    return {
        "group": group,
        "critical_fraction": float(to_fraction(x0)),
        "ci_low": float(to_fraction(ci_low)),
        "ci_high": float(to_fraction(ci_high)),
        "critical_size": to_size(x0),
        "peak_fraction": float(to_fraction(peak_x)),
        "peak_size": to_size(peak_x),
        "n_trials": n_trials,
        "n_grokked": n_grokked,
        "budget_steps": budget_steps,
        "slope": float(slope),
        "fit_p": float(fit_p),
        "note": "; ".join(notes),
    }


def critical_data_size(
    table: pd.DataFrame,
    size_col: str = "train_fraction",
    group_cols: Sequence[str] = (),
    n_bootstrap: int = 1000,
    seed: int = 0,
    n_bins: int = 3,
    binned: Mapping[str, Bins] | None = None,
) -> list[dict]:
    """Critical data size (P(grok within budget) = 0.5) per group of trials.

    ``table`` has one row per trial with ``size_col`` (``train_fraction`` in (0, 1], or
    ``train_size`` = absolute number of training examples), ``grokked`` (bool; missing =
    failed trial, ignored), ``grokking_step``, ``steps`` (budget) and ``n_total``.  Trials
    are grouped by ``group_cols`` (continuous ones in ``binned``) as in :func:`split_groups`.

    One dict per group, sorted by group key, with keys :data:`ESTIMATE_KEYS`.  ``ci_low``
    / ``ci_high`` are always in fraction units; sizes are ints (NaN when undefined);
    ``slope`` is the fitted ``b`` in units of ``1/size_col``; ``peak_*`` is the size with
    the largest mean steps-to-grok among sizes with at least one grokked trial (ties go to
    the smaller size).  ``note`` is ``""`` unless something needs saying (nothing to
    estimate, clipping, perfect separation, ...).
    """
    return [
        _estimate_group(group, trials, size_col, n_bootstrap, seed)
        for group, trials in split_groups(table, group_cols, n_bins, size_col, binned)
    ]


def critical_by_budget(
    table: pd.DataFrame,
    size_col: str = "train_fraction",
    group_cols: Sequence[str] = (),
    budgets: Sequence[int] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    binned: Mapping[str, Bins] | None = None,
) -> list[dict[str, Any]]:
    """The critical size at every budget up to the study's, from the same runs (free).

    A run grokked within ``b`` steps when it grokked and its grokking step is at most ``b``; so
    P(grok within b) and its crossing are known for every ``b`` up to the budget the runs were
    trained for. ``budgets`` defaults to eight, evenly up to the largest ``steps`` of the table.
    One row per budget and group: ``budget``, ``group`` and the keys of :func:`critical_data_size`
    (each budget's estimate is fitted and bootstrapped as the study's own)."""
    if "grokking_step" not in table.columns or "grokked" not in table.columns or table.empty:
        return []
    if budgets is None:
        top = pd.to_numeric(table.get("steps"), errors="coerce").max() if "steps" in table else math.nan
        if not math.isfinite(top) or top <= 0:
            return []
        budgets = sorted({round(top * i / 8) for i in range(1, 9)})
    steps = pd.to_numeric(table["grokking_step"], errors="coerce")
    rows = []
    for budget in budgets:
        within = table.copy()
        known = within["grokked"].notna()
        within.loc[known, "grokked"] = within.loc[known, "grokked"].astype(bool) & (steps[known] <= budget)
        within["steps"] = budget
        for estimate in critical_data_size(within, size_col, group_cols, n_bootstrap, seed, binned=binned):
            rows.append({"budget": int(budget), **estimate})
    return rows


# --------------------------------------------------------------------------------------
# Text table
# --------------------------------------------------------------------------------------


def _fmt_float(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _fmt_int(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{int(value)}"


def _fmt_group(group: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) if group else "all"


def format_estimates(estimates: list[dict]) -> str:
    """Fixed-width text table of :func:`critical_data_size` results, one line per group; a note
    (why an estimate is missing or clipped) is a numbered footnote under the table, wrapped, so
    that the table fits 100 columns."""
    import textwrap

    if not estimates:
        return "no completed trials: nothing to estimate"
    header = ("group", "critical fraction [95% CI]", "size", "peak", "grokked/runs", "budget", "note")
    rows, notes = [], []
    for e in estimates:
        ci = f"[{_fmt_float(e['ci_low'])}, {_fmt_float(e['ci_high'])}]"
        if e["note"]:
            notes.append(e["note"])
        rows.append(
            (
                _fmt_group(e["group"]),
                f"{_fmt_float(e['critical_fraction'])} {ci}",
                _fmt_int(e["critical_size"]),
                _fmt_float(e["peak_fraction"]),
                f"{e['n_grokked']}/{e['n_trials']}",
                f"{e['budget_steps']}",
                f"({len(notes)})" if e["note"] else "",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  ----"
    table = "\n".join([line(header), rule, *(line(r) for r in rows)])
    if not notes:
        return table
    footnotes = [
        textwrap.fill(note, width=100, initial_indent=f"({i}) ", subsequent_indent="    ")
        for i, note in enumerate(notes, start=1)
    ]
    return table + "\n\n" + "\n".join(footnotes)
