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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ray.tune import Callback, Stopper

from grokray.study import OUTCOME_KEYS, Dimension, Study, StudyError

STATE_FILE = "grokray.json"


# ---------------------------------------------------------------------------------------------
# The search space as an Optuna define-by-run function (module-level class: picklable)


class DefineByRun:
    """Asks an Optuna trial for every searched name of the study."""

    def __init__(self, space: Mapping[str, Dimension]) -> None:
        self.space = dict(space)

    def __call__(self, trial: Any) -> None:
        for name, dim in self.space.items():
            if dim.choices is not None:
                trial.suggest_categorical(name, list(dim.choices))
            elif dim.kind == "int":
                trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
            else:
                trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)


def make_sampler(study: Study, seed: int = 0) -> Any:
    import optuna

    if not study.space:  # nothing searched: seeds only (Optuna's grid sampler needs a grid)
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "grid":
        return optuna.samplers.GridSampler(
            {name: list(dim.grid_values() or ()) for name, dim in study.space.items()}, seed=seed
        )
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if study.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_search(study: Study) -> Any:
    """OptunaSearch over the study's space (seeds are replicas inside each trial, not trials)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(
        space=DefineByRun(study.space),
        metric=study.metric,
        mode=study.mode,
        sampler=make_sampler(study),
    )


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
        with checkpoint.as_directory() as directory:
            run.load_state_dict(torch.load(Path(directory) / "state.pt", weights_only=False))
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
    """Ends a trial once grokking is confirmed (or it diverged, or its budget is spent)."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return result.get("stop_reason", "running") != "running"

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
            if time.monotonic() > deadline:
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
        for replica, config in enumerate(replica_configs(self.study, trial.config)):
            key = run_key(trial.trial_id, replica)
            name = f"f={config['train_fraction']:.3g} seed={config['seed']} [{key}]"
            tags = {"ray.trial_id": trial.trial_id, "grokray.replica": str(replica)}
            self.logged_until[key] = self._retry(self.tracker.start_trial, key, name, config, tags)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        for replica, record in (result.get("replicas") or {}).items():
            key = run_key(trial.trial_id, int(replica))
            if record.get("step", -1) > self.logged_until.get(key, -1):
                self.tracker.log_trial_metrics(key, record)
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

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        trace = trial.get_error() or ""
        lines = [line for line in str(trace).splitlines() if line.strip()]
        self._end(
            trial, "FAILED", (lines[-1] if lines else "trial failed") + " (trace: the trial's error.txt)"
        )


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
        row.update({k: record.get(k) for k in (*OUTCOME_KEYS, "n_train", "n_total")})
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
        self.estimate = _quick_estimate(rows)
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
        done = running = grokked = failed = 0
        for t in trials:
            records = ((t.last_result or {}).get("replicas") or {}).values()
            if t.status == "ERROR":
                failed += len(replica_configs(self.study, t.config))
                continue
            finished = [r for r in records if r.get("stop_reason") != "running" or t.status == "TERMINATED"]
            done += len(finished)
            grokked += sum(bool(r.get("grokked")) for r in finished)
            if t.status == "RUNNING":
                running += len(replica_configs(self.study, t.config)) - len(finished)
        elapsed = int(now - self.started)
        line = (
            f"[{self.study.name}] {done + failed}/{self.study.total_trials} done, {running} running, "
            f"{grokked} grokked"
            + (f", {failed} failed" if failed else "")
            + f" | {elapsed // 60}m{elapsed % 60:02d}s"
            + (f" | {self.estimate}" if self.estimate else "")
        )
        if tty:
            print("\r" + line.ljust(100), end="", flush=True)
        else:
            print(line, flush=True)


CURVE_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")


def _trial_curves(local_path: str | None, trial_id: str) -> dict[str, pd.DataFrame]:
    """Each replica's evaluation records, read back from the ``result.json`` Tune wrote."""
    path = Path(local_path or "") / "result.json"
    if not local_path or not path.exists():
        return {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for replica, record in (json.loads(line).get("replicas") or {}).items():
            rows.setdefault(run_key(trial_id, int(replica)), []).append(
                {"step": record.get("step"), **{k: record.get(k) for k in CURVE_COLUMNS}}
            )
    frames = {}
    for key, records in rows.items():
        frame = (
            pd.DataFrame(records).drop_duplicates("step", keep="last").sort_values("step", ignore_index=True)
        )
        frame.insert(0, "trial_id", key)
        frames[key] = frame
    return frames


def _quick_estimate(rows: list[dict[str, Any]]) -> str:
    from grokray.analysis import critical_data_size

    table = pd.DataFrame(rows)
    if table.empty or table["train_fraction"].nunique() < 2:
        return ""
    estimates = critical_data_size(table, group_cols=(), n_bootstrap=100)
    value = estimates[0]["critical_fraction"]
    if value is None or not math.isfinite(value):
        return ""
    return f"critical fraction ≈ {value:.3f} [{estimates[0]['ci_low']:.3f}, {estimates[0]['ci_high']:.3f}]"


# ---------------------------------------------------------------------------------------------
# The run


def run_study(
    study: Study,
    storage: str = "results",
    address: str | None = None,
    verbose: bool = False,
    early_stop: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Run ``study`` through Ray Tune, track it in MLflow, and return the summary."""
    import ray
    from ray import tune

    from grokray.tracking import StudyTracker

    storage_path = Path(storage).resolve()
    experiment_dir = storage_path / study.name
    state_path = experiment_dir / STATE_FILE
    restoring = resume and tune.Tuner.can_restore(str(experiment_dir))
    if resume and not restoring:
        print(f"[{study.name}] nothing to resume in {experiment_dir}; starting fresh", flush=True)
    if not restoring and experiment_dir.exists():
        experiment_dir.rename(experiment_dir.with_name(f"{study.name}.{time.strftime('%Y%m%d-%H%M%S')}"))

    saved = json.loads(state_path.read_text()) if restoring and state_path.exists() else {}
    if restoring and saved.get("fingerprint") != study.fingerprint():
        raise StudyError(
            "--resume",
            f"the study in {experiment_dir} was run with a different definition; "
            "run without --resume to start afresh (the old results are kept aside)",
        )
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
        )
        tracker.start_study(params, {"grokray.fingerprint": study.fingerprint()})

    status = "FAILED"
    try:
        address = address or os.environ.get("RAY_ADDRESS")
        _quiet_ray(verbose)
        if not ray.is_initialized():
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            if address:
                ray.init(address=address, logging_level="WARNING", log_to_driver=verbose)
            else:
                ray.init(
                    include_dashboard=False,
                    logging_level="WARNING",
                    log_to_driver=verbose,
                    configure_logging=True,
                )
        _sigterm_as_sigint()  # after ray.init, which installs a SIGTERM handler of its own
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, study=study, early_stop=early_stop),
            {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial},
        )
        run_config = tune.RunConfig(
            name=study.name,
            storage_path=str(storage_path),
            stop=GrokStopper() if early_stop else None,
            callbacks=[MLflowCallback(study, tracker.uri, tracker.parent_run_id)]
            + ([] if verbose else [ProgressCallback(study)]),
            failure_config=tune.FailureConfig(max_failures=study.max_failures),
            verbose=2 if verbose else 0,
            # keep every checkpoint: after a hard kill of the driver, the experiment state on disk
            # may name an older checkpoint than the newest, and it must still exist
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        )
        if restoring:
            tuner = tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=make_search(study),
                    num_samples=study.num_configs,
                    max_concurrent_trials=study.max_concurrent,
                    metric=None,
                    mode=None,
                ),
                run_config=run_config,
            )
        experiment_dir.mkdir(parents=True, exist_ok=True)
        state_path.write_text(
            json.dumps({"parent_run_id": tracker.parent_run_id, "fingerprint": study.fingerprint()})
        )
        results = tuner.fit()
        if results.num_terminated + results.num_errors < study.num_configs:
            # Tune's own SIGINT handler ends fit() early but normally: that is an interruption
            raise KeyboardInterrupt
        table = trial_table(study, results)
        curves = [frame for r in results for frame in _trial_curves(r.path, _trial_id(r)).values()]
        summary = retry_tracking(study.name, finish_study, study, tracker, table, curves, storage_path)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        retry_tracking(study.name, tracker.end_study, status)


def _sigterm_as_sigint() -> None:
    """SIGTERM (a scheduler, ``kill``) stops the study like Ctrl-C: state saved, runs ended."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))


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


def finish_study(
    study: Study, tracker: Any, table: pd.DataFrame, curves: list[pd.DataFrame], storage_path: Path
) -> dict[str, Any]:
    """Estimate, plots, artifacts: the study's answer, logged to the parent run."""
    from grokray.analysis import critical_data_size, format_estimates
    from grokray.analysis.plots import plot_grok_probability, plot_validation_curves
    from grokray.tracking import jsonable

    size_col = "train_size" if "train_size" in study.space else "train_fraction"
    group_cols = [k for k in study.searched_names() if k not in ("train_fraction", "train_size")]
    estimates = critical_data_size(table, size_col=size_col, group_cols=group_cols)
    summary = {
        "study": study.name,
        "budget_steps": int(study.resolve({})["steps"]),
        "op": study.resolve({})["op"],
        "p": study.resolve({})["p"],
        "regularizer": study.resolve({})["regularizer"],
        "n_trials": len(table),
        "n_failed": int(table["failed"].sum()) if "failed" in table else 0,
        "estimates": estimates,
    }
    out_dir = storage_path / study.name
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        table_path = tmp_path / "trials.parquet"
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), table_path)
        (tmp_path / "estimate.json").write_text(json.dumps(jsonable(summary), indent=2, default=str))
        plots = []
        if curves:
            all_curves = pd.concat(curves, ignore_index=True)
            plots.append(plot_validation_curves(all_curves, table, tmp_path / "val_acc_vs_step.png"))
        plots.append(plot_grok_probability(table, estimates, tmp_path / "p_grok_vs_fraction.png"))
        for path in (table_path, tmp_path / "estimate.json", *plots):
            tracker.log_study_artifact(path)
            if out_dir.exists():
                (out_dir / path.name).write_bytes(path.read_bytes())
    first = estimates[0] if estimates else {}
    tracker.log_study_metrics(
        {
            k: first.get(k)
            for k in ("critical_fraction", "ci_low", "ci_high", "critical_size", "peak_fraction")
            if isinstance(first.get(k), (int, float))
        }
    )
    tracker.set_study_tags({"grokray.has_estimate": "true"})
    summary["table"] = format_estimates(estimates)
    summary["results_dir"] = str(out_dir)
    summary["parent_run_id"] = tracker.parent_run_id
    return summary
