"""Boundary search against the grid (issue 15), side by side in one run.

Run ``python -m bench.boundary [--quick] [--json PATH]`` (or ``make bench ARGS=--boundary``). Every
study runs as its users run it (``python -m grokray run``: local Ray, MLflow in a SQLite file) in a
temporary directory, one after the other:

1. **dense**: the reference, a dense sweep of the default study's setting (training fraction 0.40 …
   0.60 in steps of 0.02, four seeds each, early stopping on, the monotone rule off so that every
   run is trained), the README's "dense manual sweep" as a study. Its critical fraction at every
   budget comes from the same runs (``by_budget`` in its estimate.json).
2. **grid**: ``studies/critical_size.py`` as shipped (17 fractions × 2 seeds, largest first with
   the monotone rule).
3. **boundary**: ``studies/critical_size_boundary.py`` with ``max_steps_total`` set to the model-steps
   the grid spent in this run, so it may spend at most what the grid did.
4. and 5.: the same grid and boundary studies at a budget of 2,500 steps (``--set steps=2500``):
   the noisy setting, where the runs that grok near the boundary do so late and some seeds miss
   the budget; the reference is the dense sweep's critical fraction within 2,500 steps.

The targets (issue 15): the boundary's critical fraction within ±0.02 of the dense sweep's, its
95 % interval at most half as wide as the grid's, for at most the grid's model-steps. ``--quick``
runs the studies' ``--quick`` profiles (a smoke run of the bench; the targets are not judged).
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
DENSE_SETS = [
    "train_fraction=" + ",".join(f"{0.40 + 0.02 * i:.2f}" for i in range(11)),
    "seeds=4",
    "monotone_stop=0",
]
TOLERANCE = 0.02  # the boundary's estimate within ±0.02 of the dense sweep's
WIDTH_RATIO = 0.5  # its interval at most half the grid's
NOISY_STEPS = 2500


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
        name = "critical-size-boundary" if study == BOUNDARY else "critical-size"
        estimate_path = Path(tmp) / "results" / name / "estimate.json"
        if estimate_path.exists():
            summary = json.loads(estimate_path.read_text())
            first = (summary.get("estimates") or [{}])[0]
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


def run_boundary(quick: bool = False) -> dict[str, Any]:
    dense = run_study("dense sweep", GRID, DENSE_SETS, quick)
    settings: list[dict[str, Any]] = []
    for steps in (None, NOISY_STEPS):
        extra = [] if steps is None else [f"steps={steps}"]
        grid = run_study(f"grid{'' if steps is None else f', {steps} steps'}", GRID, extra, quick)
        limit = int(grid.get("model_steps") or 0)
        sets = extra + ([f"max_steps_total={limit}"] if limit and not quick else [])
        boundary = run_study(f"boundary{'' if steps is None else f', {steps} steps'}", BOUNDARY, sets, quick)
        budget = steps or 5000
        ref_row = dense.get("by_budget", {}).get(budget) or dense.get("by_budget", {}).get(str(budget))
        reference = ref_row[0] if ref_row else (dense.get("critical_fraction") if steps is None else None)
        settings.append(
            {
                "budget": budget,
                "reference": ref_row,
                "grid": grid,
                "boundary": boundary,
                "judged": judge(reference, grid, boundary),
            }
        )
    return {"quick": quick, "dense": dense, "settings": settings}


def report(result: dict[str, Any]) -> list[str]:
    lines = ["Boundary search vs the grid (bench.boundary; one run each, this machine)", ""]
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
    for setting in result["settings"]:
        budget = setting["budget"]
        ref = setting["reference"]
        dense_text = f"{ref[0]:.3f} [{ref[1]:.3f}, {ref[2]:.3f}]" if ref else "not measured"
        width = f"{ref[2] - ref[1]:.3f}" if ref else "-"
        rows.append([str(budget), "dense sweep (reference)", dense_text, width, str(dense.get("n_trials")),
                     "(one sweep)" if budget != 5000 else f"{dense.get('model_steps') or 0:,}",
                     f"{dense['wall_s']:.0f} s" if budget == 5000 else "", ""])  # fmt: skip
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
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.boundary", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the studies' --quick profiles (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    result = run_boundary(quick=args.quick)
    print()
    print("\n".join(report(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        print(f"bench.boundary: wrote {args.json}")
    failed = any(r.get("returncode") for s in result["settings"] for r in (s["grid"], s["boundary"]))
    return 1 if failed or result["dense"].get("returncode") else 0


if __name__ == "__main__":
    sys.exit(main())
