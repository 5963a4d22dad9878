"""The Tune callbacks: MLflow (a child run per replica, made by the tracking writer from what the
driver sends: ``grokray/tune/runlog.py``, ``grokray/tune/writer.py``) and the progress line.
(Module-level: Tune pickles them into the experiment state.)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import Callback

from grokray.crash import armed, crash_point
from grokray.study import Study
from grokray.tune.results import pack_members, replica_configs, replica_rows
from grokray.tune.runlog import RunLog, TrialView, ended_before_failure, retry_tracking
from grokray.tune.writer import Writer, open_writer

__all__ = [
    "MLflowCallback",
    "ProgressCallback",
    "ended_before_failure",
    "error_line",
    "retry_tracking",
]


class MLflowCallback(Callback):
    """A child run per replica of each trial under the study's parent run (``RunLog``), its
    MLflow calls made by the tracking writer (``grokray/tune/writer.py``): the driver sends what
    happened and goes on.

    The writer is started in ``setup`` (also after ``Tuner.restore`` unpickles this object) and
    waited for wherever Tune saves the experiment's state (``get_state``): MLflow is never behind
    what a restored experiment believes done.
    """

    def __init__(self, study: Study, tracking_uri: str, parent_run_id: str) -> None:
        self.study, self.tracking_uri, self.parent_run_id = study, tracking_uri, parent_run_id
        self._reset()

    def _reset(self) -> None:
        self.writer: Writer | None = None
        self.opened: set[str] = set()  # trials whose child runs are open in this driver
        self.known = 0  # how many of Tune's trials (a list it only appends to) the writer knows

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("study", "tracking_uri", "parent_run_id")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, **info: Any) -> None:
        self.writer = open_writer(partial(RunLog, self.study, self.tracking_uri, self.parent_run_id))

    def get_state(self) -> dict | None:
        # Tune saves the experiment's state now: every message sent before is made first
        if self.writer is not None:
            self.writer.drain()
        return None

    def _drill(self, point: str) -> None:
        """Before a crash drill's point: the driver is killed with what it sent made (the
        window's meaning); where no drill names the point, a dictionary lookup."""
        if self.writer is not None and armed(point):
            self.writer.drain()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # the child runs open at the trial's first result, when the stopper has judged it: a run
        # dominated before it trained is dated at the study's start, so that the runs table (newest
        # first) and its chart open on runs that trained
        self.opened.discard(trial.trial_id)
        crash_point("trial_start")

    def _open(self, trial: Any, trials: list, result: Mapping[str, Any] | None) -> None:
        assert self.writer is not None
        self.opened.add(trial.trial_id)
        new = [t.trial_id for t in trials[self.known :]]  # the trials Tune added since: not all again
        self.known = len(trials)
        self.writer.send("open", TrialView.of(trial, result), new)
        self._drill("runs_open")
        crash_point("runs_open")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        assert self.writer is not None
        if trial.trial_id not in self.opened:
            self._open(trial, trials, result)
        self.writer.send("result", trial.trial_id, result.get("replicas") or {})
        self._drill("result")
        crash_point("result")

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        crash_point("checkpoint_registered")

    def _end(self, trial: Any, trials: list, status: str, error: str | None = None) -> None:
        assert self.writer is not None
        crash_point("trial_end")
        if trial.trial_id not in self.opened:  # ended before its first result (raised at once)
            self._open(trial, trials, trial.last_result)
        self.writer.send("end", TrialView.of(trial), status, error)
        self._drill("trial_ended")
        crash_point("trial_ended")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, trials, "FINISHED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # also on Ctrl-C / SIGTERM, where Tune ends the experiment early: send what is queued
        if self.writer is None:
            return
        self.writer.send("flush")
        from grokray.tune.boundary import search_complete
        from grokray.tune.run import SIGTERM_RECEIVED

        ended = trials and all(t.status in ("TERMINATED", "ERROR") for t in trials)
        configs = sum(len(pack_members(t.config)) for t in trials)
        table = None
        if ended and self.study.sampler == "boundary":  # it ends when its search does
            table = pd.DataFrame(
                [
                    {**row, "failed": t.status == "ERROR" and row.get("stop_reason") in ("running", None)}
                    for t in trials
                    for row in replica_rows(self.study, t.trial_id, t.config, t.last_result or {})
                ]
            )
        if ended and search_complete(self.study, configs, table) and not SIGTERM_RECEIVED.is_set():
            # every trial has ended: nothing will continue the runs a killed driver left
            self.writer.send("supersede", {t.trial_id for t in trials})
        writer, self.writer = self.writer, None
        writer.close()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, trials, "FAILED", error_line(trial) + " (trace: the trial's error.txt)")


def error_line(trial: Any) -> str:
    """The last line of a failed trial's error trace (``RuntimeError: ...``)."""
    lines = [line for line in _error_text(trial).splitlines() if line.strip()]
    return lines[-1] if lines else "trial failed"


def _error_text(trial: Any) -> str:
    """The trial's error trace. Tune writes it to the trial's local directory first and syncs it
    to storage later, where ``get_error`` reads it: read the local file, then storage."""
    local = getattr(trial, "error_file", None)
    try:
        if local and Path(local).exists():
            return Path(local).read_text(errors="replace")
        return str(trial.get_error() or "")
    except OSError:
        return ""


class ProgressCallback(Callback):
    """Progress of the study's runs: on a terminal a progress bar (tqdm: runs done of all, ETA,
    what is running and grokked); in a log, a line every 15 s: runs done / running / grokked,
    elapsed, the current estimate. (Not pickled with a live bar: ``__getstate__`` drops it.)"""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.started = time.monotonic()
        self.last = 0.0
        self.estimate = ""
        self.estimated_at, self.estimate_cost = 0.0, 0.0  # when the estimate was made, how long it took
        self.bar: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "bar": None}

    def setup(self, **info: Any) -> None:
        self.started = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # the running estimate costs time in proportion to the runs done (a bootstrap over all of
        # them): it is redone once the time since it was last done is 20 times what it took, so it
        # takes at most a twentieth of the driver's time (in a small study, at every trial's end)
        now = time.monotonic()
        if now - self.estimated_at >= 20 * self.estimate_cost:
            rows = [
                row
                for t in trials
                if t.status == "TERMINATED" or t is trial
                for row in replica_rows(self.study, t.trial_id, t.config, t.last_result or {})
            ]
            size = self.study.size_key() or "train_fraction"
            self.estimate = _quick_estimate(rows, size, self.study.group_names(), self.study.group_bins())
            self.estimated_at = time.monotonic()
            self.estimate_cost = self.estimated_at - now
        self._print(trials, force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._print(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._print(trials, force=True)
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def counts(self, trials: list) -> dict[str, int]:
        """Runs (seed replicas) done, running, grokked, failed, dominated, over all trials."""
        done = running = grokked = failed = dominated = 0
        for t in trials:
            records = ((t.last_result or {}).get("replicas") or {}).values()
            if t.status == "ERROR":  # but the replicas of a pack that had ended before it raised
                ended = [r for r in records if ended_before_failure(r)]
                failed += len(replica_configs(self.study, t.config)) - len(ended)
                done += len(ended)
                grokked += sum(bool(r.get("grokked")) for r in ended)
                dominated += sum(r.get("stop_reason") == "dominated" for r in ended)
                continue
            finished = [r for r in records if r.get("stop_reason") != "running" or t.status == "TERMINATED"]
            done += len(finished)
            grokked += sum(bool(r.get("grokked")) for r in finished)
            dominated += sum(r.get("stop_reason") == "dominated" for r in finished)
            if t.status == "RUNNING":
                running += len(replica_configs(self.study, t.config)) - len(finished)
        return {
            "done": done,
            "running": running,
            "grokked": grokked,
            "failed": failed,
            "dominated": dominated,
        }

    def _print(self, trials: list, force: bool = False) -> None:
        now, tty = time.monotonic(), sys.stdout.isatty()
        if not force and now - self.last < (1.0 if tty else 15.0):
            return
        self.last = now
        c = self.counts(trials)
        if tty:
            self._bar(c)
            return
        elapsed = int(now - self.started)
        line = (
            f"[{self.study.name}] {c['done'] + c['failed']}/{self.study.total_trials} done, "
            f"{c['running']} running, {c['grokked']} grokked"
            + (f", {c['failed']} failed" if c["failed"] else "")
            + (f", {c['dominated']} stopped below sizes that did not grok" if c["dominated"] else "")
            + f" | {elapsed // 60}m{elapsed % 60:02d}s"
            + (f" | {self.estimate}" if self.estimate else "")
        )
        print(line, flush=True)

    def _bar(self, c: Mapping[str, int]) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=self.study.total_trials,
                desc=self.study.name,
                unit="run",
                dynamic_ncols=True,
                leave=True,
            )
        self.bar.n = c["done"] + c["failed"]
        status = (
            f"{c['running']} running, {c['grokked']} grokked"
            + (f", {c['failed']} failed" if c["failed"] else "")
            + (f", {c['dominated']} dominated" if c["dominated"] else "")
        )
        self.bar.set_postfix_str(status + (f" | {self.estimate}" if self.estimate else ""), refresh=False)
        self.bar.refresh()


def _quick_estimate(
    rows: list[dict[str, Any]],
    size_col: str = "train_fraction",
    group_cols: Sequence[str] = (),
    binned: Mapping[str, tuple[float, float, bool]] | None = None,
) -> str:
    """The running estimate on the progress line: the critical size so far, one per group (a
    weight decay, a width) when the study has groups, with its interval when there is one."""
    from grokray.analysis import critical_data_size

    table = pd.DataFrame(rows)
    if table.empty or size_col not in table or table[size_col].nunique() < 2:
        return ""
    groups = [c for c in group_cols if c in table]
    estimates = critical_data_size(
        table, size_col=size_col, group_cols=groups, n_bootstrap=100, binned=dict(binned or {})
    )
    parts = []
    for e in estimates:
        value = e["critical_size"] if size_col == "train_size" else e["critical_fraction"]
        if value is None or not math.isfinite(value):
            continue
        text = f"{value:g}" if size_col == "train_size" else f"{value:.3f}"
        if not groups:
            text += "" if size_col == "train_size" else f" [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"
        else:
            text = ",".join(str(v) for v in e["group"].values()) + ": " + text
        parts.append(text)
    if not parts:
        return ""
    name = "critical size" if size_col == "train_size" else "critical fraction"
    by = f" by {','.join(groups)}" if groups else ""
    return f"{name}{by} ≈ " + "; ".join(parts)
