"""The Tune callbacks: MLflow (a child run per replica, batched metrics, outages ridden out) and
the progress line. (Module-level: Tune pickles them into the experiment state.)
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import Callback

from grokray import settings
from grokray.analysis.plots import plot_run_curves
from grokray.config import applicable
from grokray.crash import crash_point
from grokray.outcomes import curve_keys, outcome_keys
from grokray.study import Study
from grokray.tune.results import (
    PACK,
    config_key,
    pack_members,
    replica_configs,
    replica_rows,
    run_key,
    run_name,
    trial_curves,
)
from grokray.weights import WEIGHTS_FILE, save_weights


def retry_tracking(study_name: str, call: Callable[..., Any], *args: Any) -> Any:
    """Call the tracking server until it answers. An outage (up to
    ``GROKRAY_TRACKING_OUTAGE_SECONDS``, ``grokray.settings``) pauses the driver's bookkeeping
    while the trials go on training; queued metrics stay queued until the server has taken them,
    so nothing is lost."""
    deadline, delay, warned = time.monotonic() + settings.current().tracking_outage_seconds, 1.0, False
    while True:
        try:
            result = call(*args)
        except Exception as err:
            if not _is_outage(err) or time.monotonic() > deadline:
                raise
            if not warned:
                print(f"[{study_name}] tracking server unreachable ({type(err).__name__}); "
                      "keeping results and retrying", file=sys.stderr, flush=True)  # fmt: skip
                warned = True
            time.sleep(delay)
            delay = min(2 * delay, 10.0)
            continue
        if warned:
            print(f"[{study_name}] tracking server back; nothing lost", file=sys.stderr, flush=True)
        return result


def _is_outage(err: BaseException) -> bool:
    """A tracking server that does not answer (worth waiting for), not a bug (worth raising)."""
    if isinstance(err, (OSError, TimeoutError)):  # requests' errors are OSErrors
        return True
    message = str(err)
    markers = ("API request", "Connection", "Max retries", "timed out", "503", "502")
    return type(err).__name__ == "MlflowException" and any(marker in message for marker in markers)


class MLflowCallback(Callback):
    """A child run per replica of each trial under the study's parent run, metrics by ``log_batch``.

    The MLflow state is rebuilt in ``setup`` (also after ``Tuner.restore`` unpickles this
    object): child runs are found again by their ``ray.trial_id`` / ``grokray.replica`` tags,
    never duplicated, and a restarted trial does not log again the steps its runs already have.
    """

    def __init__(self, study: Study, tracking_uri: str, parent_run_id: str) -> None:
        self.study, self.tracking_uri, self.parent_run_id = study, tracking_uri, parent_run_id
        self._reset()

    def _reset(self) -> None:
        self.tracker: Any = None
        self.last_flush: dict[str, float] = {}
        self.logged_until: dict[str, int] = {}
        self.opened: set[str] = set()  # trials whose child runs are open in this driver
        self.figures = 0  # per-run figures drawn by this driver (``Study.run_figures``)

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("study", "tracking_uri", "parent_run_id")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, **info: Any) -> None:
        from grokray.tracking import StudyTracker

        self.tracker = self._retry(StudyTracker, self.study.name, self.tracking_uri)
        self._retry(self.tracker.attach, self.parent_run_id)

    def _retry(self, call: Callable[..., Any], *args: Any) -> Any:
        return retry_tracking(self.study.name, call, *args)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # the child runs open at the trial's first result, when the stopper has judged it: a run
        # dominated before it trained is dated at the study's start, so that the runs table (newest
        # first) and its chart open on runs that trained
        self.opened.discard(trial.trial_id)
        crash_point("trial_start")

    def _open(self, trial: Any, trials: list, result: Mapping[str, Any] | None) -> None:
        self.opened.add(trial.trial_id)
        live = {t.trial_id for t in trials}
        records = (result or {}).get("replicas") or {}
        curves: dict[str, pd.DataFrame] | None = None
        for replica, config in enumerate(replica_configs(self.study, trial.config)):
            key = run_key(trial.trial_id, replica)
            name = run_name(self.study, config, key)
            tags = {"ray.trial_id": trial.trial_id, "grokray.replica": str(replica)}
            if PACK in trial.config:  # the Tune trial that trains it with others
                tags["grokray.pack"] = trial.trial_id
            params = applicable(config)  # a run's own config: what applies to it
            record = records.get(str(replica)) or {}
            untrained = record.get("stop_reason") == "dominated" and not record.get("steps_run")
            start = self.tracker.parent_start_ms if untrained else None
            self.logged_until[key] = self._retry(
                partial(self.tracker.start_trial, config_key=config_key(config), live=live, start_time=start),
                key, name, params, tags,
            )  # fmt: skip
            if self.logged_until[key] < 0:
                continue
            # a restarted trial: log what its result.json on storage has that a stopped or killed
            # driver had not sent yet
            if curves is None:
                curves = trial_curves(trial.path, trial.trial_id, trial.storage.storage_filesystem)
            frame = curves.get(key)
            if frame is not None:
                for row in frame[frame["step"] > self.logged_until[key]].to_dict("records"):
                    row = {k: v for k, v in row.items() if k != "trial_id" and pd.notna(v)}
                    self.tracker.log_trial_metrics(key, row, curve_keys(row))
                    self.logged_until[key] = int(row["step"])
        crash_point("runs_open")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if trial.trial_id not in self.opened:
            self._open(trial, trials, result)
        for replica, record in (result.get("replicas") or {}).items():
            key = run_key(trial.trial_id, int(replica))
            if record.get("step", -1) > self.logged_until.get(key, -1):
                self.tracker.log_trial_metrics(key, record, curve_keys(record))
                self.logged_until[key] = record["step"]
        # a trial's metrics go out every 5 s (a second per 100 runs for a larger pack: a flush is a
        # call per run); a pack that ends sooner sends them with its runs' outcomes
        now, runs = time.monotonic(), len(result.get("replicas") or ())
        if now - self.last_flush.setdefault(trial.trial_id, now) > max(5.0, runs / 100):
            self._retry(self.tracker.flush)
            self.last_flush[trial.trial_id] = now
        crash_point("result")

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        crash_point("checkpoint_registered")

    def _end(self, trial: Any, trials: list, status: str, error: str | None = None) -> None:
        crash_point("trial_end")
        if trial.trial_id not in self.opened:  # ended before its first result (raised at once)
            self._open(trial, trials, trial.last_result)
        replicas = (trial.last_result or {}).get("replicas") or {}
        curves = trial_curves(trial.local_path, trial.trial_id)
        configs = replica_configs(self.study, trial.config)
        weights = final_weights(trial)
        with tempfile.TemporaryDirectory() as tmp:
            for replica, config in enumerate(configs):
                key = run_key(trial.trial_id, replica)
                record = replicas.get(str(replica), {})
                outcome = outcome_keys(record)
                own = status
                if status == "FAILED" and ended_before_failure(record):
                    own = "FINISHED"  # ended before its pack raised: its outcome stands
                elif status == "FAILED":
                    outcome["stop_reason"] = "failed"  # grokked as last reported: the run's record stands
                frame = curves.get(key) if curves else None
                name = run_name(self.study, config, key, outcome)  # its outcome in the runs table
                folder = Path(tmp, key)
                folder.mkdir()
                # trained and done (none if the stopper ended it untrained)
                if replica in weights and own == "FINISHED":
                    save_weights(folder / WEIGHTS_FILE, config, weights[replica])
                drawn = self.figures < self.study.run_figures - self.tracker.ended_at_attach
                if drawn and frame is not None and len(frame) > 1 and "val_acc" in frame:
                    plot_run_curves(frame, outcome, folder / "grokking_curve.png", name)
                    self.figures += 1
                why = error if own == "FAILED" else None
                self._retry(self.tracker.end_trial, key, outcome, frame, own, why, folder, name)
        crash_point("trial_ended")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, trials, "FINISHED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # also on Ctrl-C / SIGTERM, where Tune ends the experiment early: send what is queued
        if self.tracker is not None:
            self._retry(self.tracker.flush)
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
                self._retry(self.tracker.supersede_orphans, {t.trial_id for t in trials})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, trials, "FAILED", error_line(trial) + " (trace: the trial's error.txt)")


def ended_before_failure(record: Mapping[str, Any]) -> bool:
    """Whether a replica of a trial that raised had already ended (grokked, budget, diverged,
    dominated) as last reported: in a pack, the others' failure does not undo its outcome."""
    return record.get("stop_reason", "running") not in ("running", "failed")


def final_weights(trial: Any) -> dict[int, Any]:
    """Each done replica's final weights, from the trial's newest checkpoint (written when its run
    ended); none if the trial has no checkpoint or it cannot be read."""
    checkpoint = getattr(trial, "checkpoint", None)
    if checkpoint is None:
        return {}
    from grokray.tune.trainable import newest_checkpoint_state

    try:
        state, _ = newest_checkpoint_state(checkpoint.filesystem, checkpoint.path)
    except Exception:  # a checkpoint gone or cut short: the run keeps its curves, not its weights
        return {}
    return dict(state.get("final_weights") or {})


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
        self.bar: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "bar": None}

    def setup(self, **info: Any) -> None:
        self.started = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rows = [
            row
            for t in trials
            if t.status == "TERMINATED" or t is trial
            for row in replica_rows(self.study, t.trial_id, t.config, t.last_result or {})
        ]
        self.estimate = _quick_estimate(
            rows, self.study.size_key() or "train_fraction", self.study.group_names(), self.study.group_bins()
        )
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
