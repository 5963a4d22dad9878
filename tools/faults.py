"""Fault-injection report (``make faults``): break real studies N times each, count what was lost.

Every scenario runs the real CLI (``python -m grokray run``) on a small quick study in a fresh
directory with its own MLflow database, then checks, from MLflow and the results directory, that
the study finished with exactly the requested trials and that nothing was lost, duplicated or
left open:

- trials lost: requested trials with no ended child run (FINISHED, or FAILED with its error
  recorded: the designed end of a trial that keeps raising), or missing from ``trials.parquet``
- duplicate runs: the same ``grokray.run_key``, or the same config (``grokray.config_key``) under
  one parent, on two child runs (a run marked ``grokray.superseded`` is not counted)
- orphan runs: runs still RUNNING/SCHEDULED, child runs without an outcome (``stop_reason``), or
  child runs whose parent run does not exist

Kill moments are drawn uniformly within the running window (from the first progress line of the
study, or the moment both nodes report, up to ``FAULT_WINDOW_S`` seconds later), seeded by
``FAULT_SEED`` (printed). Progress goes to stderr; the table to stdout and, as JSON, to ``--json``.

    FAULT_RUNS=3 python tools/faults.py --json results/faults.json [--only sigkill,outage]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: ``python tools/faults.py``
    sys.path.insert(0, str(ROOT))
from tools.services import free_port, mlflow_server_command, wait_for_ray_nodes, wait_until_healthy  # noqa: E402

PYTHON = sys.executable
STUDY = str(ROOT / "studies" / "critical_size.py")
STUDY_NAME = "critical-size"
# four trials: 0.2/0.3 train their whole budget (no grokking), 0.7/0.8 grok and stop early
FOUR_TRIALS = ["--quick", "--set", "train_fraction=0.2,0.3,0.7,0.8", "--set", "steps=1500"]
TWO_TRIALS = ["--quick"]  # the quick profile: fractions 0.2 and 0.8, 1500 steps
ENDED = {"FINISHED", "FAILED", "KILLED"}
OPEN = {"RUNNING", "SCHEDULED"}


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Counting (pure: unit-tested in tests/unit/tools/test_faults.py on synthetic MLflow-like records)


def run_records(runs: Iterable[Any]) -> list[dict[str, Any]]:
    """MLflow ``Run`` objects as plain records: ``{"run_id", "status", "tags"}``."""
    return [{"run_id": r.info.run_id, "status": r.info.status, "tags": dict(r.data.tags)} for r in runs]


def count_runs(runs: list[Mapping[str, Any]], requested: int, table_rows: int | None) -> dict[str, Any]:
    """What one study left in MLflow and its results directory, against ``requested`` trials.

    ``runs``: every run of the study's experiment (``run_id``, ``status``, ``tags``);
    ``table_rows``: rows of the study's ``trials.parquet`` (None when it was not written).
    """
    parents = [r for r in runs if r["tags"].get("grokray.role") == "study"]
    # a run a killed driver left and no trial continued is marked superseded: not counted
    children = [
        r for r in runs
        if r["tags"].get("grokray.role") == "trial" and r["tags"].get("grokray.superseded") != "true"
    ]  # fmt: skip
    parent_ids = {r["run_id"] for r in parents}
    child_ids = {r["run_id"] for r in children}
    keys = Counter(r["tags"].get("grokray.run_key") for r in children)
    by_key = sum(n - 1 for key, n in keys.items() if key is not None and n > 1)
    # one run per config and seed under a parent, whichever Tune trials trained it
    configs = Counter(
        (r["tags"].get("mlflow.parentRunId"), r["tags"]["grokray.config_key"])
        for r in children
        if r["tags"].get("grokray.config_key")
    )
    by_config = sum(n - 1 for n in configs.values() if n > 1)
    duplicates = max(by_key, by_config)

    def ended(run: Mapping[str, Any]) -> bool:
        tags = run["tags"]
        if "stop_reason" not in tags:
            return False
        if run["status"] == "FINISHED":
            return True
        return run["status"] == "FAILED" and tags["stop_reason"] == "failed" and bool(tags.get("error"))

    orphans = sum(
        1
        for r in runs
        if r["status"] in OPEN
        or (
            r["run_id"] in child_ids
            and ("stop_reason" not in r["tags"] or r["tags"].get("mlflow.parentRunId") not in parent_ids)
        )
    )
    finished_keys = {r["tags"].get("grokray.run_key") for r in children if ended(r)}
    lost = max(0, requested - len(finished_keys - {None}))
    if table_rows is not None:  # None: no table (the study did not finish; reported apart)
        lost = max(lost, requested - table_rows)
    return {
        "parents": len(parents),
        "parent_finished": len(parents) == 1 and parents[0]["status"] == "FINISHED",
        "children": len(children),
        "finished_trials": len(finished_keys - {None}),
        "lost": lost,
        "duplicates": duplicates,
        "orphans": orphans,
    }


@dataclass
class Outcome:
    """One run of one scenario."""

    scenario: str
    survived: bool = False
    lost: int = 0
    duplicates: int = 0
    orphans: int = 0
    wall_s: float = 0.0
    requested: int = 0
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    fault: dict[str, Any] = field(default_factory=dict)  # when and what was injected


def summarize(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The table: one row per scenario."""
    rows = []
    for scenario in dict.fromkeys(o.scenario for o in outcomes):
        mine = [o for o in outcomes if o.scenario == scenario]
        rows.append(
            {
                "scenario": scenario,
                "runs": len(mine),
                "survived": sum(o.survived for o in mine),
                "trials_lost": sum(o.lost for o in mine),
                "duplicate_runs": sum(o.duplicates for o in mine),
                "orphan_runs": sum(o.orphans for o in mine),
                "mean_wall_s": round(sum(o.wall_s for o in mine) / len(mine), 1),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ["scenario", "runs", "survived", "trials lost", "duplicate runs", "orphan runs", "mean wall s"]
    keys = ["scenario", "runs", "survived", "trials_lost", "duplicate_runs", "orphan_runs", "mean_wall_s"]
    cells = [header] + [[str(row[k]) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Processes (each started in its own session and stopped by its id)


class Workdir:
    """A scenario's directory (short: Ray's socket paths must stay < 108 characters) and the
    processes started in it; ``close`` stops them all, and any Ray process whose working
    directory is inside it (a local Ray left behind by a killed driver)."""

    def __init__(self, scenario: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"gf-{scenario[:6]}-", dir="/tmp"))
        self.processes: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RAY_AUTH_MODE": "disabled",
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.path / 'mlflow.db'}",
            "GROKRAY_CHECKPOINT_SECONDS": "0",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            **extra,
        }

    def start(self, args: list[str], env: dict[str, str], output: bool = True) -> subprocess.Popen:
        proc = subprocess.Popen(
            args, cwd=self.path, env=env, text=True, start_new_session=True,
            stdout=subprocess.PIPE if output else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
        )  # fmt: skip
        self.processes.append(proc)
        return proc

    def reap(self) -> None:
        """SIGKILL every process started here and every process working inside this directory."""
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == str(self.path) or cwd.startswith(f"{self.path}/"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)


class Output:
    """Reads a process's combined output on a thread; ``wait_for`` a line matching a predicate."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> bool:
        deadline, seen = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                if predicate(self.lines[seen]):
                    return True
                seen += 1
            if self.proc.poll() is not None and seen >= len(self.lines):
                self._thread.join(timeout=5)
                if seen >= len(self.lines):
                    return False
            time.sleep(0.2)
        return False

    def finish(self, timeout: float) -> str:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.lines.append(f"\n[faults] killed after {timeout:.0f} s\n")
        self._thread.join(timeout=10)
        return "".join(self.lines)


def grokray(work: Workdir, args: list[str], env: dict[str, str]) -> Output:
    return Output(work.start([PYTHON, "-m", "grokray", "run", STUDY, *args], env))


def is_progress(line: str) -> bool:
    return line.startswith(f"[{STUDY_NAME}]") and " done, " in line


def sleep_into_window(proc: subprocess.Popen, rng: random.Random, fault: dict[str, Any]) -> bool:
    """Sleep a random moment into the running window; False if the study ended before it."""
    delay = rng.uniform(0.0, WINDOW_S)
    fault["delay_s"] = round(delay, 2)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return proc.poll() is None


# ---------------------------------------------------------------------------------------------
# Scenarios: each runs one study with one fault and returns (exit codes ok, requested, uri, notes)

WINDOW_S = float(os.environ.get("FAULT_WINDOW_S", "20"))
RUN_TIMEOUT_S = float(os.environ.get("FAULT_RUN_TIMEOUT_S", "900"))


@dataclass
class Ran:
    ok: bool  # exit codes as designed
    requested: int
    uri: str
    problems: list[str] = field(default_factory=list)


def kill_driver_then_resume(work: Workdir, rng: random.Random, fault: dict[str, Any], sig: int) -> Ran:
    env = work.env()
    out = grokray(work, FOUR_TRIALS, env)
    problems = []
    if not out.wait_for(is_progress, RUN_TIMEOUT_S):
        return Ran(False, 4, env["MLFLOW_TRACKING_URI"], ["no progress line: " + "".join(out.lines)[-800:]])
    fault["landed"] = sleep_into_window(out.proc, rng, fault)
    if fault["landed"]:
        out.proc.send_signal(sig)  # the driver only, as a user's kill would
    first = out.finish(RUN_TIMEOUT_S)
    code = out.proc.returncode
    fault["exit_code"] = code
    # a kill that lands after the study has printed its answer (Ray shutting down) ends a finished
    # study: nothing to resume, and the checks below still count every run
    after_finish = "MLflow parent run:" in first
    fault["after_finish"] = after_finish
    if (
        fault["landed"]
        and sig == signal.SIGTERM
        and not after_finish
        and (code != 130 or "--resume" not in first)
    ):
        problems.append(f"SIGTERM: exit {code}, want 130 and a --resume hint")
    work.reap()  # the local Ray the dead driver left behind
    resumed = grokray(work, [*FOUR_TRIALS, "--resume"], env)
    text = resumed.finish(RUN_TIMEOUT_S)
    if resumed.proc.returncode != 0:
        problems.append(f"--resume exit {resumed.proc.returncode}: {text[-800:]}")
    return Ran(not problems, 4, env["MLFLOW_TRACKING_URI"], problems)


def sigkill(work: Workdir, rng: random.Random, fault: dict[str, Any]) -> Ran:
    return kill_driver_then_resume(work, rng, fault, signal.SIGKILL)


def sigterm(work: Workdir, rng: random.Random, fault: dict[str, Any]) -> Ran:
    return kill_driver_then_resume(work, rng, fault, signal.SIGTERM)


def _trial_steps(work: Workdir) -> dict[str, list[int]]:
    """Each Tune trial's evaluation steps, from its ``result.json``, by Tune trial id (without the
    evaluations a resumed trial reported again from its checkpoint, marked ``replayed``)."""
    steps = {}
    for result_file in (work.path / "results" / STUDY_NAME).glob("*/result.json"):
        records = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        if records:
            steps[records[0]["trial_id"]] = [r["step"] for r in records if not r.get("replayed")]
    return steps


def _result_steps(work: Workdir) -> dict[tuple[str, str], list[int]]:
    """Each replica's evaluation steps, from its Tune trial's ``result.json``, by (Tune trial id,
    replica): a pack's replicas end at different steps (without the evaluations a resumed trial
    reported again from its checkpoint, marked ``replayed``)."""
    steps: dict[tuple[str, str], list[int]] = {}
    for result_file in (work.path / "results" / STUDY_NAME).glob("*/result.json"):
        records = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        for record in records:
            if record.get("replayed"):
                continue
            for replica, row in (record.get("replicas") or {}).items():
                steps.setdefault((record["trial_id"], replica), []).append(row["step"])
    return steps


def raise_once(work: Workdir, rng: random.Random, fault: dict[str, Any]) -> Ran:
    fault["inject"] = "raise-once@300"
    env = work.env(GROKRAY_INJECT_FAULT=fault["inject"])
    out = grokray(work, TWO_TRIALS, env)
    text = out.finish(RUN_TIMEOUT_S)
    problems = [] if out.proc.returncode == 0 else [f"exit {out.proc.returncode}: {text[-800:]}"]
    for marker in (work.path / "results" / STUDY_NAME).glob("*/result.json"):
        if not (marker.parent / "injected_fault").exists():
            problems.append(f"{marker.parent.name}: the fault did not fire")
    for trial, steps in _trial_steps(work).items():
        if steps != sorted(set(steps)) or steps[-1] <= 300:
            problems.append(f"{trial}: not continued from its checkpoint (steps {steps[:3]}…{steps[-3:]})")
    return Ran(not problems, 2, env["MLFLOW_TRACKING_URI"], problems)


def raise_always(work: Workdir, rng: random.Random, fault: dict[str, Any]) -> Ran:
    """The 0.2 trial trains its whole budget and meets the fault at step 1000 on every attempt
    (recorded FAILED, the study goes on); the 0.8 trial groks before that."""
    fault["inject"] = "raise-always@1000"
    env = work.env(GROKRAY_INJECT_FAULT=fault["inject"])
    out = grokray(work, [*TWO_TRIALS, "--set", "max_failures=1"], env)
    text = out.finish(RUN_TIMEOUT_S)
    problems = [] if out.proc.returncode == 0 else [f"exit {out.proc.returncode}: {text[-800:]}"]
    runs = _runs(env["MLFLOW_TRACKING_URI"])
    failed = [r for r in runs if r["tags"].get("grokray.role") == "trial" and r["status"] == "FAILED"]
    if len(failed) != 1:
        problems.append(f"{len(failed)} failed child runs, want 1 (the 0.2 trial)")
    return Ran(not problems, 2, env["MLFLOW_TRACKING_URI"], problems)


def diverge(work: Workdir, rng: random.Random, fault: dict[str, Any]) -> Ran:
    fault["inject"] = "lr=1e6"
    env = work.env()
    out = grokray(work, [*TWO_TRIALS, "--set", "lr=1e6"], env)
    text = out.finish(RUN_TIMEOUT_S)
    problems = [] if out.proc.returncode == 0 else [f"exit {out.proc.returncode}: {text[-800:]}"]
    runs = _runs(env["MLFLOW_TRACKING_URI"])
    reasons = [r["tags"].get("stop_reason") for r in runs if r["tags"].get("grokray.role") == "trial"]
    if reasons != ["diverged"] * 2:
        problems.append(f"stop reasons {reasons}, want diverged for both trials")
    return Ran(not problems, 2, env["MLFLOW_TRACKING_URI"], problems)


def outage(work: Workdir, rng: random.Random, fault: dict[str, Any]) -> Ran:
    """A real ``mlflow server`` (SQLite) is killed at a random moment and restarted 8 s later on
    the same port and database; every evaluation must still reach MLflow exactly once."""
    port = free_port()
    uri, database = f"http://127.0.0.1:{port}", f"sqlite:///{work.path / 'server.db'}"

    def start_server() -> subprocess.Popen:
        server = work.start(
            mlflow_server_command(database, work.path / "artifacts", port), work.env(), output=False
        )
        wait_until_healthy(uri, 180, server)
        return server

    server = start_server()
    env = work.env(MLFLOW_TRACKING_URI=uri)
    out = grokray(work, FOUR_TRIALS, env)
    problems = []
    if out.wait_for(is_progress, RUN_TIMEOUT_S) and sleep_into_window(out.proc, rng, fault):
        fault["landed"] = True
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        time.sleep(8)
        start_server()
    else:
        fault["landed"] = False
    text = out.finish(RUN_TIMEOUT_S)
    if out.proc.returncode != 0:
        problems.append(f"exit {out.proc.returncode}: {text[-800:]}")
    # every evaluation a trial made is in MLflow once
    steps = _result_steps(work)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(database)
    for run in _runs(database):
        if run["tags"].get("grokray.role") == "trial":
            logged = [m.step for m in client.get_metric_history(run["run_id"], "val_acc")]
            key = (run["tags"].get("ray.trial_id", ""), run["tags"].get("grokray.replica", "0"))
            made = sorted(set(steps.get(key, [])))
            if sorted(logged) != made:
                trial = run["tags"].get("ray.trial_id")
                problems.append(f"{trial}: {len(logged)} val_acc steps in MLflow, {len(made)} made")
    return Ran(not problems, 4, database, problems)


def worker_kill(work: Workdir, rng: random.Random, fault: dict[str, Any]) -> Ran:
    """A two-node local Ray cluster (1 CPU each); the worker node is SIGKILLed at a random moment
    after both nodes have reported; its trials must be rescheduled and the study complete."""
    ray_bin = str(Path(PYTHON).with_name("ray"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = work.env()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    work.start([ray_bin, "start", "--block", "--head", "--port", str(port), "--include-dashboard", "false",
                "--temp-dir", str(work.path / "ray"), *common], env, output=False)  # fmt: skip
    wait_for_ray_nodes(address, 1, env, timeout=240)
    worker = work.start([ray_bin, "start", "--block", "--address", address, *common], env, output=False)
    wait_for_ray_nodes(address, 2, env, timeout=240)
    args = ["--quick", "--address", address, "--set", "train_fraction=0.2,0.25,0.3,0.35",
            "--set", "steps=3000", "--set", "max_failures=3"]  # fmt: skip
    out = grokray(work, args, env)
    problems = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    # the driver's staging copy of the results, written at once (Tune copies it to the results
    # directory only every few minutes and at the end)
    staging = work.path / "ray"
    while len(_nodes_reporting(staging)) < 2 and out.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if len(_nodes_reporting(staging)) == 2 and sleep_into_window(out.proc, rng, fault):
        fault["landed"] = True
        os.killpg(worker.pid, signal.SIGKILL)
    else:
        fault["landed"] = False
    text = out.finish(RUN_TIMEOUT_S)
    if out.proc.returncode != 0:
        problems.append(f"exit {out.proc.returncode}: {text[-800:]}")
    return Ran(not problems, 4, env["MLFLOW_TRACKING_URI"], problems)


def _nodes_reporting(directory: Path) -> set[str]:
    """The Ray nodes named in the trials' result.json files anywhere under ``directory``."""
    nodes = set()
    for result_file in directory.rglob("result.json"):
        for line in result_file.read_text().splitlines():
            try:
                nodes.add(json.loads(line).get("ray_node_id"))
            except ValueError:  # empty, or the line the driver is writing right now
                continue
    return nodes - {None}


SCENARIOS: dict[str, Callable[[Workdir, random.Random, dict[str, Any]], Ran]] = {
    "sigkill-resume": sigkill,
    "sigterm-resume": sigterm,
    "raise-once": raise_once,
    "raise-always": raise_always,
    "diverge": diverge,
    "tracking-outage": outage,
    "worker-kill": worker_kill,
}


# ---------------------------------------------------------------------------------------------
# Checking one finished scenario


def _runs(uri: str) -> list[dict[str, Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(STUDY_NAME)
    if experiment is None:
        return []
    return run_records(client.search_runs([experiment.experiment_id], max_results=10000))


def _table_rows(work: Workdir) -> int | None:
    path = work.path / "results" / STUDY_NAME / "trials.parquet"
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def run_scenario(name: str, rng: random.Random, keep: bool) -> Outcome:
    work, fault = Workdir(name), {}
    outcome = Outcome(name, fault=fault)
    started = time.monotonic()
    try:
        ran = SCENARIOS[name](work, rng, fault)
        outcome.wall_s = round(time.monotonic() - started, 1)
        counts = count_runs(_runs(ran.uri), ran.requested, _table_rows(work))
        outcome.requested, outcome.counts, outcome.problems = ran.requested, counts, list(ran.problems)
        outcome.lost, outcome.duplicates, outcome.orphans = (
            counts["lost"],
            counts["duplicates"],
            counts["orphans"],
        )
        if not counts["parent_finished"]:
            outcome.problems.append(f"{counts['parents']} parent runs, want one FINISHED")
        if counts["children"] != ran.requested:
            outcome.problems.append(f"{counts['children']} child runs, want {ran.requested}")
        clean = not (counts["lost"] or counts["duplicates"] or counts["orphans"])
        outcome.survived = ran.ok and clean and not outcome.problems
    except Exception as err:  # a scenario that could not even run counts as not survived
        outcome.wall_s = round(time.monotonic() - started, 1)
        outcome.problems.append(f"{type(err).__name__}: {err}")
    finally:
        work.reap()
        if not keep:
            import shutil

            shutil.rmtree(work.path, ignore_errors=True)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=int(os.environ.get("FAULT_RUNS") or 3))
    parser.add_argument(
        "--seed", type=int, default=int(os.environ.get("FAULT_SEED") or random.randrange(10**6))
    )
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of: {', '.join(SCENARIOS)}")
    parser.add_argument("--json", default="results/faults.json", help="where to write the table as JSON")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory under /tmp")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]}; allowed: {', '.join(SCENARIOS)}")
    rng = random.Random(args.seed)
    log(
        f"FAULT_SEED={args.seed}  FAULT_RUNS={args.runs}  window {WINDOW_S:g} s  scenarios: {','.join(names)}"
    )
    outcomes = []
    started = time.monotonic()
    for name in names:
        for i in range(args.runs):
            log(f"{name} {i + 1}/{args.runs} …")
            outcome = run_scenario(name, rng, args.keep)
            verdict = "survived" if outcome.survived else "FAILED: " + "; ".join(outcome.problems)[:1500]
            counts = f"lost {outcome.lost}, duplicates {outcome.duplicates}, orphans {outcome.orphans}"
            log(
                f"{name} {i + 1}/{args.runs}: {verdict} ({outcome.wall_s} s, fault {outcome.fault}, {counts})"
            )
            outcomes.append(outcome)
    rows = summarize(outcomes)
    print(format_table(rows))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "seed": args.seed,
        "runs_per_scenario": args.runs,
        "window_s": WINDOW_S,
        "wall_s": round(time.monotonic() - started, 1),
        "table": rows,
        "runs": [o.__dict__ for o in outcomes],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"table written to {path}; total {payload['wall_s']} s")
    return 0 if all(o.survived for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
