import json

import pytest

from tests.paths import ROOT

STUDY = "studies/critical_size.py"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["trial", STUDY, "--set", "p=abc"], "p"),
        (["trial", STUDY, "--set", "nonsense"], "--set"),
        (["run", STUDY, "--set", "train_fraction=1.5"], "train_fraction"),
        (["run", STUDY, "--set", "op=/", "--set", "p=30"], "p"),
        (["run", "studies/missing.py"], "STUDY"),
        (["run", STUDY, "--bogus-flag"], "--bogus-flag"),
        (["trial", STUDY, "--set", "seeds=3"], "seeds"),  # one seed: refused, not cut to one
        (["trial", STUDY, "--set", "train_fraction=0.3,0.7"], "train_fraction: got a grid"),
        (["run", STUDY, "--set", "lr=1e-2", "--set", "lr=2e-2"], "lr is set twice"),
        (["run", STUDY, "--set", "weight_decy=1"], "did you mean weight_decay?"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, args, field):
    args = [str(ROOT / a) if a == STUDY else a for a in args]
    result = cli(*args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert field in lines[0]
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no results/


def test_broken_study_file(cli, tmp_path):
    (tmp_path / "broken.py").write_text(
        "from grokray import Study\nstudy = Study(name='x', config={'lr': 'fast'})\n"
    )
    result = cli("run", str(tmp_path / "broken.py"), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "grokray: error: lr: got 'fast'; allowed: a number in (0, inf)"


def test_trial_json_reproduces_a_config(cli):
    args = ["trial", STUDY, "--set", "train_fraction=0.8", "--set", "steps=600", "--set", "seed=1", "--json"]
    first, second = cli(*args, timeout=120), cli(*args, timeout=120)
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)
    assert outcome == json.loads(second.stdout)
    assert outcome["config"]["train_fraction"] == 0.8 and outcome["config"]["seed"] == 1
    assert {"memorization_step", "grokking_step", "grokked", "phase", "stop_reason"} <= set(outcome)
    assert "step" in first.stderr  # progress is shown on stderr


def test_unreachable_tracking_server_fails_fast_with_one_line(cli, tmp_path):
    import socket
    import time

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    result = cli(
        "run",
        str(ROOT / STUDY),
        "--quick",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"},
        timeout=60,
    )
    assert result.returncode == 2
    assert time.monotonic() - started < 15
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("grokray: error: MLFLOW_TRACKING_URI: no MLflow tracking server answers")
    assert list(tmp_path.iterdir()) == []
