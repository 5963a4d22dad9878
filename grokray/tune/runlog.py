"""The study's child runs in MLflow, made from what the Tune callback sends (``RunLog``): a run
per replica, metrics by ``log_batch``, outcomes, curves, weights and figures, outages ridden out.

It runs in the tracking writer's process (``grokray/tune/writer.py``), or in the driver with
``GROKRAY_TRACKING_WRITER=inline``; so it imports no Ray, and it sees trials only as ``TrialView``
(the few fields of a Tune trial it needs, picklable).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from grokray import settings
from grokray.config import applicable
from grokray.outcomes import curve_keys, outcome_keys
from grokray.study import Study
from grokray.tune.results import PACK, config_key, replica_configs, run_key, run_name, trial_curves


def retry_tracking(study_name: str, call: Callable[..., Any], *args: Any) -> Any:
    """Call the tracking server until it answers. An outage (up to
    ``GROKRAY_TRACKING_OUTAGE_SECONDS``, ``grokray.settings``) pauses the bookkeeping while the
    trials go on training; queued metrics stay queued until the server has taken them, so nothing
    is lost."""
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


@dataclasses.dataclass(frozen=True)
class TrialView:
    """What ``RunLog`` reads of a Tune trial: its id and config, its replicas' last records, where
    Tune writes its results (``path`` on storage, ``local_path`` on the driver's node) and its
    newest checkpoint (``checkpoint``: filesystem and path, or None)."""

    trial_id: str
    config: Mapping[str, Any]
    replicas: Mapping[str, Any]
    path: str | None
    filesystem: Any
    local_path: str | None
    checkpoint: tuple[Any, str] | None

    @classmethod
    def of(cls, trial: Any, result: Mapping[str, Any] | None = None) -> TrialView:
        """The view of a Tune trial, with the replicas of ``result`` (default its last result)."""
        result = trial.last_result if result is None else result
        checkpoint = getattr(trial, "checkpoint", None)
        storage = getattr(trial, "storage", None)
        return cls(
            trial_id=trial.trial_id,
            config=trial.config,
            replicas=(result or {}).get("replicas") or {},
            path=getattr(trial, "path", None),
            filesystem=getattr(storage, "storage_filesystem", None),
            local_path=getattr(trial, "local_path", None),
            checkpoint=(checkpoint.filesystem, checkpoint.path) if checkpoint is not None else None,
        )


class RunLog:
    """A child run per replica of each trial under the study's parent run.

    Its state is rebuilt when it is made (also after ``Tuner.restore``): child runs are found
    again by their run keys, never duplicated, and a restarted trial does not log again the steps
    its runs already have.
    """

    def __init__(self, study: Study, tracking_uri: str, parent_run_id: str) -> None:
        from grokray.tracking import StudyTracker

        self.study = study
        self.tracker: Any = self._retry(StudyTracker, study.name, tracking_uri)
        self._retry(self.tracker.attach, parent_run_id)
        self.last_flush: dict[str, float] = {}
        self.logged_until: dict[str, int] = {}
        self.figures = 0  # per-run figures drawn by this driver (``Study.run_figures``)
        self.live: set[str] = set()  # the trial ids the experiment knows (``open``)

    def _retry(self, call: Callable[..., Any], *args: Any) -> Any:
        return retry_tracking(self.study.name, call, *args)

    def ping(self) -> None:
        """Nothing: the driver waits for it to know every earlier message is made."""

    def open(self, trial: TrialView, new: Collection[str]) -> None:
        """Open (create, or find again) the child runs of ``trial``; ``new``: the trial ids the
        experiment added since the last ``open`` (a run of a trial it does not know is an orphan,
        continued by config)."""
        self.live.update(new)
        live = self.live
        curves: dict[str, pd.DataFrame] | None = None
        for replica, config in enumerate(replica_configs(self.study, trial.config)):
            key = run_key(trial.trial_id, replica)
            name = run_name(self.study, config, key)
            tags = {"ray.trial_id": trial.trial_id, "grokray.replica": str(replica)}
            if PACK in trial.config:  # the Tune trial that trains it with others
                tags["grokray.pack"] = trial.trial_id
            params = applicable(config)  # a run's own config: what applies to it
            record = trial.replicas.get(str(replica)) or {}
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
                curves = trial_curves(trial.path, trial.trial_id, trial.filesystem)
            frame = curves.get(key)
            if frame is not None:
                for row in frame[frame["step"] > self.logged_until[key]].to_dict("records"):
                    row = {k: v for k, v in row.items() if k != "trial_id" and pd.notna(v)}
                    self.tracker.log_trial_metrics(key, row, curve_keys(row))
                    self.logged_until[key] = int(row["step"])

    def result(self, trial_id: str, replicas: Mapping[str, Any]) -> None:
        """Queue the new evaluations of a trial's replicas; send what is queued every 5 s (a second
        per 100 runs for a larger pack: a flush is a call per run). A pack that ends sooner sends
        them with its runs' outcomes."""
        for replica, record in replicas.items():
            key = run_key(trial_id, int(replica))
            if record.get("step", -1) > self.logged_until.get(key, -1):
                self.tracker.log_trial_metrics(key, record, curve_keys(record))
                self.logged_until[key] = record["step"]
        now = time.monotonic()
        if now - self.last_flush.setdefault(trial_id, now) > max(5.0, len(replicas) / 100):
            self._retry(self.tracker.flush)
            self.last_flush[trial_id] = now

    def end(self, trial: TrialView, status: str, error: str | None = None) -> None:
        """End the child runs of ``trial`` (``status`` FINISHED or FAILED, ``error`` the failure's
        line): outcome tags and metrics, curves, final weights, a figure for the first runs."""
        from grokray.analysis.plots import plot_run_curves
        from grokray.weights import WEIGHTS_FILE, save_weights

        curves = trial_curves(trial.local_path, trial.trial_id)
        configs = replica_configs(self.study, trial.config)
        weights = final_weights(trial.checkpoint)
        with tempfile.TemporaryDirectory() as tmp:
            for replica, config in enumerate(configs):
                key = run_key(trial.trial_id, replica)
                record = trial.replicas.get(str(replica), {})
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

    def flush(self) -> None:
        self._retry(self.tracker.flush)

    def supersede(self, live: Collection[str]) -> None:
        """The study is complete: runs of trials it does not know (a killed driver's, whose config
        was not proposed again) are set aside."""
        self._retry(self.tracker.supersede_orphans, live)


def ended_before_failure(record: Mapping[str, Any]) -> bool:
    """Whether a replica of a trial that raised had already ended (grokked, budget, diverged,
    dominated) as last reported: in a pack, the others' failure does not undo its outcome."""
    return record.get("stop_reason", "running") not in ("running", "failed")


def final_weights(checkpoint: tuple[Any, str] | None) -> dict[int, Any]:
    """Each done replica's final weights, from the trial's newest checkpoint (``checkpoint``: its
    filesystem and path; written when its run ended); none if there is none or it cannot be read."""
    if checkpoint is None:
        return {}
    from grokray.tune.trainable import newest_checkpoint_state

    try:
        state, _ = newest_checkpoint_state(*checkpoint)
    except Exception:  # a checkpoint gone or cut short: the run keeps its curves, not its weights
        return {}
    return dict(state.get("final_weights") or {})
