"""``run_study``: a study through Ray Tune, tracked in MLflow. The Ray connection and signals."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from grokray import settings
from grokray.config import StudyError, applicable
from grokray.space import Dimension
from grokray.storage import Storage
from grokray.study import Study
from grokray.tune.boundary import search_complete
from grokray.tune.callbacks import MLflowCallback, ProgressCallback, retry_tracking
from grokray.tune.finish import finish_study, trial_id_of, trial_table
from grokray.tune.restore import optuna_fields, restore_decision, saved_state, unstarted_run, write_state
from grokray.tune.results import pack_members, trial_curves
from grokray.tune.search import fail_unfinished_optuna_trials, make_search, open_optuna_storage
from grokray.tune.stopper import FailFast, GrokStopper
from grokray.tune.trainable import run_trial
from grokray.tune.writer import close_all


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


def run_study(
    study: Study,
    storage: str = settings.DEFAULT_STORAGE,
    address: str | None = None,
    verbose: bool = False,
    resume: bool = False,
    optuna_storage: str | None = None,
) -> dict[str, Any]:
    """Run ``study`` through Ray Tune, track it in MLflow, and return the summary.

    ``optuna_storage``: a database URL for Optuna's study (default: in memory, in the searcher).
    ``study.early_stop``: trials end once grokked, with the monotone rule (``GrokStopper``)."""
    from ray import tune
    from ray.tune.stopper import CombinedStopper

    from grokray.crash import crash_point
    from grokray.tracking import NOTE_TAG, StudyTracker

    os.environ["GROKRAY_DRIVER_PID"] = str(os.getpid())  # for crash points in workers (fault sweep)
    store = Storage(storage)
    experiment_dir = store.join(study.name)
    fingerprint = study.fingerprint()
    early_stop = study.early_stop
    optuna_rdb = open_optuna_storage(optuna_storage) if optuna_storage else None  # a bad URL: exit 2 now
    _connect_ray(address or settings.current().ray_address, verbose)
    unstarted = unstarted_run(study, store, experiment_dir)  # read before it is moved aside
    restoring = restore_decision(study, store, experiment_dir, resume)
    saved = saved_state(store, experiment_dir) if restoring else {}
    optuna = optuna_fields(saved, optuna_storage, restoring)
    if unstarted and not restoring:
        # the last driver died before Tune saved anything: start Tune afresh under the same parent run
        print(f"[{study.name}] the interrupted run had not saved its trials yet: starting them again "
              "under the same parent run", flush=True)  # fmt: skip
        saved = {"parent_run_id": unstarted["parent_run_id"]}
        if optuna_rdb is not None and unstarted.get("optuna_study"):
            fail_unfinished_optuna_trials(optuna_rdb, unstarted["optuna_study"])
    # our own retry loop (retry_tracking) rides out outages; MLflow's should give up quickly
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    tracker = StudyTracker(study.name)
    abandoned = None if saved.get("parent_run_id") else tracker.abandoned_study(fingerprint)
    if saved.get("parent_run_id") or abandoned:
        tracker.reopen_study(saved.get("parent_run_id") or abandoned)
    else:
        # what applies of the fixed values (no other task's names; seeds below, not seed/replicas)
        searched = [*study.space, *study.linked]
        fixed = {k: v for k, v in applicable(study.resolve({}), searched).items() if k not in study.space}
        for key in ("seed", "replicas"):
            fixed.pop(key, None)
        params = {**fixed, **{f"space.{k}": _describe(d) for k, d in study.space.items()}}
        params.update(
            seeds=study.seeds,
            sampler=study.sampler,
            objective=study.objective,
            total_trials=study.total_trials,
            early_stop=early_stop,
            monotone_stop=study.monotone if early_stop else 0,
        )
        tags = {"grokray.fingerprint": fingerprint}
        if study.description:
            tags[NOTE_TAG] = study.description  # the parent run's description in the UI
        tracker.start_study(params, tags)
        # at once: a driver killed from here on leaves a state file naming its parent run
        write_state(
            store, experiment_dir, {"parent_run_id": tracker.parent_run_id, "fingerprint": fingerprint}
        )

    # a fresh Optuna study per Tune experiment: one that restarts under an earlier parent run
    # (``unstarted``) gets a new name beside the abandoned one
    optuna_name = f"{study.name}.{tracker.parent_run_id}"
    if unstarted and not restoring and unstarted.get("optuna_study"):
        optuna_name = f"{optuna_name}.{time.strftime('%Y%m%d-%H%M%S')}"
    status = "FAILED"
    fail_fast = FailFast(first=min(2, study.num_configs))
    grok_stopper = GrokStopper(study.size_key(), study.group_names(), study.monotone, study.group_bins())
    try:
        _sigterm_as_sigint()  # after ray.init, which installs a SIGTERM handler of its own
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, study=study),
            {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial},
        )
        run_config = tune.RunConfig(
            name=study.name,
            storage_path=store.path,
            storage_filesystem=store.tune_filesystem,
            stop=CombinedStopper(grok_stopper, fail_fast) if early_stop else fail_fast,
            callbacks=[MLflowCallback(study, tracker.uri, tracker.parent_run_id), fail_fast]
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
                    search_alg=make_search(
                        study, optuna_rdb, optuna_name, grok_stopper if early_stop else None
                    ),
                    num_samples=study.num_configs,
                    max_concurrent_trials=study.max_concurrent,
                    metric=None,
                    mode=None,
                    # a trial's worker process serves the next trial (same resources): no process
                    # start and imports per trial, which cost more than many packs' training
                    reuse_actors=True,
                ),
                run_config=run_config,
            )
        if optuna_storage and not restoring:
            optuna["optuna_study"] = optuna_name
        if optuna:
            print(f"[{study.name}] optuna: {optuna['optuna_storage']}, "
                  f"study {optuna['optuna_study']}", flush=True)  # fmt: skip
        write_state(
            store,
            experiment_dir,
            {"parent_run_id": tracker.parent_run_id, "fingerprint": fingerprint, **optuna},
        )
        crash_point("before_fit")
        results = tuner.fit()
        if fail_fast.reason is not None:
            raise StudyFailed(
                f"the first {fail_fast.first} trials failed with the same error, so the study stopped: "
                f"{fail_fast.reason} (traces: each trial's error.txt under {store.show(experiment_dir)})"
            )
        ended = [t for t in results._experiment_analysis.trials if t.status in ("TERMINATED", "ERROR")]
        table = trial_table(study, results)
        configs_ended = sum(len(pack_members(t.config)) for t in ended)
        if SIGTERM_RECEIVED.is_set() or not search_complete(study, configs_ended, table):
            # Tune's own SIGINT handler ends fit() early but normally: that is an interruption
            raise KeyboardInterrupt
        curves = [
            frame
            for r in results
            for frame in trial_curves(r.path, trial_id_of(r), store.filesystem).values()
        ]
        summary = retry_tracking(study.name, finish_study, study, tracker, table, curves, store)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        close_all()  # a study ended by an exception: what the writer was sent is made first
        retry_tracking(study.name, tracker.end_study, status)


class StudyFailed(RuntimeError):
    """The study stopped because its trials fail (``FailFast``): ``grokray run`` exits 1 with this
    one line, every run ended as FAILED or KILLED."""


def _sigterm_as_sigint() -> None:
    """SIGTERM (a scheduler, ``kill``) stops the study like Ctrl-C: state saved, runs ended."""
    import signal

    def on_sigterm(signum: int, frame: Any) -> None:
        SIGTERM_RECEIVED.set()  # Tune may end a trial killed mid-stop as errored: fit() then looks complete
        os.kill(os.getpid(), signal.SIGINT)

    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked in a Ray Job driver
        signal.signal(signal.SIGTERM, on_sigterm)


SIGTERM_RECEIVED = threading.Event()  # set by the SIGTERM handler: fit() ended by a signal


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
