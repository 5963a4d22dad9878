"""``--storage s3://``: the smoke study against a real S3 API (moto's server on loopback),
interrupted, and continued by a plain rerun; a directory moved on an object store."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from grokray.storage import Storage
from tests.paths import ROOT
from tools.services import free_port

# ---------------------------------------------------------------------------------------------
# A real S3 API: moto's server on loopback


@pytest.fixture
def s3(monkeypatch):
    """A bucket on moto's S3 server; yields the storage URI and the environment that reaches it."""
    # moto is a test extra (make test installs it): skipped only where someone ran pytest bare
    moto_server = pytest.importorskip("moto.server", reason="moto is not installed (make test)")
    port = free_port()
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
    # pack=1: one trial per config, so "1/3 done" comes mid-study (packed, the study is one trial)
    args = [sys.executable, "-m", "grokray", "run", str(ROOT / "studies/critical_size.py"), "--quick",
            "--set", "train_fraction=0.2,0.3,0.8", "--set", "max_concurrent=1", "--set", "pack=1",
            "--storage", uri]  # fmt: skip
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
