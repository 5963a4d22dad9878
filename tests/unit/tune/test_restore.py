"""Where results live (``Storage``), whether a run continues (``restore_decision``), and the
checkpoint a resumed trial takes."""

import json
from pathlib import Path

import pytest

from grokray.config import StudyError
from grokray.storage import Storage
from grokray.study import load_study
from grokray.tune.restore import STATE_FILE, restore_decision, unstarted_run
from tests.paths import ROOT


@pytest.fixture(scope="module")
def study():
    return load_study(ROOT / "studies/critical_size.py", quick=True)


def test_a_local_path_or_file_uri_is_a_local_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Storage("results")
    assert store.local and store.path == str(tmp_path / "results") and store.tune_filesystem is None
    assert store.show(store.join("s")) == str(tmp_path / "results" / "s")
    store = Storage(f"file://{tmp_path}/r/")
    assert store.local and store.path == f"{tmp_path}/r" and store.tune_filesystem is None


def test_an_s3_uri_gives_its_filesystem_and_a_readable_name():
    import pyarrow.fs as pafs

    store = Storage("s3://bucket/grokray?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1")
    assert isinstance(store.filesystem, pafs.S3FileSystem) and not store.local
    assert store.path == "bucket/grokray" and store.tune_filesystem is store.filesystem
    assert store.show(store.join("critical-size")) == "s3://bucket/grokray/critical-size"


def _experiment(
    store: Storage, study, fingerprint: str | None = None, finished: bool = False, snapshot: bool = True
) -> str:
    """What Tune and grokray leave in an experiment directory, as far as the decision looks."""
    directory = store.join(study.name)
    store.write_bytes(f"{directory}/tuner.pkl", b"")  # what Tuner.can_restore looks for
    if snapshot:  # Tune's experiment state, saved every ~10 s once trials run
        store.write_bytes(f"{directory}/experiment_state-2026-12-02_12-00-00.json", b"{}")
    state = {"parent_run_id": "abc", "fingerprint": fingerprint or study.fingerprint()}
    store.write_bytes(f"{directory}/{STATE_FILE}", json.dumps(state).encode())
    if finished:
        store.write_bytes(f"{directory}/estimate.json", b"{}")
    return directory


def _aside(tmp_path: Path, study) -> list[str]:
    return sorted(p.name for p in (tmp_path / "results").iterdir() if p.name.startswith(f"{study.name}."))


def test_an_unfinished_run_of_the_same_study_is_continued_without_resume(tmp_path, study, capsys):
    store = Storage(str(tmp_path / "results"))
    directory = _experiment(store, study)
    assert restore_decision(study, store, directory, resume=False) is True
    assert "resuming the unfinished run" in capsys.readouterr().out
    assert restore_decision(study, store, directory, resume=True) is True
    assert _aside(tmp_path, study) == []


def test_a_run_killed_before_tunes_first_snapshot_restarts_under_its_parent_run(tmp_path, study, capsys):
    """Only tuner.pkl: Tuner.restore cannot continue it (it raises); the new run starts Tune afresh
    and keeps the parent run it had opened."""
    store = Storage(str(tmp_path / "results"))
    directory = _experiment(store, study, snapshot=False)
    assert unstarted_run(study, store, directory)["parent_run_id"] == "abc"
    assert restore_decision(study, store, directory, resume=True) is False
    assert len(_aside(tmp_path, study)) == 1  # Tune's leftovers kept aside
    other = _experiment(store, study, fingerprint="changed", snapshot=False)
    assert unstarted_run(study, store, other) == {}  # another study's: nothing to continue
    snapshotted = _experiment(store, study)
    assert unstarted_run(study, store, snapshotted) == {}  # restorable: Tuner.restore continues it


def test_a_finished_run_is_kept_aside_and_a_new_run_starts(tmp_path, study, capsys):
    store = Storage(str(tmp_path / "results"))
    directory = _experiment(store, study, finished=True)
    assert restore_decision(study, store, directory, resume=False) is False
    assert "holds a finished run" in capsys.readouterr().out
    assert not Path(directory).exists() and len(_aside(tmp_path, study)) == 1


def test_a_changed_study_is_kept_aside_without_resume_and_refused_with_it(tmp_path, study, capsys):
    store = Storage(str(tmp_path / "results"))
    directory = _experiment(store, study, fingerprint="something-else")
    with pytest.raises(StudyError, match="--resume"):
        restore_decision(study, store, directory, resume=True)
    assert Path(directory).exists()  # refused: nothing moved
    assert restore_decision(study, store, directory, resume=False) is False
    assert "the study changed" in capsys.readouterr().out
    assert not Path(directory).exists() and len(_aside(tmp_path, study)) == 1


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, study, capsys):
    store = Storage(str(tmp_path / "results"))
    assert restore_decision(study, store, store.join(study.name), resume=True) is False
    assert "nothing to resume" in capsys.readouterr().out
    Path(store.join(study.name)).mkdir(parents=True)  # a directory Tune cannot restore
    assert restore_decision(study, store, store.join(study.name), resume=True) is False
    assert len(_aside(tmp_path, study)) == 1


def test_a_resumed_trial_takes_its_furthest_trained_checkpoint_not_the_registered_one(tmp_path):
    """Tune hands back the checkpoint its experiment state names; a later one on storage (written
    before a stopped driver registered it) wins by step, a half-written one is passed over, and a
    stale one Tune's renumbering left behind (higher number, fewer steps) loses."""
    import pyarrow.fs as pafs
    import torch

    from grokray.tune.trainable import newest_checkpoint_state

    def write(index: int, step: int | None) -> str:
        directory = tmp_path / f"checkpoint_{index:06d}"
        directory.mkdir()
        if step is None:
            (directory / "state.pt").write_bytes(b"PK\x03\x04 cut short")
        else:
            torch.save({"step": step}, directory / "state.pt")
        return str(directory)

    registered = write(1, 100)
    write(2, 300)
    write(3, None)  # the kill landed while it was being written
    write(4, 200)  # left over from an earlier attempt, since overwritten up to index 2
    fs = pafs.LocalFileSystem()
    assert newest_checkpoint_state(fs, registered) == ({"step": 300}, 100)
    assert newest_checkpoint_state(fs, str(tmp_path / "checkpoint_000002")) == ({"step": 300}, 300)
    with pytest.raises(Exception):  # noqa: B017 - the registered checkpoint itself must load
        newest_checkpoint_state(fs, str(tmp_path / "checkpoint_000003"))


def test_replayed_results_rebuild_each_evaluation_after_the_registered_step():
    """Two replicas, the second done at step 100: the results after step 50 are those the trial
    reported at steps 100 and 150 (the finished replica keeps its last record)."""
    from grokray.tune.results import replayed_results

    def record(replica: int, step: int, reason: str = "running") -> dict:
        return {"replica": replica, "step": step, "grokked": reason == "grokked",
                "grokking_step": step if reason == "grokked" else None, "stop_reason": reason,
                "val_acc": step / 1000}  # fmt: skip

    histories = [
        [record(0, 0), record(0, 50), record(0, 100), record(0, 150, "budget")],
        [record(1, 0), record(1, 50), record(1, 100, "grokked")],
    ]
    results = replayed_results(histories, 50, [{"train_fraction": 0.5, "steps": 150}] * 2)
    assert [r["step"] for r in results] == [100, 150]
    assert [r["stop_reason"] for r in results] == ["running", "done"]
    assert results[1]["replicas"]["1"]["step"] == 100 and results[1]["n_grokked"] == 1
    assert results[0]["boundary_score"] == (1.5 + 0.5) / 2  # replica 0 not grokked, replica 1 grokked
    assert replayed_results(histories, 150, [{"train_fraction": 0.5, "steps": 150}] * 2) == []
