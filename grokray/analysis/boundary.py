"""The boundary search's model: a posterior over the logistic P(grok within the budget) =
sigmoid(k·(x − x0)) of one group, and where to train next.

The posterior lives on a grid: ``x0`` on ``X0_POINTS`` points spanning the searched size range,
``k`` on ``SLOPES`` (log-spaced, in units of one over the range: from a curve that rises from
0.12 to 0.88 over 40 % of the range to one that rises over 0.4 % of it, about three training
examples of the p = 31 studies' range and a sixth of their precision), under a prior uniform in
``x0`` and in ``log k``.
Each run is one Bernoulli observation (grokked or not) at its size. The steep slopes describe a
threshold that every seed shares; the flat ones absorb seed-to-seed noise, so one surprising seed
widens the posterior instead of breaking it. The steepest slope was a step a thousandth of the
range wide until ``bench.coverage`` showed what that costs: slopes sharper than anything the runs
can resolve held much of the prior, so single-seed runs of a noisy band that happened to separate
read as a threshold every seed shares, and the posterior interval covered the critical size in
0.80 of the simulated studies at 2,500 steps (0.93 with the steepest slope at 0.4 % of the range).

Where next (``choose``): the size that gives the most expected information about ``x0`` (the
mutual information of ``x0`` and the outcomes of a config's seeds, with ``k`` marginalized out)
per expected model-step it costs. A run that fails spends the whole budget, one that groks stops
at its grokking step (predicted from the runs that grokked so far), so the search approaches the
boundary from above, as the grid's largest-first order does, and spends its failures close below
it. Configs proposed but not yet trained (the rest of a pack, packs still running) count by their
possible outcomes: the information and cost of a new config are their expectations over every
outcome of the pending ones (``outcome_branches``), so a pack spreads along the boundary instead
of repeating one size.

Why not a package: questplus (QUEST+) chooses one stimulus at a time by the expected entropy of
the joint posterior (threshold, slope, lapse) and knows nothing of costs or batches; psignifit
fits psychometric functions but does not design; AEPsych (on BoTorch/GPyTorch) runs GP-classifier
level-set designs as a client-server framework, the tool for a boundary over continuous inputs,
much heavier than one 1-D search per grid value. The grid posterior is forty lines of numpy; the
reported estimate stays ``grokray.analysis.critical`` (logistic fit, bootstrap), so a boundary
study is read as a grid study is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

X0_POINTS = 321
SLOPES = np.geomspace(10.0, 1000.0, 36)  # k·(high − low): a rise over 40 % of the range ... over 0.4 %


def _log_sigmoid(eta: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -eta)


class BoundaryPosterior:
    """The posterior over (x0, k) of one group's runs on ``[low, high]``."""

    def __init__(self, low: float, high: float, n_x0: int = X0_POINTS) -> None:
        if not high > low:
            raise ValueError(f"need high > low, got [{low}, {high}]")
        self.low, self.high = float(low), float(high)
        self.x0 = np.linspace(self.low, self.high, n_x0)
        self.k = SLOPES / (self.high - self.low)
        self.log_post = np.zeros((self.x0.size, self.k.size))  # uniform in x0 and log k

    def copy(self) -> BoundaryPosterior:
        other = BoundaryPosterior.__new__(BoundaryPosterior)
        other.low, other.high, other.x0, other.k = self.low, self.high, self.x0, self.k
        other.log_post = self.log_post.copy()
        return other

    def _p_grok(self, x: float) -> np.ndarray:
        """P(grok at x | x0, k) on the grid."""
        return np.exp(_log_sigmoid(self.k[None, :] * (x - self.x0[:, None])))

    def update(self, sizes: Sequence[float], grokked: Sequence[bool | float]) -> BoundaryPosterior:
        """Add runs (a size and an outcome each). Returns self."""
        for x, y in zip(sizes, grokked, strict=True):
            eta = self.k[None, :] * (float(x) - self.x0[:, None])
            y = float(y)
            self.log_post += y * _log_sigmoid(eta) + (1.0 - y) * _log_sigmoid(-eta)
        self.log_post -= self.log_post.max()
        return self

    def joint(self) -> np.ndarray:
        weights = np.exp(self.log_post - self.log_post.max())
        return weights / weights.sum()

    def marginal(self) -> np.ndarray:
        """P(x0) on ``self.x0``."""
        return self.joint().sum(axis=1)

    def quantile(self, level: float) -> float:
        """The ``level`` quantile of x0 (linear within a grid cell)."""
        cdf = np.cumsum(self.marginal())
        return float(np.interp(level, cdf, self.x0))

    def median(self) -> float:
        return self.quantile(0.5)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        tail = (1.0 - level) / 2.0
        return self.quantile(tail), self.quantile(1.0 - tail)

    def width(self, level: float = 0.95) -> float:
        low, high = self.interval(level)
        return high - low

    def p_grok(self, x: float) -> float:
        """The posterior predictive P(a run at x groks)."""
        return float((self.joint() * self._p_grok(x)).sum())

    def information(self, candidates: Sequence[float], seeds: int = 1) -> np.ndarray:
        """Expected information (nats) about x0 from ``seeds`` runs at each candidate size:
        I(x0; Y) = H(Y) − E_x0 H(Y | x0), Y the number of seeds that grok, k marginalized."""
        joint = self.joint()
        px0 = joint.sum(axis=1)
        cond_k = joint / np.where(px0 > 0, px0, 1.0)[:, None]  # P(k | x0)
        counts = np.arange(seeds + 1)
        binom = np.array([math.comb(seeds, int(c)) for c in counts], dtype=float)
        out = np.empty(len(candidates))
        for i, x in enumerate(candidates):
            p = self._p_grok(float(x))  # (X0, K)
            # P(Y = c | x0) = sum_k P(k|x0) C(s,c) p^c (1-p)^(s-c)
            like = binom[None, None, :] * p[..., None] ** counts * (1.0 - p[..., None]) ** (seeds - counts)
            given_x0 = np.einsum("ak,akc->ac", cond_k, like)
            marginal = px0 @ given_x0
            out[i] = _entropy(marginal) - float(px0 @ _entropy_rows(given_x0))
        return out


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


def grok_steps_predictor(
    sizes: Sequence[float], steps: Sequence[float], budget: float, critical: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, mean grokking steps) of the grokked runs, sorted: ``np.interp`` over them predicts
    what a run that groks at another size costs: flat above the largest; half the budget before
    any run has grokked. Below the smallest, grokking comes later the nearer the boundary, and at
    the critical size itself half the runs grok within the budget, so the median grokking step
    there is the budget: with the ``critical`` size given (the posterior's median) below the
    smallest size that grokked, the cost rises linearly from that size's steps to the whole
    budget at ``critical``; without it, the whole budget below the smallest size."""
    if not len(sizes):
        return np.array([0.0]), np.array([0.5 * budget])
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(steps, dtype=float)
    order = np.unique(x)
    means = np.array([y[x == v].mean() for v in order])
    if critical is not None and math.isfinite(critical) and critical < order[0]:
        return np.concatenate([[float(critical)], order]), np.concatenate([[float(budget)], means])
    below = order[0] - 1e-9 * max(1.0, abs(order[0]))
    return np.concatenate([[below], order]), np.concatenate([[float(budget)], means])


def gap_fill(
    posterior: BoundaryPosterior,
    tried: Sequence[float],
    candidates: Sequence[float],
    max_gap: float,
    sure: float = 0.9,
) -> float | None:
    """A cheap run that bounds the reported interval from above: the candidate nearest the middle
    of the lowest gap wider than ``max_gap`` between the sizes ``tried`` (trained or in flight)
    above the posterior median that begins inside the 95 % posterior interval, where a run is
    ``sure`` to grok (so it stops early). The reported estimate is a logistic fit with a
    bootstrap, and a resample in which the sizes below such a gap all fail puts the critical size
    in the gap's middle: an untried stretch just above a noisy boundary widens the interval. None
    when there is no such gap."""
    median = posterior.median()
    _, upper = posterior.interval()
    points = sorted({float(x) for x in tried if float(x) >= median})
    best: tuple[float, float] | None = None
    for a, b in itertools.pairwise(points):
        if a < upper and b - a > max_gap:
            best = (a, b)
            break
    if best is None:
        return None
    a, b = best
    inside = [float(c) for c in candidates if a < float(c) < b]
    if not inside:
        return None
    mid = min(inside, key=lambda c: abs(c - 0.5 * (a + b)))
    return mid if posterior.p_grok(mid) >= sure else None


def choose(
    posterior: BoundaryPosterior,
    candidates: Sequence[float],
    seeds: int,
    budget: float,
    grok_steps: tuple[np.ndarray, np.ndarray],
    pending: Sequence[float] = (),
) -> float:
    """The candidate size with the most expected information about x0 per expected model-step,
    the ``pending`` sizes (proposed, not yet trained) counted at their likeliest outcome."""
    cand = np.asarray(candidates, dtype=float)
    step_x, step_y = grok_steps
    grok_cost = np.interp(cand, step_x, step_y)
    info = np.zeros(cand.size)
    cost = np.zeros(cand.size)
    for weight, branch in outcome_branches(posterior, pending, seeds):
        info += weight * branch.information(cand, seeds)
        p = np.array([branch.p_grok(x) for x in cand])
        cost += weight * seeds * (p * grok_cost + (1.0 - p) * budget)
    score = info / np.maximum(cost, 1.0)
    return float(cand[int(np.argmax(score))])


MAX_BRANCHES = 64


def outcome_branches(
    posterior: BoundaryPosterior, pending: Sequence[float], seeds: int
) -> list[tuple[float, BoundaryPosterior]]:
    """The posteriors after the ``pending`` configs' outcomes, each with its predictive weight:
    every count of grokked seeds at every pending size (the information of a new config is its
    expectation over them). Past ``MAX_BRANCHES`` combinations, the likeliest count stands in
    for each further pending config."""
    branches = [(1.0, posterior)]
    for x in pending:
        grow = len(branches) * (seeds + 1) <= MAX_BRANCHES
        out = []
        for weight, branch in branches:
            p = branch._p_grok(float(x))
            joint = branch.joint()
            probs = np.array(
                [
                    math.comb(seeds, c) * float((joint * p**c * (1.0 - p) ** (seeds - c)).sum())
                    for c in range(seeds + 1)
                ]
            )
            counts = range(seeds + 1) if grow else [int(np.argmax(probs))]
            for c in counts:
                w = weight * (probs[c] if grow else 1.0)
                if w < 1e-9:
                    continue
                child = branch.copy().update([x] * seeds, [1.0] * c + [0.0] * (seeds - c))
                out.append((w, child))
        total = sum(w for w, _ in out)
        branches = [(w / total, b) for w, b in out]
    return branches


def grid_equivalent(
    sizes: Sequence[float],
    grokked: Sequence[bool],
    grok_sizes: Sequence[float],
    grok_steps: Sequence[float],
    low: float,
    high: float,
    spacing: float,
    seeds: int,
    budget: int,
    monotone: int = 2,
) -> dict[str, float]:
    """What a grid of ``spacing`` over ``[low, high]`` with ``seeds`` seeds would have spent to
    reach the same resolution (a grid's interval is never narrower than its spacing), estimated
    from these runs: visited largest first, as the grid sampler does with the monotone rule; a
    size the fitted logistic puts above ½ groks at the grokking step interpolated from the runs
    that grokked, one below ½ runs its whole budget, and below ``monotone`` such sizes the rest
    are not trained (dominated). Also the grid's cost without early stopping."""
    from grokray.analysis.critical import fit_logistic

    if not spacing > 0 or not math.isfinite(spacing):
        return {}
    points = np.arange(high, low - 1e-9 * (high - low), -spacing)
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(grokked, dtype=float)
    if y.size and 0 < y.sum() < y.size:
        a, b = fit_logistic(x, y)
        p = 1.0 / (1.0 + np.exp(-(a + b * points)))
    else:
        p = np.full(points.size, float(y.mean()) if y.size else 0.5)
    step_x, step_y = grok_steps_predictor(grok_sizes, grok_steps, budget)
    cost, failed = 0.0, 0
    for point, prob in zip(points, p, strict=True):
        if prob >= 0.5:
            cost += seeds * float(np.interp(point, step_x, step_y))
        else:
            failed += 1
            if not monotone or failed <= monotone:
                cost += seeds * budget
    return {
        "grid_spacing": float(spacing),
        "grid_points": int(points.size),
        "grid_seeds": int(seeds),
        "grid_model_steps": float(round(cost)),
        "grid_model_steps_no_early_stop": float(points.size * seeds * budget),
    }


SPEND_BANDS = (1.0, 2.5)  # the report's distance bands, in units of the study's precision


def spend_by_distance(
    sizes: Sequence[float],
    grokked: Sequence[bool],
    steps: Sequence[int],
    critical: float,
    precision: float,
) -> list[dict[str, Any]]:
    """Where a study spent its runs: per band of distance from the estimated critical size
    (within ``precision``, within 2.5 × ``precision``, farther), the runs, how many grokked and
    the model-steps they trained. Empty when the estimate or the precision is not finite."""
    if not (math.isfinite(critical) and precision > 0 and math.isfinite(precision)):
        return []
    edges = [precision * k for k in SPEND_BANDS]
    labels = [f"within {edges[0]:.3g}", f"within {edges[1]:.3g}", f"farther than {edges[1]:.3g}"]
    bands = [{"band": label, "runs": 0, "grokked": 0, "model_steps": 0} for label in labels]
    for size, grok, spent in zip(sizes, grokked, steps, strict=True):
        distance = abs(float(size) - critical)
        index = next((i for i, edge in enumerate(edges) if distance <= edge * (1 + 1e-9)), len(edges))
        bands[index]["runs"] += 1
        bands[index]["grokked"] += int(bool(grok))
        bands[index]["model_steps"] += int(spent)
    return bands
