"""How often the reported 95 % intervals of the critical fraction cover the truth (issue 15).

Run ``python -m bench.coverage [--reps N] [--json PATH]`` (also ``make bench ARGS=--coverage``).
The boundary search's target is an interval half as wide as the grid's; a width means little
unless the interval covers the critical fraction about 95 % of the time. On real runs the truth is
unknown, so this bench draws simulated runs from a model whose critical fraction is known, and
puts them through the code a study runs: the grid's order and monotone rule, the boundary search
(``grokray.tune.boundary.BoundarySearch`` of ``studies/critical_size_boundary.py``) and the
reported estimate (``grokray.analysis.critical.critical_data_size``: the logistic fit and
bootstrap both designs report).

The model of a run (seed-to-seed spread is the noisy band): each run draws a threshold
t ~ Normal(mu, sd); a run at fraction f > t groks at step 250 + 60 / (f - t + 0.01) (later the
nearer the boundary: about 400 steps 0.4 above it, 800 at 0.1, past 5,000 just above it, as the
default study's runs do), and one that would grok after the budget B fails, spending all of it.
So a run groks within B when t <= f - (60 / (B - 250) - 0.01): P(grok within B) at f is
Phi((f - f*) / sd) with the true critical fraction f* = mu + 60 / (B - 250) - 0.01.

Designs, each rep drawing fresh runs:
- **grid**: ``studies/critical_size.py``'s 17 fractions 0.10 ... 0.90 × 2 seeds, largest first, the
  monotone rule (k = 2: a size below two larger all-failed sizes, themselves below the smallest
  size that grokked, is dominated and trains 0 steps, counted as not grokked, as in a study);
- **boundary**: the boundary search with ``max_steps_total`` = the grid's model-steps in the same
  rep, up to 2 configs in flight (told in the order proposed).

For each: the share of reps whose reported 95 % interval holds f*, and the median width. A
boundary study reports the hull of its bootstrap's interval and its posterior's
(``grokray.tune.finish.widen_to_posterior``); the two are also shown alone.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
GRID = REPO / "studies" / "critical_size.py"
BOUNDARY = REPO / "studies" / "critical_size_boundary.py"
N_TOTAL = 31 * 31  # the studies' pairs (p = 31)
MONOTONE = 2
IN_FLIGHT = 2
# (mu, sd, budget): sharp like the default study; noisy bands (wider spread, a smaller budget)
SETTINGS = [(0.50, 0.01, 5000), (0.56, 0.02, 5000), (0.56, 0.04, 5000), (0.56, 0.06, 5000),
            (0.48, 0.03, 2500)]  # fmt: skip


GROK_A, GROK_D = 60.0, 0.01  # a run groks at step 250 + GROK_A / (f - t + GROK_D)


def true_critical(mu: float, budget: int) -> float:
    """Where P(grok within ``budget``) = 1/2 (the budget binds: GROK_A / (budget - 250) > GROK_D)."""
    return mu + max(0.0, GROK_A / (budget - 250) - GROK_D)


def simulate_run(
    f: float, mu: float, sd: float, budget: int, rng: np.random.Generator
) -> tuple[bool, int, float]:
    """(grokked, steps run, grokking step or NaN) of one run at fraction ``f``."""
    t = rng.normal(mu, sd)
    if f > t:
        step = 250.0 + GROK_A / (f - t + GROK_D)
        if step <= budget:
            return True, math.ceil(step), step
    return False, budget, math.nan


def _row(
    f: float, outcome: tuple[bool, int, float], budget: int, reason: str | None = None
) -> dict[str, Any]:
    grokked, steps_run, step = outcome
    return {"train_fraction": f, "grokked": grokked, "grokking_step": step, "steps_run": steps_run,
            "steps": budget, "n_total": N_TOTAL,
            "stop_reason": reason or ("grokked" if grokked else "budget")}  # fmt: skip


def grid_design(mu: float, sd: float, budget: int, rng: np.random.Generator) -> pd.DataFrame:
    """The shipped grid, largest first, 2 seeds a size, with the monotone rule."""
    sizes = [round(0.1 + 0.05 * i, 2) for i in range(17)][::-1]
    failed: list[float] = []
    smallest_grokked = math.inf
    rows = []
    for f in sizes:
        if sum(f < g < smallest_grokked for g in failed) >= MONOTONE:
            rows += [_row(f, (False, 0, math.nan), budget, "dominated")] * 2
            continue
        outcomes = [simulate_run(f, mu, sd, budget, rng) for _ in range(2)]
        rows += [_row(f, o, budget) for o in outcomes]
        if any(o[0] for o in outcomes):
            smallest_grokked = min(smallest_grokked, f)
        else:
            failed.append(f)
    return pd.DataFrame(rows)


def boundary_study(budget: int, max_steps: int) -> Any:
    from grokray.study import load_study

    return load_study(BOUNDARY, [f"steps={budget}", f"max_steps_total={max_steps}"])


def boundary_design(
    mu: float, sd: float, budget: int, max_steps: int, rng: np.random.Generator
) -> pd.DataFrame:
    """The boundary search's runs, at most ``max_steps`` model-steps, as a trial table."""
    from grokray.tune.boundary import BoundarySearch

    search = BoundarySearch(boundary_study(budget, max_steps))
    states = search.states()
    state = next(iter(states.values()))
    queue: list[float] = []
    rows = []
    while True:
        proposal = search.propose(states) if len(queue) < IN_FLIGHT else None
        if proposal is not None:
            size = float(proposal[search.size_key])
            state.pending.append(size)
            queue.append(size)
            continue
        if not queue:
            break
        size = queue.pop(0)
        state.pending.remove(size)
        outcome = simulate_run(size, mu, sd, budget, rng)
        state.add(size, [outcome])
        rows.append({**_row(size, outcome, budget), "tune_trial_id": f"t{len(rows)}", "replica": 0})
    return pd.DataFrame(rows)


def _interval(estimate: dict[str, Any], low: str = "ci_low", high: str = "ci_high") -> tuple[float, float]:
    return float(estimate.get(low, math.nan)), float(estimate.get(high, math.nan))


def run_setting(mu: float, sd: float, budget: int, reps: int, seed: int = 0) -> dict[str, Any]:
    """``reps`` simulated studies of each design; coverage and median width of each interval."""
    from grokray.analysis.boundary import BoundaryPosterior
    from grokray.analysis.critical import critical_data_size
    from grokray.tune.finish import widen_to_posterior

    truth = true_critical(mu, budget)
    base = [seed, int(mu * 1000), int(sd * 1000), budget]
    names = ("grid", "boundary", "bootstrap", "posterior")
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    steps: dict[str, list[int]] = {"grid": [], "boundary": []}
    for rep in range(reps):
        # each design its own stream: the grid's runs (and so the boundary's allowance) are the
        # same whatever the boundary search does, so two versions of the search compare rep by rep
        grid = grid_design(mu, sd, budget, np.random.default_rng([*base, rep, 0]))
        spent = int(grid["steps_run"].sum())
        rows["grid"].append(_interval(critical_data_size(grid, seed=rep)[0]))
        table = boundary_design(mu, sd, budget, spent, np.random.default_rng([*base, rep, 1]))
        estimate = critical_data_size(table, seed=rep)
        rows["bootstrap"].append(_interval(estimate[0]))
        widen_to_posterior(boundary_study(budget, spent), table, estimate)  # what a boundary study reports
        rows["boundary"].append(_interval(estimate[0]))
        posterior = BoundaryPosterior(0.1, 0.9).update(table["train_fraction"], table["grokked"])
        rows["posterior"].append(posterior.interval())
        steps["grid"].append(spent)
        steps["boundary"].append(int(table["steps_run"].sum()))
    out: dict[str, Any] = {"mu": mu, "sd": sd, "budget": budget, "truth": truth, "reps": reps}
    for name, intervals in rows.items():
        finite = [(lo, hi) for lo, hi in intervals if math.isfinite(lo) and math.isfinite(hi)]
        covered = sum(lo <= truth <= hi for lo, hi in finite)
        out[name] = {
            "coverage": covered / reps,  # an interval that could not be computed does not cover
            "median_width": statistics.median(hi - lo for lo, hi in finite) if finite else math.nan,
            "intervals": len(finite),
        }
    out["model_steps"] = {k: statistics.median(v) for k, v in steps.items()}
    return out


def report(results: Sequence[dict[str, Any]]) -> list[str]:
    head = ["truth f*", "sd", "budget", "reps", "grid", "boundary (reported)", "its bootstrap",
            "its posterior", "model-steps grid/boundary"]  # fmt: skip
    rows = [head]
    for r in results:
        cells = [f"{r['truth']:.3f}", f"{r['sd']:.2f}", str(r["budget"]), str(r["reps"])]
        for name in ("grid", "boundary", "bootstrap", "posterior"):
            cells.append(f"{r[name]['coverage']:.2f} / {r[name]['median_width']:.3f}")
        cells.append(f"{r['model_steps']['grid']:,.0f} / {r['model_steps']['boundary']:,.0f}")
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["Coverage of the 95 % intervals (bench.coverage; coverage / median width, simulated runs)", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=40, help="simulated studies per setting (default 40)")
    parser.add_argument("--quick", action="store_true", help="3 reps of two settings (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps: got {args.reps}; allowed: a whole number >= 1")
    settings, reps = (SETTINGS[:1] + SETTINGS[-1:], 3) if args.quick else (SETTINGS, args.reps)
    started = time.perf_counter()
    results = []
    for mu, sd, budget in settings:
        results.append(run_setting(mu, sd, budget, reps))
        r = results[-1]
        print(f"  mu {mu} sd {sd} budget {budget}: grid {r['grid']['coverage']:.2f}, boundary "
              f"{r['boundary']['coverage']:.2f} (its bootstrap {r['bootstrap']['coverage']:.2f}, its "
              f"posterior {r['posterior']['coverage']:.2f}) ({time.perf_counter() - started:.0f} s)",
              flush=True)  # fmt: skip
    print()
    print("\n".join(report(results)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
