"""Whether a run continues an unfinished one (``Tuner.restore``) or starts anew, and the state file
``grokray.json`` that decides it (the parent run, the study's fingerprint, the Optuna storage).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from grokray.config import StudyError
from grokray.storage import Storage
from grokray.study import Study
from grokray.tune.search import masked_url

STATE_FILE = "grokray.json"


def saved_state(store: Storage, experiment_dir: str) -> dict[str, Any]:
    """The state file of the run in ``experiment_dir``; empty if there is none."""
    path = f"{experiment_dir}/{STATE_FILE}"
    return json.loads(store.read_text(path)) if store.exists(path) else {}


def has_snapshot(store: Storage, experiment_dir: str) -> bool:
    """Whether Tune saved the experiment's state (``experiment_state-*.json``) at least once: a
    driver killed before that leaves only ``tuner.pkl``, which ``Tuner.restore`` cannot continue."""
    return any(n.startswith("experiment_state-") and n.endswith(".json") for n in store.names(experiment_dir))


def unstarted_run(study: Study, store: Storage, experiment_dir: str) -> dict[str, Any]:
    """The state file of a run of this very study whose driver died before Tune's first snapshot
    (its parent run, its Optuna study): the new run continues under that parent run, and the
    child runs it had opened are continued by config. Empty if there is no such run."""
    if not store.exists(experiment_dir) or has_snapshot(store, experiment_dir):
        return {}
    saved = saved_state(store, experiment_dir) if store.exists(f"{experiment_dir}/{STATE_FILE}") else {}
    if saved.get("fingerprint") != study.fingerprint() or not saved.get("parent_run_id"):
        return {}
    return saved


def write_state(store: Storage, experiment_dir: str, state: Mapping[str, Any]) -> None:
    store.write_bytes(f"{experiment_dir}/{STATE_FILE}", json.dumps(dict(state)).encode())


def restore_decision(study: Study, store: Storage, experiment_dir: str, resume: bool) -> bool:
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
    restorable = tune.Tuner.can_restore(
        experiment_dir, storage_filesystem=store.tune_filesystem
    ) and has_snapshot(store, experiment_dir)
    saved = saved_state(store, experiment_dir) if restorable else {}
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


def optuna_fields(saved: Mapping[str, Any], url: str | None, restoring: bool) -> dict[str, Any]:
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
