"""The boundary search's model: posterior, expected information, where next, the grid it replaces,
and the whole search against simulated grokking with a known critical size."""

import math

import numpy as np
import pandas as pd
import pytest

from grokray.analysis.boundary import (
    BoundaryPosterior,
    choose,
    gap_fill,
    grid_equivalent,
    grok_steps_predictor,
    outcome_branches,
    spend_by_distance,
)
from grokray.analysis.critical import critical_data_size


def _binary_entropy(u: float) -> float:
    return -(u * math.log(u) + (1 - u) * math.log(1 - u))


def test_separated_runs_put_the_posterior_between_the_last_failure_and_the_first_success():
    post = BoundaryPosterior(0.0, 1.0).update([0.2, 0.3, 0.4, 0.6, 0.7, 0.8], [0, 0, 0, 1, 1, 1])
    low, high = post.interval()
    assert 0.3 < low < 0.5 < high < 0.7
    assert post.median() == pytest.approx(0.5, abs=0.01)  # symmetric data, symmetric posterior
    assert post.p_grok(0.9) > 0.95 and post.p_grok(0.1) < 0.05


def test_information_of_one_run_is_the_entropy_of_its_outcome_for_a_sharp_threshold():
    """A threshold every seed shares (the steepest slope only): a run at x groks iff x0 < x, so
    under a uniform prior its outcome is Bernoulli((x - low)/(high - low)) and the information it
    gives about x0 is that outcome's entropy: H(0.5) = log 2 at the middle, H(0.25) at a quarter."""
    post = BoundaryPosterior(0.0, 1.0, n_x0=2001)
    post.k = np.array([1e5])  # one slope, a step far narrower than the x0 grid's cells
    post.log_post = np.zeros((post.x0.size, 1))
    info = post.information([0.5, 0.25, 0.9], seeds=1)
    assert info[0] == pytest.approx(math.log(2), rel=0.01)
    assert info[1] == pytest.approx(_binary_entropy(0.25), rel=0.01)
    assert info[2] == pytest.approx(_binary_entropy(0.9), rel=0.02)
    # two seeds of one config at a sharp threshold say no more than one: they agree
    assert post.information([0.5], seeds=2)[0] == pytest.approx(math.log(2), rel=0.01)


def test_pending_outcomes_branch_with_their_predictive_weights():
    post = BoundaryPosterior(0.0, 1.0)
    branches = outcome_branches(post, [0.5], seeds=2)
    assert len(branches) == 3  # 0, 1 or 2 of the seeds grok
    weights = [w for w, _ in branches]
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] == pytest.approx(weights[2], rel=1e-6)  # symmetric about the middle
    assert weights[1] < weights[0]  # most slopes are steep: the two seeds mostly agree


def test_with_equal_costs_the_next_size_is_the_median_and_cheap_successes_pull_it_up():
    post = BoundaryPosterior(0.0, 1.0)
    cands = np.round(np.linspace(0, 1, 101), 2)
    budget = 1000
    equal = grok_steps_predictor([0.5], [budget], budget)  # a success costs what a failure does
    assert choose(post, cands, 1, budget, equal) == pytest.approx(0.5, abs=0.011)
    cheap = grok_steps_predictor([0.5], [50], budget)  # successes stop early: approach from above
    assert choose(post, cands, 1, budget, cheap) > 0.6
    # a config already pending at the median: the next one splits a half, not the median again
    assert abs(choose(post, cands, 1, budget, equal, pending=[0.5]) - 0.5) > 0.1


def test_grokking_cost_rises_to_the_budget_at_the_critical_size_below_the_smallest_success():
    """Grokked at 0.6 in 1000 steps and at 0.8 in 400 (two runs: 300 and 500), budget 5000: the
    cost interpolates between them, stays 400 above 0.8, and with the posterior median at 0.5 it
    rises linearly to 5000 there (0.55: halfway, 3000) and stays 5000 below. A median at or above
    the smallest success says nothing of the stretch below it: the whole budget there."""
    sizes, steps = [0.6, 0.8, 0.8], [1000, 300, 500]
    x, y = grok_steps_predictor(sizes, steps, 5000, critical=0.5)
    assert np.interp([0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9], x, y).tolist() == pytest.approx(
        [5000, 5000, 3000, 1000, 700, 400, 400]
    )
    for critical in (None, 0.6, 0.65, math.nan):
        x, y = grok_steps_predictor(sizes, steps, 5000, critical=critical)
        assert np.interp([0.55, 0.5999, 0.7], x, y).tolist() == pytest.approx([5000, 5000, 700], rel=1e-3)
    assert grok_steps_predictor([], [], 5000, critical=0.5)[1].tolist() == [2500]


def test_grid_equivalent_counts_the_grid_largest_first_with_the_monotone_rule():
    """Runs: failed at 0.5, grokked at 0.6 in 1000 steps: the fit crosses ½ between them. A grid
    of spacing 0.1 over [0.1, 0.9] with one seed trains 0.9 … 0.6 (four successes, 1000 steps
    each: the one grokking step known), 0.5 and 0.4 to the budget (5000 each), and stops 0.3 …
    0.1 untrained below two failures: 4,000 + 10,000 model-steps."""
    out = grid_equivalent([0.5, 0.6], [False, True], [0.6], [1000], 0.1, 0.9, 0.1, 1, 5000, monotone=2)
    assert out["grid_points"] == 9
    assert out["grid_model_steps"] == 14_000
    assert out["grid_model_steps_no_early_stop"] == 45_000
    # no monotone rule: every size below the boundary trains its budget
    no_rule = grid_equivalent([0.5, 0.6], [0, 1], [0.6], [1000], 0.1, 0.9, 0.1, 1, 5000, monotone=0)
    assert no_rule["grid_model_steps"] == 29_000


def _simulated_search(seed: int, budget_total: int = 42_500, sd: float = 0.01):
    """The boundary search (two configs in flight, as a study runs it) against simulated grokking:
    each seed's threshold ~ N(0.505, sd), a run groks iff its fraction is above it, at a step that
    grows toward the threshold; a failure spends the 5000-step budget."""
    from grokray.tune.boundary import GroupState

    rng = np.random.default_rng(seed)
    cands = list(np.round(np.arange(0.1, 0.9001, 0.005), 3))
    budget, state = 5000, GroupState((), {}, 5000)
    while state.spent + 2 * budget <= budget_total:
        pending = [cands[-1]] if not state.sizes else []
        while len(pending) < 2:
            posterior = state.posterior(0.1, 0.9)
            predictor = grok_steps_predictor(state.grok_sizes, state.grok_steps, budget, posterior.median())
            pending.append(choose(posterior, cands, 1, budget, predictor, pending))
        for f in pending:
            t = rng.normal(0.505, sd)
            grok = f > t
            step = min(budget, 300 + 200 / (f - t + 0.045)) if grok else None
            state.add(f, [(grok, step or budget, step)])
    table = pd.DataFrame({"train_fraction": state.sizes, "grokked": state.grokked, "steps": budget})
    [estimate] = critical_data_size(table, n_bootstrap=300)
    return estimate, state


def test_the_search_finds_a_known_critical_fraction_within_the_grid_spend():
    """Ten simulated studies with the default study's spend (42,500 model-steps): nine or more put
    the critical fraction within ±0.02 of the true 0.505 and none farther than 0.025 (with the
    slope prior that covers in noisy bands, one of the ten lands at 0.0204), its 95 % interval
    covers it in most, and the interval is at most half a 0.05-grid's in the median."""
    results = [_simulated_search(seed) for seed in range(10)]
    errors = [abs(e["critical_fraction"] - 0.505) for e, _ in results]
    covered = sum(e["ci_low"] <= 0.505 <= e["ci_high"] for e, _ in results)
    widths = [e["ci_high"] - e["ci_low"] for e, _ in results]
    assert sum(error <= 0.02 for error in errors) >= 9 and max(errors) <= 0.025, errors
    assert covered >= 8, covered
    assert float(np.median(widths)) <= 0.035, widths
    assert all(state.spent <= 42_500 for _, state in results)
    # the runs gather at the boundary: most within ±0.05 of it
    near = [np.mean(np.abs(np.array(state.sizes) - 0.505) <= 0.05) for _, state in results]
    assert float(np.median(near)) >= 0.5


def test_spend_by_distance_counts_runs_and_steps_per_band_hand_computed():
    """Critical 0.5, precision 0.02: bands |d| <= 0.02, <= 0.05, farther (edges inclusive)."""
    bands = spend_by_distance(
        sizes=[0.5, 0.52, 0.45, 0.54, 0.9, 0.1, 0.3],
        grokked=[True, True, False, True, True, False, False],
        steps=[3000, 2000, 5000, 1500, 400, 5000, 5000],
        critical=0.5,
        precision=0.02,
    )
    assert [b["band"] for b in bands] == ["within 0.02", "within 0.05", "farther than 0.05"]
    assert [b["runs"] for b in bands] == [2, 2, 3]  # 0.5, 0.52 | 0.45, 0.54 | 0.9, 0.1, 0.3
    assert [b["grokked"] for b in bands] == [2, 1, 1]
    assert [b["model_steps"] for b in bands] == [5000, 6500, 10400]
    assert spend_by_distance([0.5], [True], [10], math.nan, 0.02) == []


def test_the_phase_boundary_figure_draws_every_group_and_the_runs_never_trained(tmp_path):
    from PIL import Image

    from grokray.analysis.plots import plot_phase_boundary

    rows = []
    for wd, f0 in ((0.1, 0.75), (0.3, 0.6), (1.0, 0.5)):
        for f in np.round(np.arange(0.3, 0.95, 0.05), 2):
            trained = f > f0 - 0.15  # the monotone rule stops the sizes far below the boundary
            rows.append({"weight_decay": wd, "train_fraction": f, "grokked": bool(f > f0),
                         "steps_run": 1000 if f > f0 else (5000 if trained else 0)})  # fmt: skip
    table = pd.DataFrame(rows)
    estimates = critical_data_size(table, group_cols=["weight_decay"], n_bootstrap=50)
    assert [round(e["critical_fraction"], 3) for e in estimates] == pytest.approx(
        [0.775, 0.625, 0.525], abs=0.03
    )
    path = plot_phase_boundary(table, estimates, tmp_path / "phase.png", size_col="train_fraction",
                               dim="weight_decay")  # fmt: skip
    with Image.open(path) as image:
        assert image.size[0] > 300 and image.size[1] > 200


CANDIDATES = [round(0.15 + 0.005 * i, 3) for i in range(161)]


def test_a_gap_above_a_noisy_boundary_gets_a_cheap_run_in_its_middle():
    """Weight decay 0.3's runs as the search had them (a seed grokked at 0.575, another failed at
    0.6): the stretch from 0.63 to 0.95 was never tried, and the bootstrap's interval reached
    0.797 into it; the posterior is sure a run at 0.79 groks, so that is the next run."""
    sizes = [0.28, 0.395, 0.515, 0.53, 0.545, 0.56, 0.565, 0.575, 0.575, 0.6, 0.63, 0.95]
    grokked = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1]
    post = BoundaryPosterior(0.15, 0.95).update(sizes, grokked)
    assert post.interval()[1] > 0.63  # the interval reaches into the gap
    assert gap_fill(post, sizes, CANDIDATES, 0.08) == pytest.approx(0.79)
    # once 0.79 grokked, the posterior is no longer sure of 0.71 (0.88 < 0.9): the information
    # rule places the next run
    after = BoundaryPosterior(0.15, 0.95).update([*sizes, 0.79], [*grokked, 1])
    assert after.p_grok(0.71) < 0.9 and gap_fill(after, [*sizes, 0.79], CANDIDATES, 0.08) is None
    # no gap wider than 0.08 above the median: nothing to fill
    dense = [*sizes, 0.79, 0.71, 0.67, 0.75, 0.83, 0.87, 0.91]
    assert gap_fill(post, dense, CANDIDATES, 0.08) is None


def test_a_gap_above_the_interval_or_where_a_run_may_fail_is_left_alone():
    # separated and sharp: the interval ends below 0.58, the gap (0.58, 0.9) does not matter
    sizes = [0.3, 0.4, 0.45, 0.48, 0.5, 0.51, 0.52, 0.53, 0.55, 0.6, 0.9]
    grokked = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    post = BoundaryPosterior(0.1, 0.9).update(sizes, grokked)
    assert post.interval()[1] < 0.6
    assert gap_fill(post, sizes, CANDIDATES, 0.08) is None
    # only one run, far above: the middle of the gap is not sure to grok
    wide = BoundaryPosterior(0.1, 0.9).update([0.5, 0.9], [0, 1])
    assert wide.p_grok(0.7) < 0.9 and gap_fill(wide, [0.5, 0.9], CANDIDATES, 0.08) is None
