"""The smoke study through real Ray Tune, real Optuna and a real SQLite MLflow, as a user runs it."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from tests.conftest import run_cli

    workdir = tmp_path_factory.mktemp("smoke")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    result = run_cli(
        "run",
        str(ROOT / "studies/critical_size.py"),
        "--quick",
        "--set",
        "train_fraction=0.2,0.5,0.8",
        "--set",
        "seeds=2",
        "--set",
        "run_figures=4",  # the first four runs to end get their own figure, the other two not
        cwd=workdir,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, env, result


def test_run_prints_progress_and_the_estimate(smoke):
    _, _, result = smoke
    assert "6/6 done" in result.stdout
    assert "critical fraction [95% CI]" in result.stdout
    assert "Configuration for experiment" not in result.stdout  # Ray's tables are replaced


def test_mlflow_has_parent_children_params_metrics_artifacts(smoke):
    from mlflow.tracking import MlflowClient

    workdir, env, _ = smoke
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("critical-size")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("grokray.role") == "study"]
    children = [r for r in runs if r.data.tags.get("grokray.role") == "trial"]
    assert len(parents) == 1 and len(children) == 6  # 3 configs x 2 seed replicas
    parent = parents[0]
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    # packed Tune trials (pack="auto": 16 replicas on a CPU) trained the 3 configs x 2 seeds, the
    # first batch shared out over the study's 2 free slots: 2 packs, each run tagged with its own
    packs = [c.data.tags["ray.trial_id"] for c in children]
    assert len(set(packs)) == 2 and sorted(packs.count(p) for p in set(packs)) == [2, 4]
    assert all(c.data.tags["grokray.pack"] == c.data.tags["ray.trial_id"] for c in children)
    assert len({c.data.tags["grokray.run_key"] for c in children}) == 6
    pairs = sorted((float(c.data.params["train_fraction"]), int(c.data.params["seed"])) for c in children)
    assert pairs == [(f, s) for f in (0.2, 0.5, 0.8) for s in (0, 1)]
    # the UI opens the study on its runs (model training, not GenAI traces), described by its docstring
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("Critical data size of modular addition")
    assert parent.data.tags["mlflow.note.content"] == experiment.tags["mlflow.note.content"]
    # what applies to a modular study, and the seeds as the study's field, not seed/replicas
    assert {"p", "op", "steps", "seeds", "space.train_fraction"} <= set(parent.data.params)
    assert not {"dim", "rank", "vocab_size", "data_path", "seed", "replicas", "heads"} & set(
        parent.data.params
    )
    assert not {"dim", "rank", "vocab_size", "data_path"} & set(children[0].data.params)
    for child in children:
        params = child.data.params
        assert params["p"] == "31" and params["steps"] == "1500" and params["replicas"] == "2"
        assert {"grokked", "phase", "stop_reason", "grokking_step"} <= set(child.data.tags)
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert len(history) >= 3 and history[0].step == 0
    # every run has its curves and weights; its own figure only the first run_figures=4 to end
    artifacts = [sorted(a.path for a in client.list_artifacts(c.info.run_id)) for c in children]
    assert (
        sorted(artifacts)
        == [["curves.parquet", "grokking_curve.png", "weights.pt"]] * 4
        + [["curves.parquet", "weights.pt"]] * 2
    )
    # the easy split groks and stops early; the hardest does not
    by_fraction = {
        float(c.data.params["train_fraction"]): c for c in children if c.data.params["seed"] == "0"
    }
    assert by_fraction[0.8].data.tags["grokked"] == "True"
    assert by_fraction[0.8].data.tags["stop_reason"] == "grokked"
    assert by_fraction[0.2].data.tags["grokked"] == "False"
    assert by_fraction[0.2].data.tags["stop_reason"] == "budget"
    # the trained network, for analysis: one line loads it, and it scores what the run recorded last
    import torch

    import grokray
    from grokray.tasks import make_pool, split

    network, config = grokray.load_model(by_fraction[0.8].info.run_id, env["MLFLOW_TRACKING_URI"])
    pool = make_pool(config)
    _, val = split(pool, config)
    with torch.no_grad():
        accuracy = float((network(pool.inputs[val]).argmax(-1) == pool.targets[val]).float().mean())
    last = client.get_metric_history(by_fraction[0.8].info.run_id, "val_acc")
    assert accuracy == pytest.approx(max(last, key=lambda m: m.step).value, abs=1e-6)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.parquet", "estimate.json", "val_acc_vs_step.png", "p_grok_vs_fraction.png"} <= artifacts
    table = pd.read_parquet(client.download_artifacts(parent.info.run_id, "trials.parquet", str(workdir)))
    assert len(table) == 6 and {"train_fraction", "grokked", "grokking_step", "n_train", "n_total"} <= set(
        table
    )
    png = Path(client.download_artifacts(parent.info.run_id, "p_grok_vs_fraction.png", str(workdir)))
    assert png.read_bytes()[:4] == b"\x89PNG"
    # previewable copies: the per-run table and the per-size summary (3 sizes x 2 seeds)
    assert {"trials.csv", "per_size.csv", "per_size.html"} <= artifacts
    sizes = pd.read_csv(client.download_artifacts(parent.info.run_id, "per_size.csv", str(workdir)))
    assert list(sizes["train_fraction"]) == [0.2, 0.5, 0.8] and list(sizes["n"]) == [2, 2, 2]
    assert sizes.loc[2, "p_grok"] == 1.0 and sizes.loc[0, "censored"] == 2


def test_report_reprints_the_estimate_from_mlflow(smoke, cli):
    workdir, env, _ = smoke
    result = cli("report", "critical-size", "--json", cwd=workdir, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    estimates = json.loads(result.stdout)
    assert len(estimates) == 1
    estimate = estimates[0]
    assert {
        "critical_fraction",
        "ci_low",
        "ci_high",
        "critical_size",
        "peak_fraction",
        "n_trials",
        "budget_steps",
    } <= set(estimate)
    assert estimate["n_trials"] == 6 and estimate["budget_steps"] == 1500
    assert 0.2 <= estimate["critical_fraction"] <= 0.8
    text = cli("report", "critical-size", cwd=workdir, env=env, timeout=120)
    assert text.returncode == 0 and "per size:" in text.stdout and "median grok step" in text.stdout
    assert "%|" not in text.stdout + text.stderr  # no download progress bar
    missing = cli("report", "no-such-study", cwd=workdir, env=env, timeout=120)
    assert missing.returncode == 2 and "no study named" in missing.stderr


@pytest.mark.parametrize("pack", ["1", "2"])
def test_sizes_below_two_that_did_not_grok_are_stopped_as_dominated(tmp_path, cli, pack):
    """Largest size first, one trial at a time: 0.5 and 0.4 spend their (tiny) budget without
    grokking, so 0.3 and 0.2 are stopped at their first report; every record says so. Packed two
    configs a trial, the same: 0.5 and 0.4 are the first pack, and 0.3 and 0.2 wait for its outcome
    (they would lie below it), then get a pack of their own that stops untrained."""
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    study = str(ROOT / "studies/critical_size.py")
    sets = ["steps=100", "train_fraction=0.2,0.5,0.3,0.4", "max_concurrent=1", f"pack={pack}"]
    result = cli("run", study, "--quick", *[a for s in sets for a in ("--set", s)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 runs at fraction <= 0.3 stopped early" in result.stdout
    assert "4/4 done, 0 running, 0 grokked, 2 stopped below sizes that did not grok" in result.stdout
    table = pd.read_parquet(tmp_path / "results/critical-size/trials.parquet").set_index("train_fraction")
    assert table.loc[[0.5, 0.4], "stop_reason"].tolist() == ["budget", "budget"]
    assert table.loc[[0.5, 0.4], "steps_run"].tolist() == [100, 100]
    assert table.loc[[0.3, 0.2], "stop_reason"].tolist() == ["dominated", "dominated"]
    assert table.loc[[0.3, 0.2], "steps_run"].max() < 100
    if pack == "2":  # two packs: the failing sizes, and the dominated ones, untrained
        assert table.loc[[0.3, 0.2], "steps_run"].max() == 0
        assert table.groupby("tune_trial_id").size().tolist() == [2, 2]
    assert not table["grokked"].any() and table.loc[[0.3, 0.2], "phase"].isna().all()
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    children = client.search_runs(
        [client.get_experiment_by_name("critical-size").experiment_id], "tags.`grokray.role` = 'trial'"
    )
    [parent] = client.search_runs(
        [client.get_experiment_by_name("critical-size").experiment_id], "tags.`grokray.role` = 'study'"
    )
    assert parent.data.params["early_stop"] == "True" and parent.data.params["monotone_stop"] == "2"
    tags = {
        float(c.data.params["train_fraction"]): (c.info.status, c.data.tags["stop_reason"]) for c in children
    }
    assert tags == {
        0.5: ("FINISHED", "budget"),
        0.4: ("FINISHED", "budget"),
        0.3: ("FINISHED", "dominated"),
        0.2: ("FINISHED", "dominated"),
    }


@pytest.mark.parametrize("kill", ["SIGTERM", "SIGKILL"])
def test_kill_mid_study_then_resume_loses_nothing(tmp_path, kill):
    """SIGTERM after the first finished trial: exit 130, no run left RUNNING. SIGKILL: the driver
    just dies. Either way --resume finishes the study with exactly one child run per config, the
    finished ones untouched, every metric step logged once, and no step trained twice. Packed
    two configs a trial: 0.8 and 0.7 first, then 0.3 and 0.2."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "GROKRAY_CHECKPOINT_SECONDS": "0",  # a checkpoint with every report
    }
    args = [
        sys.executable,
        "-m",
        "grokray",
        "run",
        str(ROOT / "studies/critical_size.py"),
        "--quick",
        "--set",
        "train_fraction=0.2,0.3,0.7,0.8",
        "--set",
        "steps=1500",
        "--set",
        "pack=2",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        if " 1/4 done" in line or " 2/4 done" in line or time.monotonic() > deadline:
            break
    proc.send_signal(getattr(signal, kill))
    output = proc.stdout.read()  # what the line iterator has not consumed yet
    proc.wait(timeout=120)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("critical-size")
    runs = client.search_runs([experiment.experiment_id])
    if kill == "SIGTERM":
        assert proc.returncode == 130, output[-2000:]
        assert "--resume" in output
        assert not [r for r in runs if r.info.status == "RUNNING"]
    else:
        assert proc.returncode == -signal.SIGKILL
    finished_before = {
        r.data.tags["ray.trial_id"]
        for r in runs
        if r.info.status == "FINISHED" and r.data.tags.get("grokray.role") == "trial"
    }
    assert finished_before, "the kill came before any trial finished"

    resumed = subprocess.run(
        [*args, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("grokray.role") == "study"]
    children = [r for r in runs if r.data.tags.get("grokray.role") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    assert all(r.info.status == "FINISHED" for r in runs)
    assert finished_before <= {c.data.tags["ray.trial_id"] for c in children}
    for child in children:
        # every evaluation (every 50 steps) once in MLflow: none twice, none lost to the kill
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        assert steps and sorted(steps) == list(range(0, max(steps) + 1, 50)), (child.info.run_name, steps)
    # in-flight trials continued from their newest checkpoint: no trial trained a step twice
    # (a resumed trial first reports its checkpoint's evaluation again, marked replayed)
    for result_file in (tmp_path / "results" / "critical-size").glob("*/result.json"):
        lines = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        steps = [line["step"] for line in lines if not line.get("replayed")]
        assert steps == sorted(set(steps)), (result_file.parent.name, steps)


def _run_with_fault(tmp_path, fault, *extra):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "GROKRAY_CHECKPOINT_SECONDS": "0",
        "GROKRAY_INJECT_FAULT": fault,
    }
    args = [sys.executable, "-m", "grokray", "run", str(ROOT / "studies/critical_size.py"), "--quick", *extra]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _trial_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("critical-size")
    return client.search_runs([experiment.experiment_id])


def test_a_trial_that_raises_is_retried_from_its_checkpoint(tmp_path):
    result = _run_with_fault(tmp_path, "raise-once@300")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = _trial_runs(tmp_path)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    for result_file in (tmp_path / "results" / "critical-size").glob("*/result.json"):
        assert (result_file.parent / "injected_fault").exists()  # the fault did fire in every trial
        lines = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        steps = [line["step"] for line in lines if not line.get("replayed")]
        assert steps == sorted(set(steps)) and steps[-1] > 300  # continued, not restarted


def test_a_trial_that_keeps_failing_is_recorded_and_the_study_goes_on(tmp_path):
    # the 0.2 trial trains to its 1500-step budget and meets the fault at 1000 on every attempt;
    # the 0.8 trial groks before that and finishes
    # both in one pack (pack="auto"): 0.8's outcome stands though its pack fails
    result = _run_with_fault(tmp_path, "raise-always@1000", "--set", "max_failures=1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = _trial_runs(tmp_path)
    by_role = {}
    for run in runs:
        by_role.setdefault(run.data.tags.get("grokray.role"), []).append(run)
    assert [r.info.status for r in by_role["study"]] == ["FINISHED"]
    trials = {float(r.data.params["train_fraction"]): r for r in by_role["trial"]}
    assert trials[0.8].info.status == "FINISHED" and trials[0.8].data.tags["grokked"] == "True"
    assert trials[0.2].info.status == "FAILED" and trials[0.2].data.tags["stop_reason"] == "failed"
    # the last attempt's error: the retry resumed from the checkpoint at step 1000 and met the
    # fault again at its next evaluation
    assert "RuntimeError: injected fault at step 10" in trials[0.2].data.tags["error"]
    assert "(raise-always@1000)" in trials[0.2].data.tags["error"]
    table = pd.read_parquet(tmp_path / "results" / "critical-size" / "trials.parquet")
    assert table.set_index("train_fraction")["failed"].to_dict() == {0.2: True, 0.8: False}
    assert "1 failed" in result.stdout


def test_tracking_server_outage_mid_study_loses_no_metric(tmp_path):
    """A real `mlflow server` is killed mid-study and restarted 8 s later on the same port and
    database: the study finishes, and every evaluation of every trial is in MLflow once."""
    import os
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    from tools.services import MlflowServer

    database = f"sqlite:///{tmp_path / 'server.db'}"
    server = MlflowServer.start(database, tmp_path / "artifacts", tmp_path / "server.log", timeout=90)
    uri = server.uri
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    study = subprocess.Popen(
        [sys.executable, "-m", "grokray", "run", str(ROOT / "studies/critical_size.py"), "--quick",
         "--set", "train_fraction=0.2,0.3,0.7,0.8", "--set", "steps=12000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # mid-study: the first progress line (every 15 s in a log) with replicas training; the four
        # configs are one pack, and 12000 steps keep 0.2 and 0.3 training past the first line
        # (trained in parts of similar size, they may finish 4000 steps before it)
        import re

        for line in study.stdout:
            training = re.search(r" (\d+)/4 done, (\d+) running", line)
            if training and int(training.group(2)) > 0:
                break
        server.kill()
        time.sleep(8)
        server.restart(timeout=90)
        output = study.stdout.read()
        study.wait(timeout=300)
        assert study.returncode == 0, output[-3000:]
        assert "tracking server unreachable" in output and "tracking server back" in output
        client = MlflowClient(database)
        experiment = client.get_experiment_by_name("critical-size")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
        evaluations = {}  # (Tune trial, replica) -> the steps it reported
        for result_file in (tmp_path / "results" / "critical-size").glob("*/result.json"):
            records = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
            for record in records:
                for replica, row in record["replicas"].items():
                    evaluations.setdefault((record["trial_id"], replica), set()).add(row["step"])
        for run in runs:
            if run.data.tags.get("grokray.role") == "trial":
                steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
                key = (run.data.tags["ray.trial_id"], run.data.tags["grokray.replica"])
                assert sorted(steps) == sorted(evaluations[key])
    finally:
        if study.poll() is None:
            study.kill()
        server.kill()


def test_a_failure_every_trial_hits_ends_the_study_at_once_with_one_line(tmp_path):
    """Every trial raises at its first evaluation (a fault drill): the first two failures end the
    study, exit 1, one line names the error, the other trials never start, and no run is left
    RUNNING."""
    result = _run_with_fault(
        tmp_path, "raise-always@0", "--set", "max_failures=0", "--set", "train_fraction=0.2,0.4,0.6,0.8",
        "--set", "pack=1",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    failure = [line for line in result.stderr.splitlines() if line.startswith("grokray: study failed:")]
    assert len(failure) == 1 and "RuntimeError: injected fault at step 0" in failure[0]
    runs = _trial_runs(tmp_path)
    assert all(r.info.status in ("FAILED", "KILLED") for r in runs), [r.info.status for r in runs]
    trials = [r for r in runs if r.data.tags.get("grokray.role") == "trial"]
    assert 2 <= len(trials) < 4  # stopped before every config was tried


def test_a_pack_whose_every_config_fails_ends_the_study_with_one_line(tmp_path):
    """All four configs in one pack, which raises at once: the study failed (exit 1, one line),
    not a finished study of failed runs."""
    result = _run_with_fault(
        tmp_path, "raise-always@0", "--set", "max_failures=0", "--set", "train_fraction=0.2,0.4,0.6,0.8"
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    failure = [line for line in result.stderr.splitlines() if line.startswith("grokray: study failed:")]
    assert len(failure) == 1 and "RuntimeError: injected fault at step 0" in failure[0]
    runs = _trial_runs(tmp_path)
    assert all(r.info.status in ("FAILED", "KILLED") for r in runs), [r.info.status for r in runs]
