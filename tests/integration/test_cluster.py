"""A real two-node Ray cluster on loopback: trials run on both nodes, and when the worker node is
killed mid-study its trials are rescheduled (from their checkpoints) and the study completes."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.paths import ROOT
from tools.services import free_port, wait_for_ray_nodes

RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.integration


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``ray start ... --block`` in its own session, so killing its group kills the whole node."""
    return subprocess.Popen([RAY, "start", "--block", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


@pytest.fixture
def cluster():
    temp = tempfile.mkdtemp(prefix="gr-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    address = f"127.0.0.1:{port}"
    head = _start(
        ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
         "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp],
        env,
    )  # fmt: skip
    nodes = {"head": head}
    try:
        wait_for_ray_nodes(address, 1, env)
        nodes["worker"] = _start(["--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                                  "--disable-usage-stats"], env)  # fmt: skip
        wait_for_ray_nodes(address, 2, env)
        yield address, env, nodes, Path(temp)
    finally:
        for node in nodes.values():
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            node.wait()


def test_worker_node_killed_mid_study_its_trials_finish_elsewhere(cluster, tmp_path):
    address, env, nodes, temp = cluster
    env = {
        **env,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "GROKRAY_CHECKPOINT_SECONDS": "0",
    }
    study = subprocess.Popen(
        [sys.executable, "-m", "grokray", "run", str(ROOT / "studies/critical_size.py"), "--quick",
         "--address", address, "--set", "train_fraction=0.2,0.25,0.3,0.35", "--set", "steps=3000",
         "--set", "max_failures=3", "--set", "pack=2", "--set", "monotone_stop=0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(study.stdout), daemon=True)
    reader.start()
    results = tmp_path / "results" / "critical-size"
    try:
        # two packs of two configs (no monotone rule to hold the second back), one per node;
        # wait until trials report from both nodes (1 CPU per node, 1 CPU per trial), then kill one;
        # these small fractions do not grok, so each trial trains its whole 3000-step budget and
        # the worker's trial is still in flight when its node dies. The driver writes each result
        # to its staging directory in the cluster's session at once; Tune copies it to the
        # results directory only every few minutes (and at the end), too late to watch there.
        def live_nodes() -> set[str]:
            staging = temp.glob("session_*/artifacts/*/critical-size/driver_artifacts")
            return set().union(*(_nodes_reporting(directory) for directory in staging))

        deadline = time.monotonic() + 180
        while len(live_nodes()) < 2 and study.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(live_nodes()) == 2, "".join(lines)[-3000:]
        os.killpg(nodes["worker"].pid, signal.SIGKILL)
        study.wait(timeout=400)
        reader.join(timeout=10)
    finally:
        if study.poll() is None:
            study.kill()
    output = "".join(lines)
    assert study.returncode == 0, output[-3000:]
    assert "4/4 done" in output
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("critical-size").experiment_id])
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    # the trial that was on the dead node was rescheduled: its results come from both nodes
    moved = [d.name for d in results.iterdir() if d.is_dir() and len(_nodes_reporting(results, d.name)) == 2]
    assert len(moved) == 1, moved


def _nodes_reporting(results: Path, trial: str = "*") -> set[str]:
    """The Ray nodes that trials have reported from (each result names its node)."""
    nodes = set()
    for result_file in results.glob(f"{trial}/result.json"):
        for line in result_file.read_text().splitlines():
            try:
                nodes.add(json.loads(line)["ray_node_id"])
            except ValueError:  # empty, or the line the driver is writing right now
                continue
    return nodes
