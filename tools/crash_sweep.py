"""The crash sweep (``make faults``; ``python tools/crash_sweep.py``): kill a study's driver at every
kind of moment of its life, resume it, and check every record against the uninterrupted study.

Kill points (``grokray.crash.POINTS``, set by ``GROKRAY_CRASH_AT``) are the events of a study: before
the first trial, while the next config is proposed, as a trial starts, as its child runs open, after
a result, while a checkpoint is written, once a checkpoint is registered, as a trial ends and once
its runs are ended, during the final table and the estimate. Each is hit with SIGKILL and with
SIGTERM, on its first and on a later pass; some are hit again during the resume itself (a second
kill, then a clean resume); and a time grid kills the driver every few seconds of the study.

After each kill and resume the records must be consistent: one ended child run per config and seed
with its outcome (``tools.faults.count_runs``: 0 lost, 0 duplicate, 0 orphan, nothing RUNNING);
each run's metric history without repeats or gaps (its ``val_acc`` steps are the steps of its
``curves.parquet``); the parent's artifacts present once; Optuna's trials COMPLETE once per config
(the sweep keeps Optuna in a SQLite file so that it can be read); and the estimate equal to the
uninterrupted study's.

    python tools/crash_sweep.py [--points before_fit:1:KILL,...] [--times 3,6,9] [--json PATH]
    python tools/crash_sweep.py --quick   # the few kill points that cover the known windows
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from grokray.crash import POINTS  # noqa: E402
from tools.faults import (  # noqa: E402
    FOUR_TRIALS,
    RUN_TIMEOUT_S,
    STUDY_NAME,
    Workdir,
    _runs,
    _table_rows,
    count_runs,
    grokray,
    log,
)

PARENT_ARTIFACTS = ("trials.parquet", "trials.csv", "estimate.json")
ESTIMATE_KEYS = ("critical_fraction", "ci_low", "ci_high")


@dataclass(frozen=True)
class Kill:
    """One kill: a crash point (``point:n``) or a moment (``t`` seconds after start), a signal, and
    optionally a second crash point hit during the resume."""

    point: str = ""
    nth: int = 1
    sig: str = "KILL"
    at_s: float = 0.0
    during_resume: str = ""
    stale: bool = False  # Tune's experiment snapshot taken once only: every started trial is unknown to it
    # replicas a Tune trial trains (Study(pack=...)): "1" is a trial per config, each event once per
    # config (the points' counts are per config); "2" packs the four configs two a trial
    pack: str = "1"

    @property
    def name(self) -> str:
        what = f"{self.point}:{self.nth}" if self.point else f"t={self.at_s:g}s"
        again = f" +resume {self.during_resume}" if self.during_resume else ""
        packed = f" pack={self.pack}" if self.pack != "1" else ""
        return f"{what} {self.sig}{again}" + (" stale" if self.stale else "") + packed


def full_sweep(times: list[float]) -> list[Kill]:
    """Every crash point with both signals; a later pass of the repeated ones; kills during the
    resume; and the time grid."""
    kills = [Kill(point, 1, sig) for point in POINTS for sig in ("KILL", "TERM")]
    kills += [
        Kill(point, 3, "KILL") for point in ("propose", "trial_start", "runs_open", "result", "trial_ended")
    ]
    kills += [Kill("checkpoint_write", 5, "KILL"), Kill("checkpoint_registered", 6, "KILL")]
    kills += [
        Kill("runs_open", 3, "KILL", during_resume="before_fit:1"),
        Kill("result", 4, "KILL", during_resume="result:2"),
        Kill("trial_end", 1, "TERM", during_resume="runs_open:1"),
        Kill("checkpoint_write", 2, "KILL", during_resume="table:1"),
    ]
    # Tune's snapshot taken once: every trial started is unknown to the restored experiment
    stale = (("trial_start", 3), ("runs_open", 3), ("result", 5))
    kills += [Kill(p, n, "KILL", stale=True) for p, n in stale]
    kills += [Kill(at_s=t) for t in times]
    return kills + PACKED


# packed trials (two configs a Tune trial: 0.8 and 0.7, then 0.3 and 0.2): a kill while a pack
# reports, while it checkpoints, as it ends, when its runs open with a stale snapshot
PACKED = [
    Kill("result", 2, "KILL", pack="2"),
    Kill("result", 3, "TERM", pack="2"),
    Kill("checkpoint_write", 3, "KILL", pack="2"),
    Kill("trial_end", 1, "KILL", pack="2"),
    Kill("runs_open", 2, "KILL", stale=True, pack="2"),
]


# the known windows, for ``make test``: a trial started after Tune's last snapshot (issue 16's run:
# its config proposed again under a new trial id), and a kill while the answer is written followed
# by a second kill as the resume starts
QUICK = [
    Kill("runs_open", 3, "KILL", stale=True),
    Kill("estimate", 1, "KILL", during_resume="before_fit:1"),
    Kill("runs_open", 2, "KILL", stale=True, pack="2"),
]


def parse_points(text: str) -> list[Kill]:
    """``point:n:SIG[@pack=N][+point:n][~stale]`` comma-separated (``runs_open:3:KILL+before_fit:1``,
    ``result:2:KILL@pack=2``), or ``t=7`` (SIGKILL 7 s after start)."""
    kills = []
    for item in filter(None, text.split(",")):
        if item.startswith("t="):  # a moment of the time grid: SIGKILL that many seconds after start
            kills.append(Kill(at_s=float(item.removeprefix("t=").rstrip("s"))))
            continue
        item, stale, _ = item.partition("~stale")
        first, _, again = item.partition("+")
        point, nth, sig = ([*first.split(":"), "1", "KILL"])[:3]
        if point not in POINTS:
            raise SystemExit(f"--points: unknown crash point {point!r}; allowed: {', '.join(POINTS)}")
        item_pack = "1"
        if "@pack=" in sig:
            sig, _, item_pack = sig.partition("@pack=")
        kills.append(
            Kill(point, int(nth), sig.upper(), during_resume=again, stale=bool(stale), pack=item_pack)
        )
    return kills


@dataclass
class Result:
    kill: str
    reached: bool = False
    consistent: bool = False
    lost: int = 0
    duplicates: int = 0
    orphans: int = 0
    inconsistent: int = 0
    estimate_equal: bool = False
    exit_code: int | None = None  # of the killed run: -9 (SIGKILL), 130 (SIGTERM), 0 if the point never came
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def _args(work: Workdir, pack: str = "1") -> list[str]:
    return [*FOUR_TRIALS, "--set", f"pack={pack}", "--optuna-storage", f"sqlite:///{work.path / 'optuna.db'}"]


def run_study(
    work: Workdir, extra: list[str], env: dict[str, str], kill_at_s: float = 0.0, pack: str = "1"
) -> tuple[int, str]:
    out = grokray(work, [*_args(work, pack), *extra], env)
    if kill_at_s:
        deadline = time.monotonic() + kill_at_s
        while time.monotonic() < deadline and out.proc.poll() is None:
            time.sleep(0.05)
        if out.proc.poll() is None:
            out.proc.send_signal(signal.SIGKILL)
            out.lines.append("grokray: crash point time grid\n")
    text = out.finish(RUN_TIMEOUT_S)
    work.reap()  # the local Ray a killed driver leaves behind
    return out.proc.returncode, text


def records(work: Workdir, uri: str) -> dict[str, Any]:
    """What the study left: run counts, per-run metric steps and curve steps, the parent's
    artifacts, the estimate, Optuna's trials."""
    import optuna
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = _runs(uri)
    counts = count_runs(runs, 4, _table_rows(work))
    problems: list[str] = []
    parents = [r for r in runs if r["tags"].get("grokray.role") == "study"]
    children = [
        r for r in runs
        if r["tags"].get("grokray.role") == "trial" and r["tags"].get("grokray.superseded") != "true"
    ]  # fmt: skip
    for run in children:
        steps = [m.step for m in client.get_metric_history(run["run_id"], "val_acc")]
        if len(steps) != len(set(steps)):
            problems.append(f"{run['tags'].get('grokray.run_key')}: val_acc steps repeated")
        try:
            local = client.download_artifacts(run["run_id"], "curves.parquet", str(work.path / "dl"))
            curve_steps = set(pd.read_parquet(local)["step"].astype(int))
        except Exception as err:
            problems.append(f"{run['tags'].get('grokray.run_key')}: no curves.parquet ({type(err).__name__})")
            continue
        if set(steps) != curve_steps:
            missing, extra = sorted(curve_steps - set(steps)), sorted(set(steps) - curve_steps)
            problems.append(
                f"{run['tags'].get('grokray.run_key')}: metric steps missing {missing[:5]} extra {extra[:5]}"
            )
    estimate: dict[str, float] = {}
    if len(parents) == 1:
        parent = client.get_run(parents[0]["run_id"])
        names = [a.path for a in client.list_artifacts(parent.info.run_id)]
        for artifact in PARENT_ARTIFACTS:
            if names.count(artifact) != 1:
                problems.append(f"parent artifact {artifact}: {names.count(artifact)} copies")
        estimate = {k: parent.data.metrics[k] for k in ESTIMATE_KEYS if k in parent.data.metrics}
    state_file = work.path / "results" / STUDY_NAME / "grokray.json"
    if state_file.exists():
        name = json.loads(state_file.read_text()).get("optuna_study")
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{work.path / 'optuna.db'}")
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        params = [tuple(sorted(t.params.items())) for t in complete]
        if len(params) != len(set(params)):
            problems.append(f"Optuna: {len(params) - len(set(params))} configs COMPLETE twice")
        if len(set(params)) != 4:
            problems.append(f"Optuna: {len(set(params))} configs COMPLETE, want 4")
    else:
        problems.append("no grokray.json")
    return {"counts": counts, "problems": problems, "estimate": estimate}


def run_kill(kill: Kill, baseline: dict[str, float], keep: bool) -> Result:
    work = Workdir("crash")
    result = Result(kill.name)
    started = time.monotonic()
    try:
        env = work.env()
        uri = env["MLFLOW_TRACKING_URI"]
        crash_env = {**env, "GROKRAY_CRASH_SIGNAL": kill.sig}
        if kill.stale:
            crash_env["TUNE_GLOBAL_CHECKPOINT_S"] = "3600"
        if kill.point:
            crash_env["GROKRAY_CRASH_AT"] = f"{kill.point}:{kill.nth}"
        code, text = run_study(work, [], crash_env, kill.at_s, kill.pack)
        result.exit_code = code
        # the driver's own message, or its death: a worker's point (checkpoint_write) prints in the
        # worker, whose output the driver does not show without -v
        result.reached = "grokray: crash point" in text or code in (-signal.SIGKILL, 130)
        if kill.during_resume and result.reached:
            again = {**env, "GROKRAY_CRASH_AT": kill.during_resume, "GROKRAY_CRASH_SIGNAL": "KILL"}
            run_study(work, ["--resume"], again, pack=kill.pack)
        code, text = run_study(work, ["--resume"], env, pack=kill.pack)
        if code != 0:
            result.problems.append(f"--resume exit {code}: {text[-600:]}")
        found = records(work, uri)
        counts = found["counts"]
        result.lost, result.duplicates, result.orphans = (
            counts["lost"],
            counts["duplicates"],
            counts["orphans"],
        )
        if not counts["parent_finished"]:
            found["problems"].append(f"{counts['parents']} parent runs, want one FINISHED")
        if counts["children"] != 4:
            found["problems"].append(f"{counts['children']} child runs, want 4")
        result.estimate_equal = found["estimate"] == baseline
        if not result.estimate_equal:
            found["problems"].append(f"estimate {found['estimate']} != uninterrupted {baseline}")
        result.inconsistent = len(found["problems"])
        result.problems += found["problems"]
        result.consistent = not (result.problems or result.lost or result.duplicates or result.orphans)
    except Exception as err:
        result.problems.append(f"{type(err).__name__}: {err}")
    finally:
        result.wall_s = round(time.monotonic() - started, 1)
        work.reap()
        if not keep:
            import shutil

            shutil.rmtree(work.path, ignore_errors=True)
    return result


def uninterrupted() -> dict[str, float]:
    work = Workdir("base")
    try:
        env = work.env()
        code, text = run_study(work, [], env)
        if code != 0:
            raise SystemExit(f"the uninterrupted study failed (exit {code}): {text[-800:]}")
        found = records(work, env["MLFLOW_TRACKING_URI"])
        if found["problems"]:
            raise SystemExit(f"the uninterrupted study is inconsistent: {found['problems']}")
        return found["estimate"]
    finally:
        work.reap()
        import shutil

        shutil.rmtree(work.path, ignore_errors=True)


def format_table(results: list[Result]) -> str:
    header = [
        "kill",
        "reached",
        "consistent",
        "lost",
        "dup",
        "orphan",
        "inconsistent",
        "estimate =",
        "wall s",
    ]
    cells = [header] + [
        [r.kill, "yes" if r.reached else "no", "yes" if r.consistent else "NO", str(r.lost),
         str(r.duplicates), str(r.orphans), str(r.inconsistent), "yes" if r.estimate_equal else "NO",
         f"{r.wall_s:.0f}"]
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the kill points that cover the known windows")
    parser.add_argument("--points", default="", help="point:n:SIG[+point:n],... instead of the full sweep")
    parser.add_argument("--times", default="3,7,11,15", help="the time grid (s after start), SIGKILL")
    parser.add_argument("--json", default="results/crash_sweep.json")
    parser.add_argument("--keep", action="store_true", help="keep each kill's directory under /tmp")
    args = parser.parse_args(argv)
    times = [float(t) for t in args.times.split(",") if t]
    kills = QUICK if args.quick else parse_points(args.points) if args.points else full_sweep(times)
    started = time.monotonic()
    log(f"crash sweep: {len(kills)} kills; the uninterrupted study first")
    baseline = uninterrupted()
    log(f"uninterrupted estimate {baseline}")
    results = []
    for i, kill in enumerate(kills, 1):
        result = run_kill(kill, baseline, args.keep)
        verdict = "consistent" if result.consistent else "FAILED: " + "; ".join(result.problems)[:1200]
        log(f"{i}/{len(kills)} {kill.name}: {verdict} (reached {result.reached}, {result.wall_s} s)")
        results.append(result)
    print(format_table(results))
    failed = [r for r in results if not r.consistent]
    reached = sum(r.reached for r in results)
    print(f"{len(results)} kills ({reached} reached their point), {len(failed)} inconsistent; "
          f"{round(time.monotonic() - started)} s")  # fmt: skip
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"baseline": baseline, "results": [r.__dict__ for r in results]}, indent=2) + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
