"""The child runs of a study in a real MLflow (a SQLite file): one run per config and seed, whichever
Tune trial trains it; a run that never trained dated at the study's start; batches cut at steps."""

from __future__ import annotations

import pytest


@pytest.fixture
def tracker(tmp_path):
    from grokray.tracking import StudyTracker, claim_study_name

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    claim_study_name("s", "s.py", uri)
    tracker = StudyTracker("s", uri)
    tracker.start_study({}, {})
    tracker.attach(tracker.parent_run_id)
    return tracker


def _restored(tracker):
    """The tracker of a new driver that continues the study (``Tuner.restore``)."""
    from grokray.tracking import StudyTracker

    again = StudyTracker("s", tracker.uri)
    again.attach(tracker.parent_run_id)
    return again


def _children(tracker):
    return {r.info.run_id: r for r in tracker._children()}


def test_a_config_a_killed_driver_started_is_continued_in_its_run_not_run_twice(tracker):
    tags = {"ray.trial_id": "t3"}
    assert tracker.start_trial("t3-r0", "f=0.3", {"p": 13}, tags, config_key="c03", live={"t3"}) == -1
    for step in (0, 10, 20):
        tracker.log_trial_metrics("t3-r0", {"step": step, "val_acc": 0.1, "train_loss": 1.0})
    tracker.flush()
    (run_id,) = _children(tracker)
    # killed; the restored experiment never knew t3 and proposes the same config as t7
    again = _restored(tracker)
    logged = again.start_trial(
        "t7-r0", "f=0.3", {"p": 13}, {"ray.trial_id": "t7"}, config_key="c03", live={"t7"}
    )
    assert logged == 20  # the new trial logs from step 30 on
    runs = _children(again)
    assert list(runs) == [run_id]
    run = runs[run_id]
    assert run.data.tags["grokray.run_key"] == "t7-r0" and run.data.tags["grokray.continued_from"] == "t3-r0"
    assert run.data.tags["ray.trial_id"] == "t7" and run.info.status == "RUNNING"
    # another config, or the same config while its first trial is still known: a run of its own
    again.start_trial(
        "t8-r0", "f=0.5", {"p": 13}, {"ray.trial_id": "t8"}, config_key="c05", live={"t7", "t8"}
    )
    again.start_trial(
        "t9-r0", "f=0.3", {"p": 13}, {"ray.trial_id": "t9"}, config_key="c03", live={"t7", "t9"}
    )
    assert len(_children(again)) == 3


def test_a_run_left_by_a_killed_driver_and_never_continued_is_superseded(tracker):
    tracker.start_trial("t3-r0", "f=0.3", {}, {"ray.trial_id": "t3"}, config_key="c03", live={"t3"})
    tracker.start_trial("t4-r0", "f=0.5", {}, {"ray.trial_id": "t4"}, config_key="c05", live={"t3", "t4"})
    again = _restored(tracker)
    assert again.supersede_orphans({"t4"}) == 1
    runs = {r.data.tags["grokray.run_key"]: r for r in _children(again).values()}
    assert runs["t3-r0"].data.tags["grokray.superseded"] == "true" and runs["t3-r0"].info.status == "KILLED"
    assert "grokray.superseded" not in runs["t4-r0"].data.tags


def test_a_run_that_never_trained_is_dated_at_the_study_start(tracker):
    tracker.start_trial("t1-r0", "trained", {}, {"ray.trial_id": "t1"}, config_key="a", live={"t1"})
    tracker.start_trial(
        "t2-r0", "dominated", {}, {"ray.trial_id": "t2"}, config_key="b", live={"t1", "t2"},
        start_time=tracker.parent_start_ms,
    )  # fmt: skip
    newest_first = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{tracker.parent_run_id}'",
        order_by=["attributes.start_time DESC"],  # the runs table's default order
    )
    assert [r.info.run_name for r in newest_first] == ["trained", "dominated"]


def test_metric_batches_end_at_a_step_boundary(tracker, monkeypatch):
    import grokray.tracking as tracking

    monkeypatch.setattr(tracking, "MAX_BATCH", 5)
    tracker.start_trial("t1-r0", "r", {}, {"ray.trial_id": "t1"}, config_key="a", live={"t1"})
    sent = []
    log_batch = tracker.client.log_batch
    monkeypatch.setattr(
        tracker.client,
        "log_batch",
        lambda run_id, metrics=(), **kw: (
            sent.append([m.step for m in metrics]) or log_batch(run_id, metrics=metrics, **kw)
        ),
    )
    for step in range(4):  # three curves a step: 12 metrics
        tracker.log_trial_metrics("t1-r0", {"step": step, "val_acc": 0.5, "train_loss": 1.0, "val_loss": 1.0})
    tracker.flush()
    assert sent == [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]]


def test_a_new_sqlite_store_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """A driver killed inside MLflow's first schema migration must not leave a half-migrated file:
    the database is migrated under a temporary name and linked into place when complete."""
    import mlflow.tracking._tracking_service.utils as mlflow_utils
    from mlflow.tracking import MlflowClient

    from grokray.tracking import ensure_store

    db = tmp_path / "sub" / "mlflow.db"
    real = mlflow_utils._get_sqlalchemy_store

    def migrated_then_killed(uri, artifact_uri):
        real(uri, artifact_uri).engine.dispose()  # the migrations ran ...
        assert not db.exists()  # ... under another name
        raise KeyboardInterrupt  # and the driver dies before the link

    monkeypatch.setattr(mlflow_utils, "_get_sqlalchemy_store", migrated_then_killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_store(f"sqlite:///{db}")
    assert not db.exists()
    monkeypatch.setattr(mlflow_utils, "_get_sqlalchemy_store", real)
    ensure_store(f"sqlite:///{db}")
    assert [p.name for p in db.parent.iterdir()] == ["mlflow.db"]  # no temporary left beside it
    client = MlflowClient(f"sqlite:///{db}")
    assert client.create_experiment("x")  # a complete schema
    before = db.stat().st_mtime_ns
    ensure_store(f"sqlite:///{db}")  # an existing store is left alone
    assert db.stat().st_mtime_ns == before


def test_a_parent_run_whose_driver_died_before_its_state_file_is_continued(tmp_path):
    """A kill between the parent run's creation and the state file that names it: the next run of
    the same study finds that parent (RUNNING, same fingerprint, its driver process on this machine
    gone) instead of leaving it RUNNING beside a second one; a live driver's run is not taken."""
    import socket
    import subprocess
    import sys

    from grokray.tracking import DRIVER_TAG, StudyTracker, claim_study_name

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    claim_study_name("s", "s.py", uri)
    tracker = StudyTracker("s", uri)
    run_id = tracker.start_study({}, {"grokray.fingerprint": "f1"})
    assert tracker.abandoned_study("f1") is None  # its driver (this process) is alive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tracker.client.set_tag(run_id, DRIVER_TAG, f"{socket.gethostname()}:{dead.pid}")
    again = StudyTracker("s", uri)
    assert again.abandoned_study("f1") == run_id
    assert again.abandoned_study("other") is None  # another definition of the study
    again.reopen_study(run_id)
    assert again.client.get_run(run_id).data.tags[DRIVER_TAG].endswith(f":{__import__('os').getpid()}")


def test_every_child_run_is_found_page_by_page_and_only_running_ones_are_killed(tracker):
    for i in range(7):
        tracker.start_trial(f"t{i}-r0", f"r{i}", {}, {"ray.trial_id": f"t{i}"}, config_key=f"c{i}")
    for i in range(3):
        tracker.end_trial(f"t{i}-r0", {"stop_reason": "budget"}, None)
    assert len(tracker._children(page_size=3)) == 7  # three pages
    assert len(tracker._children(running=True, page_size=2)) == 4
    assert tracker.finish_open_runs() == 4
    assert {r.info.status for r in tracker._children()} == {"FINISHED", "KILLED"}


def test_a_run_ends_with_its_queued_metrics_outcome_and_files_in_two_calls(tracker, tmp_path, monkeypatch):
    import pandas as pd

    tracker.start_trial("t1-r0", "r", {}, {"ray.trial_id": "t1"}, config_key="a")
    for step in (0, 10):
        tracker.log_trial_metrics("t1-r0", {"step": step, "val_acc": 0.5 + step / 100, "train_loss": 1.0})
    calls = []
    for name in ("log_batch", "log_artifacts", "log_artifact", "set_terminated", "get_run"):
        real = getattr(tracker.client, name)
        monkeypatch.setattr(
            tracker.client,
            name,
            lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw),
        )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "weights.pt").write_bytes(b"w")
    curves = pd.DataFrame({"step": [0, 10], "val_acc": [0.5, 0.6]})
    outcome = {"grokked": False, "stop_reason": "budget", "steps_run": 10}
    tracker.end_trial("t1-r0", outcome, curves, folder=folder, name="r no grok")
    # the files go straight to the artifact root the run was created with: no look-up of the run
    assert calls == ["log_batch", "set_terminated"]
    (run,) = tracker._children()
    history = tracker.client.get_metric_history(run.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (10, 0.6)]
    assert run.data.metrics["steps_run"] == 10 and run.data.tags["stop_reason"] == "budget"
    assert run.info.run_name == "r no grok" and run.info.status == "FINISHED"
    files = sorted(a.path for a in tracker.client.list_artifacts(run.info.run_id))
    assert files == ["curves.parquet", "weights.pt"]


def test_a_run_found_again_by_a_new_tracker_gets_its_files_where_mlflow_keeps_them(tracker, tmp_path):
    """A resumed driver's tracker learns the runs' artifact roots from the runs it finds; a run it
    knows no root for (none here) still gets its files through ``log_artifacts``."""
    import pandas as pd

    from grokray.tracking import StudyTracker

    tracker.start_trial("t1-r0", "r", {}, {"ray.trial_id": "t1"}, config_key="a")
    tracker.start_trial("t2-r0", "r", {}, {"ray.trial_id": "t2"}, config_key="b")
    again = StudyTracker(tracker.study_name, tracker.uri)
    again.attach(tracker.parent_run_id)
    del again._artifact_uris[again._child_runs["t2-r0"]]
    curves = pd.DataFrame({"step": [0, 10], "val_acc": [0.5, 0.6]})
    for key in ("t1-r0", "t2-r0"):
        again.end_trial(key, {"stop_reason": "budget", "steps_run": 10}, curves)
    for run in again._children():
        assert [a.path for a in again.client.list_artifacts(run.info.run_id)] == ["curves.parquet"]
        local = again.client.download_artifacts(run.info.run_id, "curves.parquet", str(tmp_path))
        table = pd.read_parquet(local)
        assert table["val_acc"].tolist() == [0.5, 0.6]
