"""grokray on PostgreSQL: a real ``mlflow server`` on PostgreSQL as the tracking server, and Optuna's
study in PostgreSQL (``--optuna-storage``), through normal runs, a SIGKILL of the driver and
``--resume``. The services come from ``tools/services.py`` (started once per session, ``conftest.py``)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.helpers import parent_run_id, run_grokray, study_runs
from tests.paths import ROOT
from tools.services import Postgres

pytestmark = pytest.mark.integration


def _optuna_trials(url: str, study_name: str) -> list:
    import optuna

    return optuna.load_study(study_name=study_name, storage=url).get_trials(deepcopy=False)


def _states(trials: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def test_the_smoke_study_on_an_mlflow_server_on_postgresql(server_smoke_study, postgres: Postgres):
    """Parent run, one child run per trial and seed with its metrics and artifact, nothing RUNNING;
    and the runs are rows of PostgreSQL's ``mlflow`` database, not of some local file."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server_smoke_study.tracking_uri)
    parent, children = study_runs(client, server_smoke_study.parent_run_id)
    assert parent.data.tags.get("grokray.role") == "study"
    assert len(children) == 6  # 3 configs x 2 seed replicas
    assert parent.info.status == "FINISHED" and all(c.info.status == "FINISHED" for c in children)
    pairs = sorted((float(c.data.params["train_fraction"]), int(c.data.params["seed"])) for c in children)
    assert pairs == [(f, s) for f in (0.2, 0.5, 0.8) for s in (0, 1)]
    assert len({c.data.tags["ray.trial_id"] for c in children}) == 2  # packs over the 2 free slots
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert len(history) >= 3 and history[0].step == 0
        assert len({m.step for m in history}) == len(history)
        assert "curves.parquet" in [a.path for a in client.list_artifacts(child.info.run_id)]
    assert "estimate.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    with postgres.connect("mlflow") as connection:
        rows = connection.execute(
            "SELECT status, count(*) FROM runs WHERE experiment_id = %s GROUP BY status",
            (int(parent.info.experiment_id),),
        ).fetchall()
    statuses = dict(rows)
    assert statuses.get("FINISHED", 0) >= 7 and "RUNNING" not in statuses


def _search_and_study(url: str):
    from grokray.study import load_study
    from grokray.tune.search import make_search, open_optuna_storage

    study = load_study(
        ROOT / "studies/critical_size.py", ["train_fraction=0.2,0.5,0.8", "pack=1"], quick=True
    )
    return study, make_search(study, open_optuna_storage(url), "unit")


def test_restore_after_a_hard_kill_fails_orphans_requeues_them_and_ignores_finished(postgres, tmp_path):
    """The searcher as Tune restores it after a hard kill, on a real PostgreSQL storage: its snapshot
    knows t1 (finished after the snapshot) and t2 (still running); t3 was asked after the snapshot."""
    from optuna.exceptions import UpdateFinishedTrialError
    from ray.tune.search.optuna import OptunaSearch

    url = postgres.create_database("optuna_restore")
    study, search = _search_and_study(url)
    assert type(search).__name__ == "StoredOptunaSearch"
    metric = study.metric
    pristine = pickle.dumps(search)  # what Tune pickles at Tuner creation (tuner.pkl)
    first = search.suggest("t1")
    second = search.suggest("t2")
    search.on_trial_result("t1", {metric: 0.5, "training_iteration": 1})
    snapshot = tmp_path / "searcher-state.pkl"
    search.save(str(snapshot))  # the last experiment snapshot before the kill
    orphan = search.suggest("t3")
    search.on_trial_complete("t1", {metric: 0.25, "training_iteration": 2})
    assert {first["train_fraction"], second["train_fraction"], orphan["train_fraction"]} == {0.2, 0.5, 0.8}

    # the plain OptunaSearch breaks on this: the database already has t1 finished
    plain = OptunaSearch(space=search._space, metric=metric, mode=study.mode, storage=search._storage,
                         study_name="unit")  # fmt: skip
    OptunaSearch.restore(plain, str(snapshot))
    with pytest.raises(UpdateFinishedTrialError):
        plain.on_trial_result("t1", {metric: 0.5, "training_iteration": 2})

    restored = pickle.loads(pristine)
    restored.restore(str(snapshot))
    trials = _optuna_trials(url, "unit")
    assert _states(trials) == {"COMPLETE": 1, "RUNNING": 1, "FAIL": 1, "WAITING": 1}
    [failed] = [t for t in trials if t.state.name == "FAIL"]
    assert failed.params == orphan and "grokray_fail_reason" in failed.user_attrs
    # t1 was rerun from its checkpoint: it reports and completes again without an error,
    # and the value Optuna already has stands
    restored.on_trial_result("t1", {metric: 0.5, "training_iteration": 2})
    restored.on_trial_complete("t1", {metric: 9.0, "training_iteration": 2})
    # the restored experiment asks again for the trial it lost and gets the orphan's config
    assert restored.suggest("t3-again") == orphan
    restored.on_trial_complete("t2", {metric: 0.5, "training_iteration": 3})
    restored.on_trial_complete("t3-again", {metric: 0.8, "training_iteration": 3})
    trials = _optuna_trials(url, "unit")
    assert _states(trials) == {"COMPLETE": 3, "FAIL": 1}
    complete = {t.params["train_fraction"]: t.value for t in trials if t.state.name == "COMPLETE"}
    assert complete == {
        first["train_fraction"]: 0.25,
        second["train_fraction"]: 0.5,
        orphan["train_fraction"]: 0.8,
    }


def test_smoke_study_with_its_optuna_study_in_postgresql(mlflow_server, postgres, tmp_path):
    url = postgres.create_database("optuna_smoke")
    result = run_grokray(  # the quick profile: fractions 0.2 and 0.8, one seed
        "run", str(ROOT / "studies/critical_size.py"), "--quick", "--optuna-storage", url, cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": mlflow_server.uri},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    parent_id = parent_run_id(tmp_path)
    state = json.loads((tmp_path / "results" / "critical-size" / "grokray.json").read_text())
    assert state["optuna_study"] == f"critical-size.{parent_id}"
    assert postgres.password not in json.dumps(state) + result.stdout + result.stderr
    trials = _optuna_trials(url, state["optuna_study"])
    assert _states(trials) == {"COMPLETE": 2}  # exactly the study's trials, none RUNNING
    assert sorted(t.params["train_fraction"] for t in trials) == [0.2, 0.8]
    assert all(t.intermediate_values for t in trials)  # every report reached the storage

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    parent, children = study_runs(client, parent_id)
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in [parent, *children])
    # the Optuna value of each trial is the objective its MLflow run ends with
    boundary = {float(c.data.params["train_fraction"]): c.data.tags["grokked"] == "True" for c in children}
    for trial in trials:
        fraction = trial.params["train_fraction"]
        assert trial.value == pytest.approx(fraction if boundary[fraction] else 2 - fraction)


def test_sigkill_then_resume_with_optuna_storage_loses_and_duplicates_nothing(
    mlflow_server, postgres, tmp_path
):
    """SIGKILL the driver once a finished trial is in Tune's experiment snapshot; ``--resume`` (no
    --optuna-storage needed: the restored searcher has it) finishes the study: the finished trial
    is not rerun, Optuna has every config COMPLETE once and no trial RUNNING, MLflow has one child
    run per trial and no run RUNNING."""
    from mlflow.tracking import MlflowClient

    url = postgres.create_database("optuna_resume")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "GROKRAY_CHECKPOINT_SECONDS": "0",  # a checkpoint with every report
    }
    # the seeded grid sampler proposes 0.2 and 0.9 first, then 0.25, then 0.3; 0.9 groks in a few
    # hundred steps and finishes first (0.25 is asked for), the others run their whole 1000-step
    # budget: when 0.2 finishes, after a snapshot, 0.3 is asked for, and the kill follows at once
    fractions = (0.3, 0.25, 0.2, 0.9)
    args = [
        sys.executable,
        "-m",
        "grokray",
        "run",
        str(ROOT / "studies/critical_size.py"),
        "--quick",
        "--set",
        "train_fraction=" + ",".join(map(str, fractions)),
        "--set",
        "steps=1000",
        "--set",
        "pack=1",
    ]  # fmt: skip  (a trial per config: one finishes while others run)
    client = MlflowClient(mlflow_server.uri)
    experiment_dir = tmp_path / "results" / "critical-size"
    with (tmp_path / "driver.log").open("w") as log:
        driver = subprocess.Popen([*args, "--optuna-storage", url], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        # kill once (1) a trial has finished, (2) a snapshot of the experiment was written after
        # that, (3) Optuna has been asked for every config: the last ask most likely came after
        # the last snapshot, so the restored searcher will not know it (an orphan)
        finished, in_snapshot, deadline = None, False, time.monotonic() + 150
        while time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.3)
            try:
                state = json.loads((experiment_dir / "grokray.json").read_text())
            except (OSError, ValueError):
                continue
            if finished is None:
                _, children = study_runs(client, state["parent_run_id"])
                finished = next((c for c in children if c.info.status == "FINISHED"), None)
            elif not in_snapshot:
                snapshots = experiment_dir.glob("experiment_state-*.json")
                in_snapshot = any(p.stat().st_mtime > finished.info.end_time / 1000 + 0.5 for p in snapshots)
            elif len(_optuna_trials(url, state["optuna_study"])) == len(fractions):
                break
        output = (tmp_path / "driver.log").read_text()
        assert driver.poll() is None, "the study ended before the kill: " + output[-2000:]
        assert finished is not None and in_snapshot, (
            "no finished trial in a snapshot in time: " + output[-2000:]
        )
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=60)
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever of the dead driver's session is left
        except ProcessLookupError:
            pass
    state = json.loads((experiment_dir / "grokray.json").read_text())
    trial_id = finished.data.tags["ray.trial_id"]
    [result_file] = experiment_dir.glob(f"*{trial_id}*/result.json")
    finished_lines = result_file.read_text()
    finished_history = [(m.step, m.value) for m in client.get_metric_history(finished.info.run_id, "val_acc")]
    before = _optuna_trials(url, state["optuna_study"])

    resumed = subprocess.run([*args, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"study {state['optuna_study']}" in resumed.stdout  # the same Optuna study, continued

    # the trial that had finished before the snapshot was not rerun
    assert result_file.read_text() == finished_lines
    after = client.get_run(finished.info.run_id)
    assert after.info.end_time == finished.info.end_time
    assert [
        (m.step, m.value) for m in client.get_metric_history(finished.info.run_id, "val_acc")
    ] == finished_history
    # Optuna: every config COMPLETE exactly once, nothing RUNNING, a FAIL only for an orphan requeued
    trials = _optuna_trials(url, state["optuna_study"])
    assert "RUNNING" not in _states(trials) and "WAITING" not in _states(trials), _states(trials)
    complete = sorted(t.params["train_fraction"] for t in trials if t.state.name == "COMPLETE")
    assert complete == sorted(fractions)
    for trial in trials:
        if trial.state.name == "FAIL":
            assert "grokray_fail_reason" in trial.user_attrs
    assert len(trials) - len(fractions) == len([t for t in trials if t.state.name == "FAIL"])
    assert len(before) <= len(trials)
    # MLflow: one parent, one child run per trial, none RUNNING, no metric step twice
    parent, children = study_runs(client, state["parent_run_id"])
    assert parent.info.status == "FINISHED" and len(children) == len(fractions)
    assert len({c.data.tags["ray.trial_id"] for c in children}) == len(fractions)
    assert sorted(float(c.data.params["train_fraction"]) for c in children) == sorted(fractions)
    assert all(c.info.status == "FINISHED" for c in children)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        assert steps and len(steps) == len(set(steps))
    orphans = [t.number for t in trials if t.state.name == "FAIL"]
    print(f"optuna trials failed and requeued after the kill: {orphans or 'none'}")
