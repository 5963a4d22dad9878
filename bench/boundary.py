"""Boundary search against the grid (issue 15), side by side in one run.

Run ``python -m bench.boundary [--quick] [--json PATH]`` (or ``make bench ARGS=--boundary``). Every
study runs as its users run it (``python -m grokray run``: local Ray, MLflow in a SQLite file) in a
temporary directory, one after the other:

1. **grid**: ``studies/critical_size.py`` as shipped (17 fractions × 2 seeds, largest first with
   the monotone rule).
2. **dense**: the reference, a dense sweep of the same setting around the grid's estimate (training
   fraction from 0.10 below it to 0.10 above in steps of 0.02, four seeds each, early stopping on,
   the monotone rule off so that every run is trained; for the default setting 0.40 … 0.60, the
   README's "dense manual sweep" as a study). Its critical fraction at every budget comes from the
   same runs (``by_budget`` in its estimate.json).
3. **boundary**: ``studies/critical_size_boundary.py`` with ``max_steps_total`` set to the model-steps
   the grid spent in this run, so it may spend at most what the grid did.
4. and 5.: the same grid and boundary studies at half the budget (2,500 steps: ``--set
   steps=2500``): the noisy setting, where the runs that grok near the boundary do so late and some
   seeds miss the budget; the reference is the dense sweep's critical fraction within that budget.

``--set KEY=VALUE`` (repeatable) runs every study in another setting, e.g. ``--set op=- --set p=37``
(another operation and modulus) or ``--set steps=4000`` (another budget, and half of it): how a
setting that is not in the repository is checked against its own dense sweep. ``--dense-seeds N``
gives the dense sweep N seeds a fraction instead of 4: a study's seeds are the same at every
fraction (nested training sets, the same initial weights), so 4 of them put the crossing where
those 4 seeds cross (x − y mod 37: 0.430 [0.420, 0.440] against 0.442 [0.430, 0.455] with 16).

6. and 7.: the phase boundary: ``studies/weight_decay_grid.py`` (17 fractions × 2 seeds at weight
   decays 0.1, 0.3 and 1) and ``studies/weight_decay_boundary.py`` with ``max_steps_total`` set to
   what that grid spent, judged per weight decay (``--no-phase`` leaves these two out).

The targets (issue 15): the boundary's critical fraction within ±0.02 of the dense sweep's, its
95 % interval at most half as wide as the grid's, for at most the grid's model-steps; for the phase
boundary, per weight decay an interval at most half as wide as the grid's (and the grid's estimate
inside the boundary's interval widened by the grid's spacing), all of it for at most the grid's
model-steps. ``--quick`` runs the studies' ``--quick`` profiles (a smoke run of the bench; the
targets are not judged).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GRID = REPO / "studies" / "critical_size.py"
BOUNDARY = REPO / "studies" / "critical_size_boundary.py"
WD_GRID = REPO / "studies" / "weight_decay_grid.py"
WD_BOUNDARY = REPO / "studies" / "weight_decay_boundary.py"
GRID_SPACING = 0.05  # the grids' fraction spacing
DENSE_SPAN, DENSE_STEP = 0.10, 0.02  # the dense sweep: the grid's estimate ± 0.10 by 0.02
BUDGET = 5000  # the shipped studies' steps


DENSE_SEEDS = 4


def dense_sets(center: float | None, seeds: int = DENSE_SEEDS) -> list[str]:
    """The dense sweep's settings around ``center`` (the grid's estimate; 0.5 without one), with
    ``seeds`` seeds at every fraction (the same ones at each: a study's seeds are 0 … seeds−1)."""
    middle = round((0.5 if center is None else center) / DENSE_STEP) * DENSE_STEP
    low = min(max(0.02, middle - DENSE_SPAN), 0.98 - 2 * DENSE_SPAN)
    n = round(2 * DENSE_SPAN / DENSE_STEP) + 1
    fractions = ",".join(f"{low + DENSE_STEP * i:.2f}" for i in range(n))
    return [f"train_fraction={fractions}", f"seeds={seeds}", "monotone_stop=0"]


def budget_of(sets: Sequence[str]) -> int:
    """The ``steps`` a ``--set`` list gives (the last one wins), else the studies' own."""
    steps = [s.split("=", 1)[1] for s in sets if s.split("=", 1)[0].strip() == "steps"]
    return int(steps[-1]) if steps else BUDGET


TOLERANCE = 0.02  # the boundary's estimate within ±0.02 of the dense sweep's
WIDTH_RATIO = 0.5  # its interval at most half the grid's


def run_study(label: str, study: Path, sets: Sequence[str], quick: bool) -> dict[str, Any]:
    """``python -m grokray run STUDY --set ...`` in a fresh temp dir; its estimate and spend."""
    with tempfile.TemporaryDirectory(prefix="grokray-boundary-") as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        for key in ("RAY_ADDRESS", "GROKRAY_STORAGE"):
            env.pop(key, None)
        command = [sys.executable, "-m", "grokray", "run", str(study), "--storage", f"{tmp}/results"]
        command += [a for s in sets for a in ("--set", s)] + (["--quick"] if quick else [])
        print(f"  {label}: {' '.join(command[3:])}", flush=True)
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        result: dict[str, Any] = {"label": label, "command": command[1:], "wall_s": wall}
        result["returncode"] = proc.returncode
        if proc.returncode != 0:
            result["stderr_tail"] = proc.stderr[-2000:]
        found = sorted((Path(tmp) / "results").glob("*/estimate.json"))
        if found:
            summary = json.loads(found[0].read_text())
            first = (summary.get("estimates") or [{}])[0]
            result["estimates"] = summary.get("estimates") or []
            result["boundaries"] = summary.get("boundary") or []
            result.update({k: first.get(k) for k in ("critical_fraction", "ci_low", "ci_high", "n_trials")})
            result["model_steps"] = summary.get("model_steps")
            result["by_budget"] = {
                row["budget"]: [row["critical_fraction"], row["ci_low"], row["ci_high"]]
                for row in summary.get("by_budget", [])
            }
            if summary.get("boundary"):
                result["boundary"] = summary["boundary"][0]
            result["per_size"] = summary.get("per_size")
        print(
            f"    {wall:.0f} s, exit {proc.returncode}: {_estimate_text(result)}, "
            f"{result.get('model_steps') or 0:,} model-steps",
            flush=True,
        )
        return result


def _estimate_text(row: dict[str, Any]) -> str:
    if row.get("critical_fraction") is None:
        return "no estimate"
    return f"{row['critical_fraction']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _width(row: dict[str, Any]) -> float:
    try:
        return float(row["ci_high"]) - float(row["ci_low"])
    except (KeyError, TypeError):
        return float("nan")


def judge(reference: float | None, grid: dict[str, Any], boundary: dict[str, Any]) -> dict[str, Any]:
    """The issue's three conditions for one setting."""
    est = boundary.get("critical_fraction")
    close = reference is not None and est is not None and abs(est - reference) <= TOLERANCE
    narrow = _width(boundary) <= WIDTH_RATIO * _width(grid)
    cheap = (boundary.get("model_steps") or 0) <= (grid.get("model_steps") or 0)
    return {
        "reference": reference,
        "error": None if reference is None or est is None else est - reference,
        "width_ratio": _width(boundary) / _width(grid) if _width(grid) else None,
        "steps_ratio": (boundary.get("model_steps") or 0) / max(1, grid.get("model_steps") or 0),
        "within_tolerance": close,
        "half_as_wide": narrow,
        "at_most_grid_steps": cheap,
        "status": "PASS" if close and narrow and cheap else "FAIL",
    }


def _groups(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {", ".join(f"{k}={v}" for k, v in e["group"].items()): e for e in row.get("estimates") or []}


def judge_phase(grid: dict[str, Any], boundary: dict[str, Any]) -> dict[str, Any]:
    """Per weight decay: the boundary's interval at most half the grid's, and the two estimates
    agreeing (the grid's inside the boundary's interval widened by the grid's spacing); in all, at
    most the grid's model-steps."""
    rows = []
    grids, ours = _groups(grid), _groups(boundary)
    for name, g in grids.items():
        b = ours.get(name, {})
        ratio = _width(b) / _width(g) if _width(g) else float("nan")
        est, ref = b.get("critical_fraction"), g.get("critical_fraction")
        agree = (
            est is not None
            and ref is not None
            and b["ci_low"] - GRID_SPACING <= ref <= b["ci_high"] + GRID_SPACING
        )
        rows.append({"group": name, "width_ratio": ratio, "half_as_wide": ratio <= WIDTH_RATIO,
                     "agree": agree})  # fmt: skip
    cheap = (boundary.get("model_steps") or 0) <= (grid.get("model_steps") or 0)
    ok = bool(rows) and cheap and all(r["half_as_wide"] and r["agree"] for r in rows)
    return {
        "groups": rows,
        "steps_ratio": (boundary.get("model_steps") or 0) / max(1, grid.get("model_steps") or 0),
        "at_most_grid_steps": cheap,
        "status": "PASS" if ok else "FAIL",
    }


def run_phase(quick: bool = False, setting: Sequence[str] = ()) -> dict[str, Any]:
    grid = run_study("weight-decay grid", WD_GRID, setting, quick)
    limit = int(grid.get("model_steps") or 0)
    sets = [*setting, *([f"max_steps_total={limit}"] if limit and not quick else [])]
    boundary = run_study("weight-decay boundary", WD_BOUNDARY, sets, quick)
    return {"grid": grid, "boundary": boundary, "judged": judge_phase(grid, boundary)}


def run_boundary(
    quick: bool = False, phase: bool = True, setting: Sequence[str] = (), dense_seeds: int = DENSE_SEEDS
) -> dict[str, Any]:
    """Grid, dense sweep and boundary at the setting's budget; grid and boundary at half of it."""
    setting = list(setting)
    full = budget_of(setting)
    grids = {full: run_study("grid", GRID, setting, quick)}
    around = dense_sets(grids[full].get("critical_fraction"), dense_seeds)
    dense = run_study("dense sweep", GRID, [*setting, *around], quick)
    settings: list[dict[str, Any]] = []
    for budget in (full, full // 2):
        extra = [*setting, *([] if budget == full else [f"steps={budget}"])]
        label = "" if budget == full else f", {budget} steps"
        grid = grids.get(budget) or run_study(f"grid{label}", GRID, extra, quick)
        limit = int(grid.get("model_steps") or 0)
        sets = extra + ([f"max_steps_total={limit}"] if limit and not quick else [])
        boundary = run_study(f"boundary{label}", BOUNDARY, sets, quick)
        by_budget = dense.get("by_budget", {})
        ref_row = by_budget.get(budget) or by_budget.get(str(budget))
        reference = ref_row[0] if ref_row else (dense.get("critical_fraction") if budget == full else None)
        settings.append(
            {
                "budget": budget,
                "reference": ref_row,
                "grid": grid,
                "boundary": boundary,
                "judged": judge(reference, grid, boundary),
            }
        )
    return {
        "quick": quick,
        "setting": setting,
        "dense": dense,
        "settings": settings,
        "phase": run_phase(quick, setting) if phase else None,
    }


def report(result: dict[str, Any]) -> list[str]:
    where = f"; --set {' --set '.join(result['setting'])}" if result.get("setting") else ""
    lines = [f"Boundary search vs the grid (bench.boundary; one run each, this machine{where})", ""]
    head = [
        "budget",
        "study",
        "critical fraction [95% CI]",
        "width",
        "runs",
        "model-steps",
        "wall",
        "posterior 95%",
    ]
    rows = [head]
    dense = result["dense"]
    full = result["settings"][0]["budget"]
    for setting in result["settings"]:
        budget = setting["budget"]
        ref = setting["reference"]
        dense_text = f"{ref[0]:.3f} [{ref[1]:.3f}, {ref[2]:.3f}]" if ref else "not measured"
        width = f"{ref[2] - ref[1]:.3f}" if ref else "-"
        rows.append([str(budget), "dense sweep (reference)", dense_text, width, str(dense.get("n_trials")),
                     "(one sweep)" if budget != full else f"{dense.get('model_steps') or 0:,}",
                     f"{dense['wall_s']:.0f} s" if budget == full else "", ""])  # fmt: skip
        for key in ("grid", "boundary"):
            row = setting[key]
            post = row.get("boundary") or {}
            post_text = (
                f"[{post['posterior_low']:.3f}, {post['posterior_high']:.3f}]"
                if "posterior_low" in post
                else ""
            )
            steps, wall = f"{row.get('model_steps') or 0:,}", f"{row['wall_s']:.0f} s"
            width = f"{_width(row):.3f}"
            rows.append(
                [
                    str(budget),
                    key,
                    _estimate_text(row),
                    width,
                    str(row.get("n_trials")),
                    steps,
                    wall,
                    post_text,
                ]
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    lines.append("")
    for setting in result["settings"]:
        j = setting["judged"]
        if result["quick"]:
            lines.append(f"budget {setting['budget']}: --quick, targets not judged")
            continue
        error = "n/a" if j["error"] is None else f"{j['error']:+.3f}"
        ratio = "n/a" if j["width_ratio"] is None else f"{j['width_ratio']:.2f}"
        lines.append(
            f"budget {setting['budget']}: {j['status']}: estimate {error} from the dense sweep "
            f"(<= ±{TOLERANCE}), "
            f"interval {ratio} of the grid's (<= {WIDTH_RATIO}), model-steps {j['steps_ratio']:.2f} of the "
            "grid's (<= 1)"
        )
    if result.get("phase"):
        lines += ["", *phase_report(result["phase"], result["quick"])]
    return lines


def phase_report(phase: dict[str, Any], quick: bool) -> list[str]:
    """The weight-decay phase boundary: per weight decay, the grid's and the boundary's estimate."""
    head = [
        "weight decay",
        "grid [95% CI]",
        "width",
        "boundary [95% CI]",
        "width",
        "ratio",
        "runs grid/boundary",
    ]
    rows = [head]
    grids, ours = _groups(phase["grid"]), _groups(phase["boundary"])
    for name, g in grids.items():
        b = ours.get(name, {})
        rows.append([name.split("=", 1)[-1], _estimate_text(g), f"{_width(g):.3f}", _estimate_text(b),
                     f"{_width(b):.3f}", f"{_width(b) / _width(g):.2f}" if _width(g) else "n/a",
                     f"{g.get('n_trials')}/{b.get('n_trials')}"])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["Phase boundary over weight decay (weight_decay_grid.py vs weight_decay_boundary.py)", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    g, b = phase["grid"], phase["boundary"]
    lines.append(
        f"model-steps: grid {g.get('model_steps') or 0:,} ({g['wall_s']:.0f} s), boundary "
        f"{b.get('model_steps') or 0:,} ({b['wall_s']:.0f} s)"
    )
    for row in b.get("boundaries") or []:
        bands = row.get("spend", [])
        spend = "; ".join(f"{s['band']}: {s['runs']} runs, {s['model_steps']:,} steps" for s in bands)
        if spend:
            group = ", ".join(f"{k}={v}" for k, v in row["group"].items())
            lines.append(f"  boundary runs by distance from the estimate, {group}: {spend}")
    if quick:
        lines.append("phase boundary: --quick, targets not judged")
    else:
        j = phase["judged"]
        ratios = [
            f"{r['group']}: {r['width_ratio']:.2f}{'' if r['agree'] else ' (disagrees)'}" for r in j["groups"]
        ]
        lines.append(
            f"phase boundary: {j['status']}: interval ratio per weight decay {', '.join(ratios)} "
            f"(<= {WIDTH_RATIO}); model-steps {j['steps_ratio']:.2f} of the grid's (<= 1)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.boundary", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the studies' --quick profiles (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--no-phase", action="store_true", help="leave out the weight-decay phase boundary")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
        help="run every study in another setting (repeatable), e.g. --set op=- --set p=37",
    )  # fmt: skip
    parser.add_argument(
        "--dense-seeds", type=int, default=DENSE_SEEDS, metavar="N",
        help=f"seeds at each fraction of the dense reference sweep (default {DENSE_SEEDS}; a few seeds place "
        "the crossing where those seeds cross, not where half of all seeds do)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    bad = [s for s in args.sets if "=" not in s]
    if bad:
        parser.error(f"--set: got {bad[0]!r}; allowed: KEY=VALUE")
    if args.dense_seeds < 1:
        parser.error(f"--dense-seeds: got {args.dense_seeds}; allowed: a whole number >= 1")
    result = run_boundary(
        quick=args.quick, phase=not args.no_phase, setting=args.sets, dense_seeds=args.dense_seeds
    )
    print()
    print("\n".join(report(result)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        print(f"bench.boundary: wrote {args.json}")
    runs = [r for s in result["settings"] for r in (s["grid"], s["boundary"])]
    if result.get("phase"):
        runs += [result["phase"]["grid"], result["phase"]["boundary"]]
    failed = any(r.get("returncode") for r in runs)
    return 1 if failed or result["dense"].get("returncode") else 0


if __name__ == "__main__":
    sys.exit(main())
