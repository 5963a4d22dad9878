"""``--storage`` as a local path or any pyarrow URI, and the idempotent entry point: a rerun of an
unfinished study continues it, a finished or changed one is kept aside and a new run starts.

The integration test runs the smoke study against a real S3 API (moto's server on loopback)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grokray.runner import STATE_FILE, Storage, _restore_decision
from grokray.study import StudyError, load_study

ROOT = Path(__file__).resolve().parents[1]


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


def _experiment(store: Storage, study, fingerprint: str | None = None, finished: bool = False) -> str:
    """What Tune and grokray leave in an experiment directory, as far as the decision looks."""
    directory = store.join(study.name)
    store.write_bytes(f"{directory}/tuner.pkl", b"")  # what Tuner.can_restore looks for
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
    assert _restore_decision(study, store, directory, resume=False) is True
    assert "resuming the unfinished run" in capsys.readouterr().out
    assert _restore_decision(study, store, directory, resume=True) is True
    assert _aside(tmp_path, study) == []


def test_a_finished_run_is_kept_aside_and_a_new_run_starts(tmp_path, study, capsys):
    store = Storage(str(tmp_path / "results"))
    directory = _experiment(store, study, finished=True)
    assert _restore_decision(study, store, directory, resume=False) is False
    assert "holds a finished run" in capsys.readouterr().out
    assert not Path(directory).exists() and len(_aside(tmp_path, study)) == 1


def test_a_changed_study_is_kept_aside_without_resume_and_refused_with_it(tmp_path, study, capsys):
    store = Storage(str(tmp_path / "results"))
    directory = _experiment(store, study, fingerprint="something-else")
    with pytest.raises(StudyError, match="--resume"):
        _restore_decision(study, store, directory, resume=True)
    assert Path(directory).exists()  # refused: nothing moved
    assert _restore_decision(study, store, directory, resume=False) is False
    assert "the study changed" in capsys.readouterr().out
    assert not Path(directory).exists() and len(_aside(tmp_path, study)) == 1


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, study, capsys):
    store = Storage(str(tmp_path / "results"))
    assert _restore_decision(study, store, store.join(study.name), resume=True) is False
    assert "nothing to resume" in capsys.readouterr().out
    Path(store.join(study.name)).mkdir(parents=True)  # a directory Tune cannot restore
    assert _restore_decision(study, store, store.join(study.name), resume=True) is False
    assert len(_aside(tmp_path, study)) == 1


# ---------------------------------------------------------------------------------------------
# A real S3 API: moto's server on loopback


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """A bucket on moto's S3 server; yields the storage URI and the environment that reaches it."""
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    creds = {
        "AWS_ACCESS_KEY_ID": "grokray",
        "AWS_SECRET_ACCESS_KEY": "grokray",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    try:
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="bucket")
        yield f"s3://bucket/grokray?endpoint_override=127.0.0.1:{port}&scheme=http", creds
    finally:
        server.stop()


@pytest.mark.integration
def test_move_on_an_object_store_copies_then_deletes(s3):
    uri, _ = s3
    store = Storage(uri)
    store.write_bytes(store.join("a", "x", "f.txt"), b"hello")
    store.move(store.join("a"), store.join("b"))
    assert not store.exists(store.join("a")) and store.read_text(store.join("b", "x", "f.txt")) == "hello"


@pytest.mark.integration
def test_a_study_on_s3_is_interrupted_and_a_plain_rerun_continues_it(s3, tmp_path):
    """SIGTERM after the first finished trial, then the same command again (no --resume): it says it
    resumes, finishes with one parent run and one child run per trial, and the trial table and
    estimate are in the bucket."""
    from mlflow.tracking import MlflowClient

    uri, creds = s3
    env = {
        **os.environ,
        **creds,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "GROKRAY_CHECKPOINT_SECONDS": "0",
    }
    args = [sys.executable, "-m", "grokray", "run", str(ROOT / "studies/critical_size.py"), "--quick",
            "--set", "train_fraction=0.2,0.3,0.8", "--set", "max_concurrent=1", "--storage", uri]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            if " 1/3 done" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        output = proc.stdout.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output[-2000:]

    rerun = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "resuming the unfinished run in s3://bucket/grokray/critical-size" in rerun.stdout
    assert "results: s3://bucket/grokray/critical-size" in rerun.stdout
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("critical-size").experiment_id])
    assert len([r for r in runs if r.data.tags.get("grokray.role") == "study"]) == 1
    assert len([r for r in runs if r.data.tags.get("grokray.role") == "trial"]) == 3
    assert all(r.info.status == "FINISHED" for r in runs)

    store = Storage(uri)
    import pyarrow.parquet as pq

    with store.filesystem.open_input_file(store.join("critical-size", "trials.parquet")) as handle:
        table = pq.read_table(handle).to_pandas()
    assert sorted(table["train_fraction"]) == [0.2, 0.3, 0.8]
    estimate = json.loads(store.read_text(store.join("critical-size", "estimate.json")))
    assert estimate["n_trials"] == 3
    assert store.exists(store.join("critical-size", "p_grok_vs_fraction.png"))
    assert not (tmp_path / "results").exists()  # nothing went to the local default


def test_a_resumed_trial_takes_its_furthest_trained_checkpoint_not_the_registered_one(tmp_path):
    """Tune hands back the checkpoint its experiment state names; a later one on storage (written
    before a stopped driver registered it) wins by step, a half-written one is passed over, and a
    stale one Tune's renumbering left behind (higher number, fewer steps) loses."""
    import pyarrow.fs as pafs
    import torch

    from grokray.runner import newest_checkpoint_state

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
    from grokray.runner import replayed_results

    def record(replica: int, step: int, reason: str = "running") -> dict:
        return {"replica": replica, "step": step, "grokked": reason == "grokked",
                "grokking_step": step if reason == "grokked" else None, "stop_reason": reason,
                "val_acc": step / 1000}  # fmt: skip

    histories = [
        [record(0, 0), record(0, 50), record(0, 100), record(0, 150, "budget")],
        [record(1, 0), record(1, 50), record(1, 100, "grokked")],
    ]
    results = replayed_results(histories, 50, {"train_fraction": 0.5, "steps": 150})
    assert [r["step"] for r in results] == [100, 150]
    assert [r["stop_reason"] for r in results] == ["running", "done"]
    assert results[1]["replicas"]["1"]["step"] == 100 and results[1]["n_grokked"] == 1
    assert results[0]["boundary_score"] == (1.5 + 0.5) / 2  # replica 0 not grokked, replica 1 grokked
    assert replayed_results(histories, 150, {"train_fraction": 0.5, "steps": 150}) == []
