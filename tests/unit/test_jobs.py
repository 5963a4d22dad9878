"""``grokray submit``: the job a study becomes (paths, environment, addresses) and its bad input."""

import time
from pathlib import Path

import pytest

from grokray.config import StudyError
from grokray.jobs import build_job, job_address
from tests.paths import ROOT
from tools.services import free_port

STUDY = "studies/critical_size.py"


def _build(address: str, environ: dict[str, str], storage: str | None = None, cwd: Path = ROOT) -> dict:
    return build_job(str(ROOT / STUDY), ["steps=300"], True, storage, address, environ, cwd, ROOT)


def test_a_local_head_gets_absolute_paths_for_relative_storage_and_sqlite(tmp_path):
    job = _build(
        "http://127.0.0.1:8265",
        {"MLFLOW_TRACKING_URI": "sqlite:///runs.db", "GROKRAY_CHECKPOINT_SECONDS": "5", "HOME": "/root"},
        storage="out",
        cwd=tmp_path,
    )
    assert job["entrypoint"] == (
        f"python -m grokray run {STUDY} --set steps=300 --quick --storage {tmp_path / 'out'}"
    )
    env = job["runtime_env"]["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'runs.db'}"
    assert env["GROKRAY_CHECKPOINT_SECONDS"] == "5" and "HOME" not in env
    assert env["RAY_JOB_STOP_WAIT_TIME_S"] == "60"
    assert job["runtime_env"]["working_dir"] == str(ROOT)
    assert {".venv", "results", "mlflow.db", ".git"} <= set(job["runtime_env"]["excludes"])
    # unset: the default sqlite:///mlflow.db and ./results of the submitting directory
    job = _build("http://localhost:8265", {}, cwd=tmp_path)
    assert job["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert job["results"] == str(tmp_path / "results")


def test_a_remote_head_refuses_relative_storage_and_a_local_sqlite_file(tmp_path):
    remote = "http://10.1.2.3:8265"
    with pytest.raises(StudyError, match="MLFLOW_TRACKING_URI"):
        _build(remote, {}, storage="s3://bucket/grokray")
    with pytest.raises(StudyError, match="--storage"):
        _build(remote, {"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    with pytest.raises(StudyError, match="GROKRAY_OPTUNA_STORAGE"):
        _build(
            remote, {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "GROKRAY_OPTUNA_STORAGE": "sqlite:///o.db"}
        )
    job = _build(
        remote,
        {
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "GROKRAY_STORAGE": "s3://bucket/grokray?region=eu-west-1",
        },
    )
    assert job["entrypoint"].endswith("--storage 's3://bucket/grokray?region=eu-west-1'")
    assert job["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "GROKRAY_STORAGE" not in job["runtime_env"]["env_vars"]  # passed as --storage, placed
    # an absolute path is a path on the cluster (e.g. an NFS mount): taken as given
    assert (
        _build(remote, {"MLFLOW_TRACKING_URI": "sqlite:////nfs/m.db"}, storage="/nfs/r")["results"]
        == "/nfs/r"
    )


def test_a_study_outside_the_shipped_directory_is_refused(tmp_path):
    with pytest.raises(StudyError, match="outside"):
        build_job(str(tmp_path / "s.py"), [], False, None, "http://127.0.0.1:8265", {}, tmp_path, ROOT)


def test_job_address_defaults(monkeypatch):
    monkeypatch.delenv("RAY_JOB_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a cluster address, not a job server
    assert job_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    assert job_address(None) == "http://10.0.0.1:8265"
    monkeypatch.setenv("RAY_JOB_ADDRESS", "head:8265")
    assert job_address(None) == "http://head:8265"
    assert job_address("https://ray.example:443") == "https://ray.example:443"


def test_unreachable_job_server_and_bad_input_exit_2_with_one_line(cli, tmp_path):
    started = time.monotonic()
    result = cli("submit", STUDY, "--quick", "--address", f"http://127.0.0.1:{free_port()}", cwd=ROOT)
    assert result.returncode == 2 and time.monotonic() - started < 10
    assert result.stderr.count("\n") == 1 and "--address" in result.stderr
    result = cli("status", "no-such-job", "--address", f"http://127.0.0.1:{free_port()}", cwd=ROOT)
    assert result.returncode == 2 and "--address" in result.stderr
    result = cli("submit", "studies/no_such.py", cwd=ROOT)
    assert result.returncode == 2 and "no such study file" in result.stderr
    result = cli(
        "submit", STUDY, "--address", "http://10.1.2.3:8265", cwd=ROOT, env={"MLFLOW_TRACKING_URI": ""}
    )
    assert result.returncode == 2 and "MLFLOW_TRACKING_URI" in result.stderr
