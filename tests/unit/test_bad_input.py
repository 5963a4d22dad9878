"""The bad-input corpus: every malformed study, flag or environment gives one line on stderr that
names the field and what is allowed, exit code 2, and writes nothing (no MLflow database, no
experiment, no results directory).

Each case runs the real CLI in a subprocess (its own directory, its own SQLite MLflow URI and
``--storage``). The subprocesses run three at a time in a module fixture; each case is then
checked by its own parametrized test.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grokray.config import IMPLEMENTED, StudyError, check_config, default_config
from tests.paths import ROOT

SHIPPED = str(ROOT / "studies" / "critical_size.py")
TEXT_BUILT = "text" in IMPLEMENTED["task"]
# until the text task is built the CLI rejects task=text first; check_config is tested directly below
TEXT_FIELD = "data_path" if TEXT_BUILT else "task"


def study_file(
    config: str = '{"p": 11, "steps": 100, "eval_every": 50}',
    space: str = '{"train_fraction": grid([0.3, 0.6])}',
    name: str = '"bad-input"',
    extra: str = 'sampler="grid", max_concurrent=1',
) -> str:
    """A small valid study, with one part replaced by each case."""
    return (
        "from grokray import Study, categorical, grid, integer, loguniform, uniform\n\n"
        f"study = Study(name={name}, config={config}, space={space}, {extra})\n"
    )


@dataclasses.dataclass
class Case:
    id: str
    args: list[str]  # STUDY stands for the case's study.py
    field: str  # the one line names this field ...
    allowed: str  # ... and says what is allowed (a substring of the line)
    study: str | None = None  # the text of study.py
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # more files in the case's directory
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None


def _taken_by_other_file(directory: Path) -> None:
    """An MLflow experiment 'bad-input' created by another study file (other.py). In a subprocess,
    so that importing MLflow does not hold up the other cases running meanwhile."""
    code = (
        "from grokray.tracking import claim_study_name; "
        f"claim_study_name('bad-input', 'other.py', 'sqlite:///{directory / 'mlflow.db'}')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=120)


def _mlflow_contents(database: Path) -> tuple[dict[str, str | None], int]:
    """{experiment name: its grokray.study_file tag} and the number of runs, read with sqlite3."""
    import sqlite3

    with sqlite3.connect(database) as connection:
        experiments = dict(
            connection.execute(
                "SELECT e.name, t.value FROM experiments e LEFT JOIN experiment_tags t "
                "ON t.experiment_id = e.experiment_id AND t.key = 'grokray.study_file'"
            ).fetchall()
        )
        [(runs,)] = connection.execute("SELECT count(*) FROM runs").fetchall()
    return experiments, runs


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RUN = ["run", "STUDY"]
CASES = [
    # unknown names
    Case(
        "unknown-config-name", RUN, "learning_rate", "allowed: ", study_file(config='{"learning_rate": 0.1}')
    ),
    Case("unknown-space-name", RUN, "space.lr_max", "allowed: ", study_file(space='{"lr_max": grid([1.0])}')),
    Case("unknown-set-name", [*RUN, "--set", "widht=64"], "widht", "allowed: ", study_file()),
    Case(
        "unknown-quick-name",
        RUN,
        "dropout",
        "allowed: ",
        study_file(extra='sampler="grid", quick={"dropout": 0.1}'),
    ),
    # wrong types
    Case("float-as-string", RUN, "lr", "a number in (0, inf)", study_file(config='{"lr": "fast"}')),
    Case("int-as-float", RUN, "p", "an integer", study_file(config='{"p": 11.5}')),
    Case("bool-as-word", RUN, "bias", "true or false", study_file(config='{"p": 11, "bias": "maybe"}')),
    Case(
        "set-int-not-a-number",
        ["trial", "STUDY", "--set", "p=abc"],
        "p",
        "an integer in [2, 1000]",
        study_file(),
    ),
    Case("set-study-field-type", [*RUN, "--set", "seeds=two"], "seeds", "allowed: int", study_file()),
    Case("config-not-a-dict", RUN, "config", "allowed: a dict", study_file(config='"lr=0.1"')),
    Case("quick-not-a-dict", [*RUN, "--quick"], "quick", "allowed: a dict", study_file(extra="quick=500")),
    Case(
        "misspelt-study-argument",
        RUN,
        "study",
        "unexpected keyword argument 'sed'; allowed: name, config, space, seeds",
        study_file(extra='sampler="grid", sed=3'),
    ),
    Case("space-not-a-dimension", RUN, "space.lr", "uniform()", study_file(space='{"lr": [0.1, 0.2]}')),
    # ranges
    Case(
        "fraction-zero",
        RUN,
        "train_fraction",
        "(0, 1]",
        study_file(space="{}", config='{"p": 11, "train_fraction": 0.0, "steps": 100, "eval_every": 50}'),
    ),
    Case(
        "fraction-above-one", [*RUN, "--set", "train_fraction=1.5"], "train_fraction", "(0, 1]", study_file()
    ),
    Case(
        "fraction-negative-in-grid",
        RUN,
        "space.train_fraction",
        "(0, 1]",
        study_file(space='{"train_fraction": grid([-0.1, 0.5])}'),
    ),
    Case(
        "fraction-default-outside",
        RUN,
        "space.train_fraction",
        "default",
        study_file(space='{"train_fraction": uniform(0.1, 0.9, step=0.1, default=2.0)}'),
    ),
    Case(
        "negative-weight-decay",
        RUN,
        "weight_decay",
        "[0, inf)",
        study_file(config='{"p": 11, "weight_decay": -0.5}'),
    ),
    Case(
        "negative-weight-decay-set",
        ["trial", "STUDY", "--set", "weight_decay=-1"],
        "weight_decay",
        "[0, inf)",
        study_file(),
    ),
    Case(
        "negative-temperature",
        RUN,
        "temperature",
        "[0, inf)",
        study_file(config='{"p": 11, "temperature": -1}'),
    ),
    Case("zero-init-scale", RUN, "init_scale", "(0, inf)", study_file(config='{"p": 11, "init_scale": 0}')),
    Case("p-too-small", [*RUN, "--set", "p=1"], "p", "[2, 1000]", study_file()),
    Case("zero-steps", [*RUN, "--set", "steps=0"], "steps", "[1, inf)", study_file()),
    Case(
        "threshold-above-one", [*RUN, "--set", "grok_threshold=1.5"], "grok_threshold", "(0, 1]", study_file()
    ),
    Case("train-size-too-large", [*RUN, "--set", "train_size=121"], "train_size", "below 121", study_file()),
    Case(
        "eval-every-above-steps",
        [*RUN, "--set", "eval_every=500"],
        "eval_every",
        "at most steps=100",
        study_file(),
    ),
    # cross-field rules
    Case("division-non-prime-p", [*RUN, "--set", "op=/", "--set", "p=91"], "p", "prime", study_file()),
    Case("division-non-prime-p-file", RUN, "p", "prime", study_file(config='{"op": "/", "p": 30}')),
    Case(
        "fixed-and-searched",
        RUN,
        "train_fraction",
        "keep one",
        study_file(config='{"p": 11, "train_fraction": 0.5}'),
    ),
    Case("replicas-set-directly", RUN, "replicas", "seeds=N", study_file(config='{"p": 11, "replicas": 4}')),
    # search spaces
    Case(
        "empty-search-space", RUN, "space", "add a dimension", study_file(space="{}", extra="num_samples=5")
    ),
    Case(
        "empty-grid",
        RUN,
        "space.train_fraction",
        "at least one",
        study_file(space='{"train_fraction": grid([])}'),
    ),
    Case(
        "low-above-high",
        RUN,
        "space.weight_decay",
        "low <= high",
        study_file(space='{"weight_decay": uniform(2.0, 1.0)}', extra="num_samples=4"),
    ),
    Case(
        "log-scale-from-zero",
        RUN,
        "space.lr",
        "low > 0",
        study_file(space='{"lr": loguniform(0.0, 0.1)}', extra="num_samples=4"),
    ),
    Case(
        "grid-sampler-continuous",
        RUN,
        "space.lr",
        "the grid sampler needs",
        study_file(space='{"lr": loguniform(1e-3, 1e-1)}'),
    ),
    Case(
        "zero-step",
        RUN,
        "space.width",
        "step must be > 0",
        study_file(space='{"width": integer(8, 64, step=0)}', extra="num_samples=4"),
    ),
    # unknown choices
    Case(
        "unknown-sampler", RUN, "sampler", "tpe, random, grid, gp, qmc", study_file(extra='sampler="bayes"')
    ),
    Case(
        "unknown-sampler-set", [*RUN, "--set", "sampler=cmaes"], "sampler", "tpe, random, grid", study_file()
    ),
    Case(
        "unknown-objective",
        RUN,
        "objective",
        "boundary, steps_to_grok, val_acc",
        study_file(extra='sampler="grid", objective="loss"'),
    ),
    Case("unknown-op", RUN, "op", "one of +, -, *, /", study_file(config='{"p": 11, "op": "%"}')),
    Case("unknown-model", [*RUN, "--set", "model=resnet"], "model", "one of mlp", study_file()),
    Case(
        "unknown-optimizer",
        RUN,
        "optimizer",
        "one of adamw, adam, sgd",
        study_file(config='{"p": 11, "optimizer": "lion"}'),
    ),
    Case(
        "unknown-activation",
        [*RUN, "--set", "activation=swish"],
        "activation",
        "one of relu, gelu",
        study_file(),
    ),
    Case("unknown-device", [*RUN, "--set", "device=tpu"], "device", "one of auto, cpu, cuda", study_file()),
    Case(
        "unknown-choice-in-grid",
        RUN,
        "space.loss",
        "one of ce, mse",
        study_file(space='{"loss": grid(["ce", "hinge"])}'),
    ),
    # study fields
    Case(
        "gpu-fraction-above-one",
        RUN,
        "gpus_per_trial",
        "[0, 1]",
        study_file(extra='sampler="grid", gpus_per_trial=1.5'),
    ),
    Case(
        "gpu-fraction-above-one-set",
        [*RUN, "--set", "gpus_per_trial=2"],
        "gpus_per_trial",
        "[0, 1]",
        study_file(),
    ),
    Case(
        "zero-cpus", RUN, "cpus_per_trial", "(0, 1024]", study_file(extra='sampler="grid", cpus_per_trial=0')
    ),
    Case("zero-seeds", [*RUN, "--set", "seeds=0"], "seeds", "integer >= 1", study_file()),
    Case("negative-num-samples", RUN, "num_samples", "integer >= 0", study_file(extra="num_samples=-1")),
    Case("tpe-without-samples", RUN, "num_samples", "must be > 0", study_file(extra='sampler="tpe"')),
    Case(
        "zero-concurrency",
        RUN,
        "max_concurrent",
        "integer >= 1",
        study_file(extra='sampler="grid", max_concurrent=0'),
    ),
    Case(
        "negative-max-failures",
        [*RUN, "--set", "max_failures=-1"],
        "max_failures",
        "integer >= 0",
        study_file(),
    ),
    Case(
        "negative-monotone-stop",
        [*RUN, "--set", "monotone_stop=-1"],
        "monotone_stop",
        "integer >= 0",
        study_file(),
    ),
    Case(
        "fractional-monotone-stop",
        RUN,
        "monotone_stop",
        "integer >= 0",
        study_file(extra='sampler="grid", max_concurrent=1, monotone_stop=1.5'),
    ),
    Case("bad-study-name", RUN, "name", "lowercase letters, digits", study_file(name='"My Study!"')),
    # the study file
    Case("syntax-error", RUN, "STUDY", "syntax error", "from grokray import Study\nstudy = Study(name='x'\n"),
    Case("no-study-object", RUN, "study", "must define `study = Study(...)`", "from grokray import Study\n"),
    Case("study-not-a-study", RUN, "study", "must define `study = Study(...)`", "study = {'name': 'x'}\n"),
    Case(
        "study-file-raises",
        RUN,
        "STUDY",
        "raised NameError",
        "from grokray import Study\nstudy = Study(name=NAME)\n",
    ),
    Case("missing-study-file", ["run", "missing.py"], "STUDY", "no such study file", None),
    Case(
        "not-a-python-file",
        ["run", "study.txt"],
        "STUDY",
        "not a Python file",
        None,
        files={"study.txt": "x\n"},
    ),
    # flags and commands
    Case("set-without-equals", [*RUN, "--set", "nonsense"], "--set", "expected name=value", study_file()),
    Case("set-without-name", [*RUN, "--set", "=5"], "--set", "expected name=value", study_file()),
    Case(
        "set-without-value", ["trial", "STUDY", "--set", "lr="], "--set", "expected name=value", study_file()
    ),
    Case("unknown-flag", [*RUN, "--bogus-flag"], "--bogus-flag", "--help", study_file()),
    Case("submit-bad-value", ["submit", "STUDY", "--set", "lr=0"], "lr", "(0, inf)", study_file()),
    Case("no-study-argument", ["run"], "STUDY", "--help", None),
    Case("unknown-command", ["frobnicate"], "frobnicate", "choose from", None),
    Case("report-unknown-study", ["report", "no-such-study"], "STUDY_NAME", "found: none", None),
    Case("report-no-name", ["report"], "STUDY_NAME", "--help", None),
    # the environment and MLflow
    Case(
        "tracking-server-unreachable",
        RUN,
        "MLFLOW_TRACKING_URI",
        "start the server or unset the variable",
        study_file(),
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_unused_port()}"},
    ),
    Case(
        "duplicate-study-name",
        RUN,
        "name",
        "already exists in MLflow (from other.py); rename the study in this file or use that file",
        study_file(),
        prepare=_taken_by_other_file,
    ),
    # the text task's dataset (the field is `task` until the text task is built)
    Case(
        "text-dataset-missing",
        RUN,
        TEXT_FIELD,
        "no such file" if TEXT_BUILT else "allowed: ",
        study_file(
            config='{"task": "text", "model": "encoder", "data_path": "missing.csv", "steps": 100}',
            space="{}",
            extra='sampler="grid", seeds=2',
        ),
    ),
    Case(
        "text-dataset-no-label",
        RUN,
        TEXT_FIELD,
        "columns text and label" if TEXT_BUILT else "allowed: ",
        study_file(
            config='{"task": "text", "model": "encoder", "data_path": "reviews.csv", "steps": 100}',
            space="{}",
            extra='sampler="grid", seeds=2',
        ),
        files={"reviews.csv": "text,stars\ngood film,5\n"},
    ),
]


def _command(case: Case, directory: Path) -> tuple[list[str], dict[str, str]]:
    args = [str(directory / "study.py") if a == "STUDY" else a for a in case.args]
    if args[:1] == ["run"]:
        args += ["--storage", str(directory / "results")]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{directory / 'mlflow.db'}",
        "GROKRAY_STORAGE": str(directory / "results"),
        **case.env,
    }
    return [sys.executable, "-m", "grokray", *args], env


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess[str], Path, set[str]]]:
    """Run every case (three subprocesses at a time); per case: the result, its directory, and the
    names that were in its directory before the command ran."""
    prepared = {}

    def run(case: Case) -> subprocess.CompletedProcess[str]:
        directory = tmp_path_factory.mktemp(case.id)
        if case.study is not None:
            (directory / "study.py").write_text(case.study)
        for name, text in case.files.items():
            (directory / name).write_text(text)
        if case.prepare:
            case.prepare(directory)
        prepared[case.id] = directory, {p.name for p in directory.iterdir()}
        command, env = _command(case, directory)
        # its own session: should a case start a study after all, the whole group (a local Ray
        # included) is killed, and the case fails with what it printed
        proc = subprocess.Popen(
            command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    slow_first = sorted(CASES, key=lambda c: not (c.prepare or c.env))  # these import MLflow: seconds
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip([c.id for c in slow_first], pool.map(run, slow_first), strict=True))
    return {cid: (results[cid], *prepared[cid]) for cid in results}


def test_the_corpus_is_large_and_its_ids_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_one_line_exit_2_writes_nothing(outcomes, case):
    result, directory, before = outcomes[case.id]
    context = f"exit {result.returncode}\nstdout: {result.stdout[-1500:]}\nstderr: {result.stderr[-3000:]}"
    assert result.returncode == 2, context
    lines = result.stderr.splitlines()
    assert len(lines) == 1, context
    [line] = lines
    assert line.startswith("grokray: error: "), line
    assert case.field in line, line
    assert case.allowed in line, line
    assert result.stdout == "", context
    # nothing written: no results directory, no MLflow database (or, where the case made one, no
    # new experiment and no run in it)
    assert {p.name for p in directory.iterdir()} == before, sorted(p.name for p in directory.iterdir())
    assert not (directory / "results").exists()
    if "mlflow.db" in before:
        assert _mlflow_contents(directory / "mlflow.db") == ({"Default": None, "bad-input": "other.py"}, 0)


def test_bad_input_fails_fast(outcomes):
    """A mistyped study fails in about a second, not after Ray has started."""
    import time

    case = next(c for c in CASES if c.id == "unknown-config-name")
    command, env = _command(case, outcomes[case.id][1])
    started = time.monotonic()
    subprocess.run(command, cwd=outcomes[case.id][1], env=env, capture_output=True, timeout=60)
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------------------------
# The text task's dataset, checked directly (the CLI rejects task=text until the task is built)


def _text_config(path: Path | str) -> dict:
    return {**default_config(), "task": "text", "model": "encoder", "data_path": str(path)}


def test_text_dataset_that_does_not_exist(tmp_path):
    with pytest.raises(StudyError) as err:
        check_config(_text_config(tmp_path / "missing.csv"))
    assert err.value.field == "data_path"
    assert "no such file" in str(err.value) and "columns text and label" in str(err.value)


def test_a_relative_dataset_path_is_found_from_any_working_directory(tmp_path, monkeypatch):
    """The text study names data/text_sample.csv relative to the project: it validates when run
    from elsewhere, as its trials (in Ray's working directories) find it; a file in the working
    directory wins."""
    from grokray.config import find_data_file
    from grokray.study import load_study

    monkeypatch.chdir(tmp_path)
    study = load_study(ROOT / "studies/critical_size_text.py", quick=True)
    found = find_data_file(study.config["data_path"])
    assert found is not None and found.is_absolute() and found.name == "text_sample.csv"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "text_sample.csv").write_text("text,label\na,0\nb,1\n")
    assert find_data_file("data/text_sample.csv") == Path("data/text_sample.csv")
    assert find_data_file("data/nothing.csv") is None


def test_text_dataset_not_given():
    with pytest.raises(StudyError) as err:
        check_config(_text_config(""))
    assert err.value.field == "data_path" and "task=text needs a dataset" in str(err.value)


def test_text_dataset_csv_without_label_column(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,stars\ngood film,5\nbad film,1\n")
    with pytest.raises(StudyError) as err:
        check_config(_text_config(path))
    assert str(err.value) == (
        f"data_path: {path} lacks column label (has: text, stars); "
        "allowed: a .csv or .parquet file with columns text and label"
    )


def test_text_dataset_parquet_without_text_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "reviews.parquet"
    pq.write_table(pa.table({"review": ["good"], "label": [1]}), path)
    with pytest.raises(StudyError) as err:
        check_config(_text_config(path))
    assert "lacks column text (has: review, label)" in str(err.value)


def test_text_dataset_wrong_suffix_and_unreadable(tmp_path):
    (tmp_path / "reviews.json").write_text("[]")
    with pytest.raises(StudyError, match=r"reviews.json \(.json\); allowed: a .csv or .parquet"):
        check_config(_text_config(tmp_path / "reviews.json"))
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(StudyError, match="cannot read"):
        check_config(_text_config(tmp_path / "broken.parquet"))


def test_text_dataset_with_both_columns_passes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "ok.csv").write_text("label,text\n1,good film\n0,bad film\n")
    check_config(_text_config(tmp_path / "ok.csv"))
    pq.write_table(
        pa.table({"text": ["good", "bad"], "label": [1, 0], "extra": [0.5, 0.1]}), tmp_path / "ok.parquet"
    )
    check_config(_text_config(tmp_path / "ok.parquet"))


# ---------------------------------------------------------------------------------------------
# The duplicate-name rule


def test_a_study_name_belongs_to_one_study_file(tmp_path):
    from mlflow.tracking import MlflowClient

    from grokray.tracking import STUDY_FILE_TAG, claim_study_name

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    claim_study_name("wd-sweep", "wd_sweep.py", uri)  # new: created and tagged
    experiment = client.get_experiment_by_name("wd-sweep")
    assert experiment.tags[STUDY_FILE_TAG] == "wd_sweep.py"
    claim_study_name("wd-sweep", "wd_sweep.py", uri)  # the same file again: fine, nothing changes
    assert [e.name for e in client.search_experiments()].count("wd-sweep") == 1
    with pytest.raises(StudyError) as err:
        claim_study_name("wd-sweep", "other.py", uri)
    assert str(err.value) == (
        "name: study 'wd-sweep' already exists in MLflow (from wd_sweep.py); "
        "rename the study in this file or use that file"
    )
    # an experiment from before the rule (no tag) is accepted and tagged
    old = client.create_experiment("old-study")
    claim_study_name("old-study", "old.py", uri)
    assert client.get_experiment(old).tags[STUDY_FILE_TAG] == "old.py"
    with pytest.raises(StudyError, match=r"\(from old.py\)"):
        claim_study_name("old-study", "new.py", uri)
