"""Ray Tune wiring: trainable, OptunaSearch from a Study, the grokking-onset Stopper, MLflow and
progress callbacks, the trial table and the estimate at the end.

Everything Ray lives here; the training loop (``train.py``) and MLflow (``tracking.py``) know
nothing of it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from optuna.samplers import GridSampler
from ray.tune import Callback, Stopper
from ray.tune.search.optuna import OptunaSearch

from grokray.study import OUTCOME_KEYS, Dimension, Study, StudyError, curve_keys

STATE_FILE = "grokray.json"


# ---------------------------------------------------------------------------------------------
# The search space as an Optuna define-by-run function (module-level class: picklable)


class DefineByRun:
    """Asks an Optuna trial for every searched name of the study.

    A linked grid is asked for only under its value (``linked={"regularizer": {"l1":
    {"reg_strength": grid(...)}}}``), under the Optuna name ``reg_strength[regularizer=l1]`` (a
    name has one distribution in an Optuna study), and returned under its config name. With
    ``points`` (a grid study with linked grids) the trial asks for one index into the union of
    the grids, ``grid_point``, and the point's values are returned."""

    def __init__(
        self,
        space: Mapping[str, Dimension],
        linked: Mapping[str, Mapping[Any, Mapping[str, Dimension]]] | None = None,
        fixed: Mapping[str, Any] | None = None,
        points: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.space = dict(space)
        self.linked = {k: {v: dict(d) for v, d in by.items()} for k, by in (linked or {}).items()}
        self.fixed = dict(fixed or {})
        self.points = [dict(p) for p in points] if points is not None else None

    @staticmethod
    def _suggest(trial: Any, name: str, dim: Dimension) -> Any:
        if dim.choices is not None:
            return trial.suggest_categorical(name, list(dim.choices))
        if dim.kind == "int":
            return trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
        return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        if self.points is not None:
            index = trial.suggest_categorical(GRID_POINT, list(range(len(self.points))))
            return dict(self.points[index])
        values = {name: self._suggest(trial, name, dim) for name, dim in self.space.items()}
        extra: dict[str, Any] = {}
        for key, by_value in self.linked.items():
            current = values.get(key, self.fixed.get(key))
            for name, dim in by_value.get(current, {}).items():
                extra[name] = self._suggest(trial, f"{name}[{key}={current}]", dim)
        return extra or None


GRID_POINT = "grid_point"  # the Optuna parameter of a grid study with linked grids


def make_space(study: Study) -> DefineByRun:
    points = study.grid_points() if study.sampler == "grid" and study.linked_grids() else None
    return DefineByRun(study.space, study.linked_grids(), study.config, points)


def make_sampler(study: Study, seed: int = 0) -> Any:
    import optuna

    if not study.space and not study.linked_grids():  # seeds only (the grid sampler needs a grid)
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "grid":
        size_key = study.size_key()
        largest_first = bool(study.monotone_stop and size_key is not None)
        if study.linked_grids():  # one index into the union of the per-value grids
            points = study.grid_points()
            grid = {GRID_POINT: list(range(len(points)))}
            if largest_first:
                return LargestFirstGridSampler(
                    grid, GRID_POINT, seed=seed, sizes=[p[size_key] for p in points]
                )
            return optuna.samplers.GridSampler(grid, seed=seed)
        grid = {name: list(dim.grid_values() or ()) for name, dim in study.space.items()}
        if largest_first:
            return LargestFirstGridSampler(grid, size_key, seed=seed)
        return optuna.samplers.GridSampler(grid, seed=seed)
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if study.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


class LargestFirstGridSampler(GridSampler):
    """Optuna's grid sampler, visiting the training sizes from the largest down.

    Trials that grok end early and the ones that will not are the ones below the critical size:
    largest first, the sizes that fail are found after the ones that grok, and ``GrokStopper``'s
    monotone rule can stop the smaller sizes below them. Points of equal size keep the seeded
    shuffle of ``GridSampler`` (which gives trial ``n`` the grid point ``n`` of its list)."""

    def __init__(
        self,
        search_space: Mapping[str, Sequence[Any]],
        size_key: str,
        seed: int = 0,
        sizes: Sequence[float] | None = None,
    ) -> None:
        super().__init__(dict(search_space), seed=seed)
        column = self._param_names.index(size_key)
        if sizes is None:  # the size is a grid column
            self._all_grids.sort(key=lambda point: -float(point[column]))  # stable
        else:  # the column is an index into points whose sizes are ``sizes``
            self._all_grids.sort(key=lambda point: -float(sizes[int(point[column])]))


def make_search(study: Study, storage: Any = None, study_name: str | None = None) -> Any:
    """OptunaSearch over the study's space (seeds are replicas inside each trial, not trials).

    Without ``storage`` the Optuna study lives in the searcher (in memory, saved with the Tune
    experiment); with an ``optuna.storages.RDBStorage`` it lives in that database under
    ``study_name``, where other tools can read it while the study runs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        return OptunaSearch(
            space=make_space(study),
            metric=study.metric,
            mode=study.mode,
            sampler=make_sampler(study),
        )
    return StoredOptunaSearch(
        space=make_space(study),
        metric=study.metric,
        mode=study.mode,
        sampler=make_sampler(study),
        storage=storage,
        study_name=study_name,
    )


class StoredOptunaSearch(OptunaSearch):
    """OptunaSearch on an RDB storage that outlives the driver, made safe for ``Tuner.restore``.

    After a hard kill of the driver, ``Tuner.restore`` brings the searcher back as it was at the
    last experiment snapshot, while the database holds everything up to the kill:

    - a trial that finished after the snapshot is run again from its checkpoint and reports to an
      Optuna trial the database already has as finished: Optuna raises ``UpdateFinishedTrialError``,
      and the result it already holds stands;
    - Optuna trials asked for after the snapshot belong to Tune trials the restored experiment does
      not know: nothing would ever finish them, so ``restore`` marks them FAIL and enqueues their
      configs again (the restored experiment asks for as many new trials as it lost; a grid
      sampler counts a FAIL trial as a visited grid point, so without the re-queue its point
      would never be trained).
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            super().on_trial_complete(trial_id, result, error)
        except UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        live = {
            ot_trial._trial_id
            for trial_id, ot_trial in self._ot_trials.items()
            if trial_id not in self._completed_trials
        }
        requeue_orphaned_optuna_trials(self._ot_study, live)


def requeue_orphaned_optuna_trials(optuna_study: Any, live: set[int]) -> list[int]:
    """Mark FAIL every RUNNING trial of ``optuna_study`` whose storage id is not in ``live`` and
    enqueue its params, so that the next ``ask`` proposes them again; returns the failed trials'
    numbers."""
    from optuna.trial import TrialState

    storage = optuna_study._storage
    failed = []
    for frozen in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen._trial_id in live:
            continue
        storage.set_trial_user_attr(
            frozen._trial_id, "grokray_fail_reason", "the driver was killed before this trial was saved"
        )
        storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
        if frozen.params:  # empty only if the driver died between ask and suggest
            requeued_from = {"grokray_requeued_from": frozen.number}
            optuna_study.enqueue_trial(dict(frozen.params), user_attrs=requeued_from)
        failed.append(frozen.number)
    return failed


def open_optuna_storage(url: str) -> Any:
    """``optuna.storages.RDBStorage(url)``, or a StudyError naming ``--optuna-storage``."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StudyError(
            "--optuna-storage", f"cannot open the Optuna storage {masked_url(url)}: {reason}"
        ) from None


def masked_url(url: str) -> str:
    """A database URL with its password hidden (for printing and for grokray.json)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def trial_config(study: Study, sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a Tune trial (its first replica)."""
    return study.resolve(sampled)


def replica_configs(study: Study, sampled: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One config per seed replica of a trial: seed, seed+1, … (one replica if ``seed`` is searched)."""
    config = trial_config(study, sampled)
    count = 1 if "seed" in study.space else study.seeds
    return [{**config, "seed": config["seed"] + i, "replicas": count} for i in range(count)]


def run_key(trial_id: str, replica: int) -> str:
    """The name of one replica of one Tune trial: its MLflow child run and trial-table row."""
    return f"{trial_id}-r{replica}"


# ---------------------------------------------------------------------------------------------
# Objectives: meaningful at any stop (a stopped trial reaches Optuna with its last result)


def objectives(record: Mapping[str, Any], budget: int) -> dict[str, float]:
    """``censored_grokking_step``: the grokking step, or twice the budget if it has not grokked;
    ``boundary_score``: the training fraction if grokked, else 2 - fraction. Minimizing it seeks
    the smallest data that still groks, so the sampler concentrates near the critical size."""
    fraction = float(record.get("train_fraction", 0.0))
    grokked = bool(record.get("grokked"))
    return {
        "censored_grokking_step": float(record["grokking_step"]) if grokked else 2.0 * budget,
        "boundary_score": fraction if grokked else 2.0 - fraction,
        "final_val_acc": float(record.get("val_acc", record.get("final_val_acc", 0.0))),
    }


def trial_result(latest: Mapping[int, Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial reports to Tune: every replica's latest record, the objectives averaged over
    replicas, and ``stop_reason`` = ``running`` while any replica still trains."""
    records = [dict(latest[r]) for r in sorted(latest)]
    scores = [objectives({**r, "train_fraction": config["train_fraction"]}, config["steps"]) for r in records]
    result: dict[str, Any] = {key: sum(score[key] for score in scores) / len(scores) for key in scores[0]}
    result.update(
        step=max(r["step"] for r in records),
        replicas={str(r["replica"]): {k: v for k, v in r.items() if v is not None} for r in records},
        n_grokked=sum(bool(r["grokked"]) for r in records),
        stop_reason="running" if any(r["stop_reason"] == "running" for r in records) else "done",
    )
    return result


CHECKPOINT_SECONDS = float(os.environ.get("GROKRAY_CHECKPOINT_SECONDS", "30"))
TRACKING_OUTAGE_SECONDS = float(os.environ.get("GROKRAY_TRACKING_OUTAGE_SECONDS", "600"))


def run_trial(sampled: dict[str, Any], study: Study, early_stop: bool = True) -> None:
    """The Tune trainable: train the trial's seed replicas as one batch, report every evaluation.

    A checkpoint (the whole run state) goes with a report every ``CHECKPOINT_SECONDS`` and at the
    end, so a retried (``FailureConfig``) or resumed trial continues where it left off.
    """
    import ray
    import torch
    from ray import tune

    from grokray.train import ReplicaRun

    configs = replica_configs(study, sampled)
    torch.set_num_threads(max(1, int(study.cpus_per_trial)))
    node_id = ray.get_runtime_context().get_node_id()
    run = ReplicaRun(configs, None, stop_on_grok=early_stop)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        state, registered_step = newest_checkpoint_state(checkpoint.filesystem, checkpoint.path)
        run.load_state_dict(state)
        # the evaluations after the checkpoint Tune knows may never have reached the driver's
        # files: report them again (the MLflow callback and the curves skip steps they have)
        for result in replayed_results(run.histories, registered_step, configs[0]):
            tune.report({**result, "ray_node_id": node_id, "replayed": True})
    last_saved = time.monotonic()

    def on_eval(records: list[dict[str, Any]]) -> None:
        nonlocal last_saved
        result = {**trial_result(run.latest_records(), configs[0]), "ray_node_id": node_id}
        if time.monotonic() - last_saved < CHECKPOINT_SECONDS and run.active:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as directory:
            torch.save(run.state_dict(), Path(directory) / "state.pt")
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
        last_saved = time.monotonic()

    run.on_eval = _with_fault_injection(on_eval, run)
    run.run()


def newest_checkpoint_state(filesystem: Any, registered: str) -> tuple[dict[str, Any], int]:
    """The run state to resume from: the furthest-trained loadable ``state.pt`` among the one Tune
    hands back (``registered``) and the trial's checkpoints after it; and the registered one's step.

    A report's checkpoint is on storage before the driver learns of it, and Tune registers it
    only after the driver has logged the report's result: a driver stopped or killed in between
    leaves the experiment state naming the checkpoint before, and resuming from that one would
    train those steps twice. Tune numbers the checkpoints of a resumed trial on from the
    registered one, over older unregistered ones, so the step decides, not the number. A
    checkpoint cut short by the kill does not load and is passed over."""
    import io

    import pyarrow.fs as pafs
    import torch

    def load(path: str) -> dict[str, Any]:
        with filesystem.open_input_stream(f"{path}/state.pt") as stream:
            return torch.load(io.BytesIO(stream.read()), weights_only=False)

    def index_of(name: str) -> int | None:
        digits = name.removeprefix("checkpoint_")
        return int(digits) if name.startswith("checkpoint_") and digits.isdigit() else None

    best = load(registered)
    registered_step = int(best["step"])
    parent, _, name = registered.rstrip("/").rpartition("/")
    registered_index = index_of(name)
    if registered_index is None:
        return best, registered_step
    for info in filesystem.get_file_info(pafs.FileSelector(parent)):
        index = index_of(info.base_name)
        if info.type != pafs.FileType.Directory or index is None or index <= registered_index:
            continue
        try:
            state = load(info.path)
        except Exception:  # written only in part when the driver died
            continue
        if state["step"] > best["step"]:
            best = state
    return best, registered_step


def replayed_results(
    histories: list[list[dict[str, Any]]], after_step: int, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The trial results of every evaluation after ``after_step``, rebuilt from the replicas'
    histories in a checkpoint as ``run_trial`` reported them."""
    steps = sorted({r["step"] for history in histories for r in history if r["step"] > after_step})
    results = []
    for step in steps:
        latest = {}
        for row, history in enumerate(histories):
            upto = [record for record in history if record["step"] <= step]
            if upto:
                latest[row] = upto[-1]
        results.append(trial_result(latest, config))
    return results


def _with_fault_injection(
    on_eval: Callable[[list[dict[str, Any]]], None], run: Any
) -> Callable[[list[dict[str, Any]]], None]:
    """``GROKRAY_INJECT_FAULT=raise-once@STEP`` (or ``raise-always@STEP``) makes a trial raise at its
    first evaluation at or past STEP: once per trial, or on every attempt. For fault drills
    (retries from checkpoints, failed trials recorded while the study goes on), never set in use."""
    spec = os.environ.get("GROKRAY_INJECT_FAULT", "")
    if not spec:
        return on_eval
    mode, _, at = spec.partition("@")
    from ray import tune

    marker = Path(tune.get_context().get_trial_dir()) / "injected_fault"

    def faulty(records: list[dict[str, Any]]) -> None:
        on_eval(records)
        if run.step >= int(at) and run.active and (mode == "raise-always" or not marker.exists()):
            marker.touch()
            raise RuntimeError(f"injected fault at step {run.step} ({spec})")

    return faulty


# ---------------------------------------------------------------------------------------------
# Stopper and callbacks (module-level: Tune pickles them into the experiment state)


class GrokStopper(Stopper):
    """Ends a trial once grokking is confirmed (or it diverged, or its budget is spent), and with
    ``monotone`` = k > 0 a trial that cannot grok because more data did not: one whose training
    size lies below k larger sizes (same other searched values, ``group_keys``) where every seed
    ran its whole budget without grokking, all of them below the smallest size where any seed
    grokked. P(grok within the budget) rising with the data size is what the critical-size
    estimate assumes; a grokked seed below a failed size (evidence against it, in that group)
    keeps that failed size from counting.

    A stopped trial's result is marked in place before Tune logs it (result.json, callbacks,
    Optuna, the trial table all see it): its running seeds get ``stop_reason`` ``dominated`` and
    ``phase`` None (not observed), ``grokked`` stays False."""

    def __init__(
        self,
        size_key: str | None = None,
        group_keys: Sequence[str] = (),
        monotone: int = 0,
        binned: Mapping[str, tuple[float, float, bool]] | None = None,
    ) -> None:
        self.size_key, self.group_keys, self.monotone = size_key, tuple(group_keys), monotone
        self.binned = dict(binned or {})  # continuous group keys, binned as the estimate bins them
        self.failed: dict[tuple[Any, ...], set[float]] = {}
        self.smallest_grokked: dict[tuple[Any, ...], float] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        done = result.get("stop_reason", "running") != "running"
        if not self.monotone or self.size_key is None:
            return done
        config = result.get("config") or {}
        if self.size_key not in config:
            return done
        size = float(config[self.size_key])
        group = self.group_of(config)
        records = list((result.get("replicas") or {}).values())
        if any(record.get("grokked") for record in records):
            self.smallest_grokked[group] = min(size, self.smallest_grokked.get(group, math.inf))
        elif done and records and all(record.get("stop_reason") == "budget" for record in records):
            self.failed.setdefault(group, set()).add(size)
        if done:
            return True
        ceiling = self.smallest_grokked.get(group, math.inf)
        if sum(size < f < ceiling for f in self.failed.get(group, ())) < self.monotone:
            return False
        for record in records:
            if record.get("stop_reason") == "running":
                record.update(stop_reason="dominated", phase=None)
        return True

    def group_of(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The group of a trial: exact values, and the estimate's bin for continuous keys."""
        from grokray.analysis.critical import bin_label

        binned = getattr(self, "binned", {})  # a stopper pickled before binning existed has none
        return tuple(
            bin_label(config[key], binned[key])
            if key in binned and config.get(key) is not None
            else str(config.get(key))
            for key in self.group_keys
        )

    def stop_all(self) -> bool:
        return False


def retry_tracking(study_name: str, call: Callable[..., Any], *args: Any) -> Any:
    """Call the tracking server until it answers. An outage (up to ``TRACKING_OUTAGE_SECONDS``)
    pauses the driver's bookkeeping while the trials go on training; queued metrics stay queued
    until the server has taken them, so nothing is lost."""
    deadline, delay, warned = time.monotonic() + TRACKING_OUTAGE_SECONDS, 1.0, False
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
        curves: dict[str, pd.DataFrame] | None = None
        for replica, config in enumerate(replica_configs(self.study, trial.config)):
            key = run_key(trial.trial_id, replica)
            name = f"f={config['train_fraction']:.3g} seed={config['seed']} [{key}]"
            tags = {"ray.trial_id": trial.trial_id, "grokray.replica": str(replica)}
            self.logged_until[key] = self._retry(self.tracker.start_trial, key, name, config, tags)
            if self.logged_until[key] < 0:
                continue
            # a restarted trial: log what its result.json on storage has that a stopped or killed
            # driver had not sent yet
            if curves is None:
                curves = _trial_curves(trial.path, trial.trial_id, trial.storage.storage_filesystem)
            frame = curves.get(key)
            if frame is not None:
                for record in frame[frame["step"] > self.logged_until[key]].to_dict("records"):
                    record = {k: v for k, v in record.items() if k != "trial_id" and pd.notna(v)}
                    self.tracker.log_trial_metrics(key, record, curve_keys(record))
                    self.logged_until[key] = int(record["step"])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        for replica, record in (result.get("replicas") or {}).items():
            key = run_key(trial.trial_id, int(replica))
            if record.get("step", -1) > self.logged_until.get(key, -1):
                self.tracker.log_trial_metrics(key, record, curve_keys(record))
                self.logged_until[key] = record["step"]
        now = time.monotonic()
        if now - self.last_flush.get(trial.trial_id, 0.0) > 5.0:
            self._retry(self.tracker.flush)
            self.last_flush[trial.trial_id] = now

    def _end(self, trial: Any, status: str, error: str | None = None) -> None:
        replicas = (trial.last_result or {}).get("replicas") or {}
        curves = _trial_curves(trial.local_path, trial.trial_id)
        for replica in range(len(replica_configs(self.study, trial.config))):
            key = run_key(trial.trial_id, replica)
            record = replicas.get(str(replica), {})
            outcome = {k: record.get(k) for k in OUTCOME_KEYS}
            if status == "FAILED":
                outcome["stop_reason"] = "failed"
            frame = curves.get(key) if curves else None
            self._retry(self.tracker.end_trial, key, outcome, frame, status, error)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "FINISHED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # also on Ctrl-C / SIGTERM, where Tune ends the experiment early: send what is queued
        if self.tracker is not None:
            self._retry(self.tracker.flush)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        trace = _error_text(trial)
        lines = [line for line in trace.splitlines() if line.strip()]
        self._end(
            trial, "FAILED", (lines[-1] if lines else "trial failed") + " (trace: the trial's error.txt)"
        )


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


def _replica_rows(
    study: Study, trial_id: str, sampled: Mapping[str, Any], result: Mapping[str, Any]
) -> list[dict]:
    """One row per replica of a trial: its config and the outcome keys of its latest record."""
    replicas = result.get("replicas") or {}
    rows = []
    for replica, config in enumerate(replica_configs(study, sampled)):
        record = replicas.get(str(replica), {})
        row = {
            "trial_id": run_key(trial_id, replica),
            "tune_trial_id": trial_id,
            "replica": replica,
            **config,
        }
        row.update({k: record.get(k) for k in (*OUTCOME_KEYS, "doshi_phase", "n_train", "n_total")})
        # the last value of every other curve (norms, recovery error, clean train accuracy, ...)
        for key in curve_keys(record):
            row.setdefault(f"final_{key}", record[key])
        rows.append(row)
    return rows


class ProgressCallback(Callback):
    """One compact line: runs done / running / grokked, elapsed, current estimate."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.started = time.monotonic()
        self.last = 0.0
        self.estimate = ""

    def setup(self, **info: Any) -> None:
        self.started = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rows = [
            row
            for t in trials
            if t.status == "TERMINATED" or t is trial
            for row in _replica_rows(self.study, t.trial_id, t.config, t.last_result or {})
        ]
        self.estimate = _quick_estimate(rows, self.study.size_key() or "train_fraction")
        self._print(trials, force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._print(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._print(trials, force=True)
        if sys.stdout.isatty():
            print()

    def _print(self, trials: list, force: bool = False) -> None:
        now, tty = time.monotonic(), sys.stdout.isatty()
        if not force and now - self.last < (1.0 if tty else 15.0):
            return
        self.last = now
        done = running = grokked = failed = dominated = 0
        for t in trials:
            records = ((t.last_result or {}).get("replicas") or {}).values()
            if t.status == "ERROR":
                failed += len(replica_configs(self.study, t.config))
                continue
            finished = [r for r in records if r.get("stop_reason") != "running" or t.status == "TERMINATED"]
            done += len(finished)
            grokked += sum(bool(r.get("grokked")) for r in finished)
            dominated += sum(r.get("stop_reason") == "dominated" for r in finished)
            if t.status == "RUNNING":
                running += len(replica_configs(self.study, t.config)) - len(finished)
        elapsed = int(now - self.started)
        line = (
            f"[{self.study.name}] {done + failed}/{self.study.total_trials} done, {running} running, "
            f"{grokked} grokked"
            + (f", {failed} failed" if failed else "")
            + (f", {dominated} stopped below sizes that did not grok" if dominated else "")
            + f" | {elapsed // 60}m{elapsed % 60:02d}s"
            + (f" | {self.estimate}" if self.estimate else "")
        )
        if tty:
            print("\r" + line.ljust(100), end="", flush=True)
        else:
            print(line, flush=True)


def _trial_curves(local_path: str | None, trial_id: str, filesystem: Any = None) -> dict[str, pd.DataFrame]:
    """Each replica's evaluation records, read back from the ``result.json`` Tune wrote (a local
    directory, or a path on ``filesystem``)."""
    if not local_path:
        return {}
    if filesystem is not None:
        try:
            with filesystem.open_input_stream(f"{local_path}/result.json") as stream:
                text = stream.read().decode()
        except (FileNotFoundError, OSError):
            return {}
    else:
        path = Path(local_path) / "result.json"
        if not path.exists():
            return {}
        text = path.read_text()
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        for replica, record in (json.loads(line).get("replicas") or {}).items():
            rows.setdefault(run_key(trial_id, int(replica)), []).append(
                {"step": record.get("step"), **{k: record.get(k) for k in curve_keys(record)}}
            )
    frames = {}
    for key, records in rows.items():
        frame = (
            pd.DataFrame(records).drop_duplicates("step", keep="last").sort_values("step", ignore_index=True)
        )
        frame.insert(0, "trial_id", key)
        frames[key] = frame
    return frames


def _quick_estimate(rows: list[dict[str, Any]], size_col: str = "train_fraction") -> str:
    from grokray.analysis import critical_data_size

    table = pd.DataFrame(rows)
    if table.empty or size_col not in table or table[size_col].nunique() < 2:
        return ""
    estimates = critical_data_size(table, size_col=size_col, group_cols=(), n_bootstrap=100)
    value = estimates[0]["critical_fraction"]
    if value is None or not math.isfinite(value):
        return ""
    if size_col == "train_size":
        return f"critical size ≈ {estimates[0]['critical_size']:g}"
    return f"critical fraction ≈ {value:.3f} [{estimates[0]['ci_low']:.3f}, {estimates[0]['ci_high']:.3f}]"


# ---------------------------------------------------------------------------------------------
# Storage: a local directory or any pyarrow filesystem URI


class Storage:
    """Where a study's results live: a local directory (as given, made absolute) or any
    ``pyarrow.fs`` URI (``file:///abs``, ``s3://bucket/prefix?endpoint_override=host:port&scheme=http``,
    ``gs://bucket/prefix``). Tune gets the filesystem and the path on it; grokray's own files
    (state, trial table, estimate, plots) go through the same filesystem."""

    def __init__(self, location: str) -> None:
        import pyarrow.fs as pafs

        if "://" in location:
            self.filesystem, path = pafs.FileSystem.from_uri(location)
            self.scheme = location.split("://", 1)[0]
        else:
            self.filesystem, path = pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
            self.scheme = ""
        self.local = isinstance(self.filesystem, pafs.LocalFileSystem)
        self.path = path.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def show(self, path: str) -> str:
        """``path`` as a user reads it: a local path, or ``scheme://path`` (no query options)."""
        return path if self.local else f"{self.scheme}://{path}"

    @property
    def tune_filesystem(self) -> Any:
        """Tune's ``storage_filesystem``: None for a local directory (Tune's default)."""
        return None if self.local else self.filesystem

    def exists(self, path: str) -> bool:
        import pyarrow.fs as pafs

        return self.filesystem.get_file_info(path).type != pafs.FileType.NotFound

    def read_text(self, path: str) -> str:
        with self.filesystem.open_input_stream(path) as stream:
            return stream.read().decode()

    def write_bytes(self, path: str, data: bytes) -> None:
        self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.filesystem.open_output_stream(path) as stream:
            stream.write(data)

    def move(self, source: str, destination: str) -> None:
        """Rename a directory; object stores cannot, so there it is copied, then deleted."""
        import pyarrow.fs as pafs

        try:
            self.filesystem.move(source, destination)
        except (OSError, NotImplementedError):
            pafs.copy_files(source, destination, self.filesystem, self.filesystem)
            self.filesystem.delete_dir(source)


def _restore_decision(study: Study, store: Storage, experiment_dir: str, resume: bool) -> bool:
    """Whether to continue the run in ``experiment_dir`` (``Tuner.restore``) or start a new one.

    The entry point is idempotent (a rerun, a job retried by its scheduler): an unfinished run of
    the same study is continued even without ``--resume``. A finished run, a changed study (without
    ``--resume``) or a directory Tune cannot restore is moved aside and a new run starts. With
    ``--resume``, a changed study is an error."""
    from ray import tune

    shown = store.show(experiment_dir)
    if not store.exists(experiment_dir):
        if resume:
            print(f"[{study.name}] nothing to resume in {shown}; starting fresh", flush=True)
        return False
    restorable = tune.Tuner.can_restore(experiment_dir, storage_filesystem=store.tune_filesystem)
    state_path = f"{experiment_dir}/{STATE_FILE}"
    saved = json.loads(store.read_text(state_path)) if restorable and store.exists(state_path) else {}
    same = saved.get("fingerprint") == study.fingerprint()
    finished = store.exists(f"{experiment_dir}/estimate.json")
    if resume and restorable:
        if not same:
            raise StudyError(
                "--resume",
                f"the study in {shown} was run with a different definition; "
                "run without --resume to start afresh (the old results are kept aside)",
            )
        return True
    if restorable and same and not finished and not resume:
        print(f"[{study.name}] resuming the unfinished run in {shown} (same study)", flush=True)
        return True
    aside = f"{experiment_dir}.{time.strftime('%Y%m%d-%H%M%S')}"
    if resume:
        why = "nothing to resume"
    elif finished and same:
        why = "it holds a finished run"
    elif restorable and saved:
        why = "the study changed"
    else:
        why = "it holds a run that cannot be resumed"
    print(f"[{study.name}] {why} in {shown}: kept as {store.show(aside)}; starting a new run", flush=True)
    store.move(experiment_dir, aside)
    return False


def _connect_ray(address: str | None, verbose: bool) -> None:
    """A local Ray, or the cluster at ``address`` (``auto``, ``HOST:6379``, ``ray://HOST:10001``).
    A cluster that is not there is bad input: one line, before anything is started."""
    import socket

    import ray

    _quiet_ray(verbose)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not address:
        ray.init(
            include_dashboard=False, logging_level="WARNING", log_to_driver=verbose, configure_logging=True
        )
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if host and port.isdigit():  # fail in seconds, not after Ray's minute of retries
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            raise StudyError("--address", f"no Ray cluster answers at {address} ({err})") from None
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=verbose)
    except ConnectionError as err:
        hint = "start one with `ray start --head`" if address == "auto" else "check the address"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StudyError("--address", f"no running Ray cluster at {address} ({first}); {hint}") from None
    resources = ray.cluster_resources()
    print(
        f"grokray: joined the Ray cluster at {address} ({len([n for n in ray.nodes() if n['Alive']])} nodes, "
        f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)",
        flush=True,
    )


# ---------------------------------------------------------------------------------------------
# The run


def run_study(
    study: Study,
    storage: str = "results",
    address: str | None = None,
    verbose: bool = False,
    early_stop: bool = True,
    resume: bool = False,
    optuna_storage: str | None = None,
) -> dict[str, Any]:
    """Run ``study`` through Ray Tune, track it in MLflow, and return the summary.

    ``optuna_storage``: a database URL for Optuna's study (default: in memory, in the searcher)."""
    from ray import tune

    from grokray.tracking import StudyTracker

    store = Storage(storage)
    experiment_dir = store.join(study.name)
    state_path = f"{experiment_dir}/{STATE_FILE}"
    optuna_rdb = open_optuna_storage(optuna_storage) if optuna_storage else None  # a bad URL: exit 2 now
    _connect_ray(address or os.environ.get("RAY_ADDRESS"), verbose)
    restoring = _restore_decision(study, store, experiment_dir, resume)
    saved = json.loads(store.read_text(state_path)) if restoring and store.exists(state_path) else {}
    optuna_fields = _optuna_fields(saved, optuna_storage, restoring)
    # our own retry loop (retry_tracking) rides out outages; MLflow's should give up quickly
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    tracker = StudyTracker(study.name)
    if saved.get("parent_run_id"):
        tracker.reopen_study(saved["parent_run_id"])
    else:
        params = {**study.resolve({}), **{f"space.{k}": _describe(d) for k, d in study.space.items()}}
        for key in study.space:
            params.pop(key, None)
        params.update(
            seeds=study.seeds,
            sampler=study.sampler,
            objective=study.objective,
            total_trials=study.total_trials,
            early_stop=early_stop,
            monotone_stop=study.monotone_stop if early_stop else 0,
        )
        tracker.start_study(params, {"grokray.fingerprint": study.fingerprint()})

    status = "FAILED"
    try:
        _sigterm_as_sigint()  # after ray.init, which installs a SIGTERM handler of its own
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, study=study, early_stop=early_stop),
            {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial},
        )
        run_config = tune.RunConfig(
            name=study.name,
            storage_path=store.path,
            storage_filesystem=store.tune_filesystem,
            stop=GrokStopper(study.size_key(), study.group_names(), study.monotone_stop, study.group_bins())
            if early_stop
            else None,
            callbacks=[MLflowCallback(study, tracker.uri, tracker.parent_run_id)]
            + ([] if verbose else [ProgressCallback(study)]),
            failure_config=tune.FailureConfig(max_failures=study.max_failures),
            verbose=2 if verbose else 0,
            # keep every checkpoint: after a hard kill of the driver, the experiment state on disk
            # may name an older checkpoint than the newest, and it must still exist
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        )
        if restoring:
            tuner = tune.Tuner.restore(
                experiment_dir,
                trainable=trainable,
                resume_errored=True,
                storage_filesystem=store.tune_filesystem,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=make_search(study, optuna_rdb, f"{study.name}.{tracker.parent_run_id}"),
                    num_samples=study.num_configs,
                    max_concurrent_trials=study.max_concurrent,
                    metric=None,
                    mode=None,
                ),
                run_config=run_config,
            )
        if optuna_storage and not restoring:
            optuna_fields["optuna_study"] = f"{study.name}.{tracker.parent_run_id}"
        if optuna_fields:
            print(f"[{study.name}] optuna: {optuna_fields['optuna_storage']}, "
                  f"study {optuna_fields['optuna_study']}", flush=True)  # fmt: skip
        state = {"parent_run_id": tracker.parent_run_id, "fingerprint": study.fingerprint(), **optuna_fields}
        store.write_bytes(state_path, json.dumps(state).encode())
        results = tuner.fit()
        if TERMINATED.is_set() or results.num_terminated + results.num_errors < study.num_configs:
            # Tune's own SIGINT handler ends fit() early but normally: that is an interruption
            raise KeyboardInterrupt
        table = trial_table(study, results)
        curves = [
            frame for r in results for frame in _trial_curves(r.path, _trial_id(r), store.filesystem).values()
        ]
        summary = retry_tracking(study.name, finish_study, study, tracker, table, curves, store)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        retry_tracking(study.name, tracker.end_study, status)


def _optuna_fields(saved: Mapping[str, Any], url: str | None, restoring: bool) -> dict[str, Any]:
    """What ``grokray.json`` records of the Optuna storage (its URL without password, the study).

    A restored experiment keeps the searcher it was run with, and so its storage: ``--resume``
    with another ``--optuna-storage`` (or with one where the study ran in memory) is refused."""
    if not restoring:
        return {"optuna_storage": masked_url(url)} if url else {}
    kept = {key: saved[key] for key in ("optuna_storage", "optuna_study") if key in saved}
    if url and masked_url(url) != kept.get("optuna_storage"):
        was = kept.get("optuna_storage") or "Optuna in memory"
        raise StudyError(
            "--optuna-storage",
            f"the study in the results directory ran with {was}; resume without --optuna-storage "
            "(it continues where it was) or run without --resume to start afresh",
        )
    return kept


def _sigterm_as_sigint() -> None:
    """SIGTERM (a scheduler, ``kill``) stops the study like Ctrl-C: state saved, runs ended."""
    import signal

    def on_sigterm(signum: int, frame: Any) -> None:
        TERMINATED.set()  # Tune may end a trial killed mid-stop as errored: fit() then looks complete
        os.kill(os.getpid(), signal.SIGINT)

    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked in a Ray Job driver
        signal.signal(signal.SIGTERM, on_sigterm)


TERMINATED = threading.Event()


def _quiet_ray(verbose: bool) -> None:
    """Our progress line replaces Ray's tables and Optuna's chatter unless ``-v``."""
    import logging

    if verbose:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("ray.tune.search.optuna.optuna_search", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _describe(dim: Dimension) -> str:
    if dim.choices is not None:
        return f"{dim.kind}{list(dim.choices)}"
    return f"{dim.kind}[{dim.low}, {dim.high}]" + (f" step {dim.step}" if dim.step else "")


def _trial_id(result: Any) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def trial_table(study: Study, results: Any) -> pd.DataFrame:
    """One row per replica run: run key, Tune trial, the full config, the outcome, the data sizes."""
    rows = []
    for result in results:
        trial_rows = _replica_rows(study, _trial_id(result), result.config or {}, result.metrics or {})
        for row in trial_rows:
            row["failed"] = result.error is not None
            if result.error is not None:
                row["stop_reason"] = "failed"
                row["grokked"] = None
        rows.extend(trial_rows)
    table = pd.DataFrame(rows)
    for key in ("memorization_step", "grokking_step", "grokking_delay"):
        if key in table:
            table[key] = pd.to_numeric(table[key], errors="coerce")
    return table


def outcome_summary(study: Study, table: pd.DataFrame) -> str:
    """Per searched config (seeds pooled): runs, grokked, mean grokking step and delay, phases."""
    names = [k for k in study.searched_names() if k in table]
    if table.empty:
        return "(no trials)"
    groups = table.groupby(names, sort=True, dropna=False) if names else [((), table)]
    rows = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{n}={v}" for n, v in zip(names, key, strict=True)) or "all"
        phases = (
            part["doshi_phase"] if "doshi_phase" in part and part["corruption"].gt(0).any() else part["phase"]
        )
        rows.append(
            [
                label,
                f"{int(part['grokked'].fillna(False).astype(bool).sum())}/{len(part)}",
                _mean_text(part["grokking_step"]),
                _mean_text(part["grokking_delay"]),
                f"{pd.to_numeric(part['final_val_acc'], errors='coerce').mean():.3f}",
                ", ".join(sorted({str(v) for v in phases.dropna()})),
            ]
        )
    header = ["config", "grokked", "grokking step", "grokking delay", "val acc", "phase"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    )


def _mean_text(values: pd.Series) -> str:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return f"{numbers.mean():.0f}" if len(numbers) else "-"


def _size_label(size_col: str) -> str:
    return "fraction" if size_col == "train_fraction" else size_col


def finish_study(
    study: Study, tracker: Any, table: pd.DataFrame, curves: list[pd.DataFrame], store: Storage
) -> dict[str, Any]:
    """Estimate, plots, artifacts: the study's answer, logged to the parent run."""
    from grokray.analysis import critical_data_size, format_estimates
    from grokray.analysis.plots import plot_grok_probability, plot_validation_curves
    from grokray.analysis.slope import format_slopes, study_slopes
    from grokray.analysis.study_plots import study_plots
    from grokray.tracking import jsonable

    size_col = study.size_key() or "train_fraction"
    group_cols = study.group_names()
    estimates = critical_data_size(table, size_col=size_col, group_cols=group_cols, binned=study.group_bins())
    summary = {
        "study": study.name,
        "budget_steps": int(study.resolve({})["steps"]),
        "task": study.resolve({})["task"],
        "op": study.resolve({})["op"],
        "p": study.resolve({})["p"],
        "regularizer": "searched" if "regularizer" in study.space else study.resolve({})["regularizer"],
        "n_trials": len(table),
        "n_failed": int(table["failed"].sum()) if "failed" in table else 0,
        "estimates": estimates,
    }
    # Notsawo et al.'s law: log(delay) against log(lr·β), per norm, for studies that vary β
    slopes = study_slopes(table, study.searched_names())
    if slopes is not None:
        summary["slopes"] = slopes
    out_dir = store.join(study.name)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        table_path = tmp_path / "trials.parquet"
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), table_path)
        (tmp_path / "estimate.json").write_text(json.dumps(jsonable(summary), indent=2, default=str))
        plots = []
        all_curves = pd.concat(curves, ignore_index=True) if curves else None
        if all_curves is not None:
            plots.append(
                plot_validation_curves(all_curves, table, tmp_path / "val_acc_vs_step.png", size_col=size_col)
            )
        if size_col in study.space:  # the critical-size figure needs a sweep over data size
            plots.append(
                plot_grok_probability(
                    table, estimates, tmp_path / f"p_grok_vs_{_size_label(size_col)}.png", size_col=size_col
                )
            )
        plots.extend(study_plots(study.plots, table, all_curves, tmp_path))
        for path in (table_path, tmp_path / "estimate.json", *plots):
            tracker.log_study_artifact(path)
            if store.exists(out_dir):
                store.write_bytes(f"{out_dir}/{path.name}", path.read_bytes())
    first = estimates[0] if estimates else {}
    tracker.log_study_metrics(
        {
            k: first.get(k)
            for k in ("critical_fraction", "ci_low", "ci_high", "critical_size", "peak_fraction")
            if isinstance(first.get(k), (int, float))
        }
    )
    if slopes is not None:
        tracker.log_study_metrics(
            {f"slope_{s['group']}": s["slope"] for s in slopes if math.isfinite(s["slope"])}
        )
    tracker.set_study_tags({"grokray.has_estimate": "true"})
    summary["sweeps_size"] = size_col in study.space
    summary["table"] = (
        format_estimates(estimates) if summary["sweeps_size"] else outcome_summary(study, table)
    )
    if slopes is not None:
        summary["table"] += "\n" + format_slopes(slopes)
    summary["results_dir"] = store.show(out_dir)
    summary["parent_run_id"] = tracker.parent_run_id
    return summary
