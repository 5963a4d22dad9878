"""``grokray submit | status | logs | stop``: where a job's results and runs go (unit tests), and a
real local Ray head with its job server running, following and stopping studies (integration)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.paths import ROOT
from tools.services import free_port

RAY = str(Path(sys.executable).with_name("ray"))
STUDY = "studies/critical_size.py"


# ---------------------------------------------------------------------------------------------
# A real Ray head with its dashboard / job server


@pytest.fixture
def head():
    """``ray start --head --block`` with the job server on free ports, in its own session (stopped by
    its process group: `ray stop` would stop every Ray on the machine)."""
    temp = tempfile.mkdtemp(prefix="grj-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    dashboard = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the job's python
    }
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard,
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    args = [RAY, "start", "--block", "--head", "--node-ip-address", "127.0.0.1", "--dashboard-host",
            "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "true", "--disable-usage-stats",
            "--temp-dir", temp]  # fmt: skip
    for flag, port in ports.items():
        args += [flag, str(port)]
    node = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                import urllib.request

                urllib.request.urlopen(f"{address}/api/version", timeout=2).read()
                break
            except OSError:
                assert node.poll() is None, "ray start --head exited"
                time.sleep(1)
        else:
            raise AssertionError("the job server did not come up")
        yield address, env
    finally:
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _runs(db: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("critical-size")
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.integration
def test_submit_follow_status_logs_and_stop_on_a_real_job_server(head, tmp_path):
    address, env = head
    grokray = [sys.executable, "-m", "grokray"]
    env = {**env, "PYTHONPATH": str(ROOT), "GROKRAY_CHECKPOINT_SECONDS": "2"}
    # a long study, submitted without waiting: stopped below while its trial trains
    long_env = {**env, "MLFLOW_TRACKING_URI": "sqlite:///long.db"}  # relative: made absolute for this head
    long = subprocess.run(
        [*grokray, "submit", str(ROOT / STUDY), "--quick", "--set", "train_fraction=0.2",
         "--set", "steps=100000", "--address", address, "--storage", "long", "--no-wait"],
        cwd=tmp_path, env=long_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert long.returncode == 0, long.stderr[-2000:]
    long_id = re.search(r"submitted job (\S+)", long.stdout).group(1)
    # a short one, followed to its end
    short_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'short.db'}"}
    short = subprocess.run(
        [*grokray, "submit", STUDY, "--quick", "--set", "train_fraction=0.3,0.8", "--set", "steps=600",
         "--set", "max_concurrent=1", "--address", address, "--storage", str(tmp_path / "short")],
        cwd=ROOT, env=short_env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert short.returncode == 0, short.stdout[-3000:] + short.stderr[-2000:]
    short_id = re.search(r"submitted job (\S+)", short.stdout).group(1)
    assert "2/2 done" in short.stdout and "SUCCEEDED" in short.stdout  # the job's log, followed
    status = subprocess.run([*grokray, "status", short_id, "--address", address], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert status.returncode == 0 and status.stdout.startswith(f"{short_id}: SUCCEEDED"), status.stdout
    logs = subprocess.run([*grokray, "logs", short_id, "--address", address], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert logs.returncode == 0 and "Critical data size of critical-size" in logs.stdout
    runs = _runs(tmp_path / "short.db")
    parents = [r for r in runs if r.data.tags.get("grokray.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len([r for r in runs if r.data.tags.get("grokray.role") == "trial"]) == 2
    assert (tmp_path / "short" / "critical-size" / "trials.parquet").is_file()

    # the long job: wait for its trial to train, then stop it
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if any(r.data.tags.get("grokray.role") == "trial" for r in _runs(tmp_path / "long.db")):
            break
        time.sleep(2)
    else:
        raise AssertionError("the long job's trial never started")
    stop = subprocess.run([*grokray, "stop", long_id, "--address", address], env=env,
                          capture_output=True, text=True, timeout=150)  # fmt: skip
    assert stop.returncode == 0 and f"{long_id}: STOPPED" in stop.stdout, stop.stdout + stop.stderr
    runs = _runs(tmp_path / "long.db")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"], [r.info.status for r in runs]
    parents = [r for r in runs if r.data.tags.get("grokray.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    logs = subprocess.run([*grokray, "logs", long_id, "--address", address], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "--resume" in logs.stdout  # grokray's own interrupt message, printed by the job's driver
