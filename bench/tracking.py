"""What one tiny run costs the driver in MLflow calls (issue 14's 10,000-config study).

Run ``python -m bench.tracking [--runs N] [--params K]``. A fresh SQLite tracking file in a
temporary directory, a study's experiment and parent run, then ``N`` child runs written the way the
Tune callback writes them (``grokray.tracking.StudyTracker``): opened with ``K`` params, three
evaluations of the basic curves queued, ended with an outcome and a ``curves.parquet``. Prints the
milliseconds per run in all and per MLflow client call. Compare two commits by running it in each,
in turn: the machine is shared, so repeat the pair and read the ratio.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

CALLS = ("create_run", "log_batch", "log_artifacts", "log_artifact", "set_terminated", "update_run",
         "get_run")  # fmt: skip


def measure(runs: int, params: int = 40) -> dict[str, Any]:
    """Milliseconds per run: ``total`` and one entry per client call that was made."""
    import pandas as pd

    from grokray.tracking import StudyTracker, claim_study_name

    with tempfile.TemporaryDirectory() as folder:
        cwd = os.getcwd()
        os.chdir(folder)  # MLflow's default artifact root is relative to the working directory
        try:
            uri = f"sqlite:///{folder}/mlflow.db"
            claim_study_name("bench-tracking", "bench_tracking.py", uri)
            tracker = StudyTracker("bench-tracking", uri)
            tracker.start_study({}, {})
            tracker.attach(tracker.parent_run_id)
            spent: dict[str, float] = collections.defaultdict(float)
            for name in CALLS:
                real = getattr(tracker.client, name)

                def timed(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                    started = time.perf_counter()
                    try:
                        return _real(*args, **kwargs)
                    finally:
                        spent[_name] += time.perf_counter() - started

                setattr(tracker.client, name, timed)
            values = {f"param_{i}": i * 0.5 for i in range(params)}
            curves = pd.DataFrame({"step": [0, 25, 50], "val_acc": [0.1, 0.2, 0.3]})
            record = {"train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.3,
                      "weight_norm": 3.0}  # fmt: skip
            started = time.perf_counter()
            for i in range(runs):
                key = f"t{i}-r0"
                tracker.start_trial(key, key, values, {"ray.trial_id": f"t{i}"}, config_key=f"c{i}")
                for step in (0, 25, 50):
                    tracker.log_trial_metrics(key, {"step": step, **record})
                outcome = {"grokked": False, "phase": "memorized", "stop_reason": "budget", "steps_run": 50}
                tracker.end_trial(key, outcome, curves)
            total = time.perf_counter() - started
        finally:
            os.chdir(cwd)
    return {"runs": runs, "params": params, "total": 1000 * total / runs,
            **{name: 1000 * spent[name] / runs for name in CALLS if name in spent}}  # fmt: skip


def report(result: dict[str, Any]) -> list[str]:
    lines = [f"{result['runs']} tiny runs ({result['params']} params each), SQLite file:",
             f"  all of a run's tracking: {result['total']:.1f} ms"]  # fmt: skip
    lines += [f"  {name}: {result[name]:.2f} ms" for name in CALLS if name in result]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="child runs to write (default 300)")
    parser.add_argument("--params", type=int, default=40, help="params per run (default 40)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs: got {args.runs}; allowed: a whole number >= 1")
    if args.params < 0:
        parser.error(f"--params: got {args.params}; allowed: a whole number >= 0")
    print("\n".join(report(measure(args.runs, args.params))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
