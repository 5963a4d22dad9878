"""What a researcher meets after ``make run``: the config an MLflow run records, the resume command,
the study links the UI target prints, ``grokray report`` given a study file."""

from __future__ import annotations

import argparse
import shlex
import sys

import pytest

from grokray.config import applicable, default_config
from tests.paths import ROOT


def _config(**values):
    return {**default_config(), **values}


def test_a_run_records_what_applies_to_its_config():
    modular = applicable(_config(task="modular", model="mlp", optimizer="adamw", regularizer="none"))
    assert {"p", "op", "encoding", "embed_dim", "beta1", "beta2", "train_fraction", "seed"} <= set(modular)
    gone = {"dim", "sparsity", "matrix_size", "rank", "test_size", "data_path", "max_len", "vocab_size",
            "heads", "causal", "layer_norm", "momentum", "friction", "wand_beta", "reg_strength",
            "grokfast_alpha", "train_size", "complexity_epsilon"}  # fmt: skip
    assert not gone & set(modular)
    sparse = applicable(
        _config(task="sparse_recovery", model="diagonal", optimizer="sgd", regularizer="l1", train_size=30)
    )
    assert {"dim", "sparsity", "test_size", "momentum", "reg_strength", "train_size"} <= set(sparse)
    assert not {"p", "op", "embed_dim", "beta1", "train_fraction", "corruption", "heads"} & set(sparse)
    # a name whose controller is searched applies to some trials: kept
    searched = applicable(_config(optimizer="adamw"), searched=["optimizer"])
    assert {"momentum", "friction", "wand_beta", "beta1"} <= set(searched)


def test_the_resume_command_is_what_can_be_typed_here():
    from grokray.cli import resume_command

    args = argparse.Namespace(
        study="studies/critical_size.py", overrides=["steps=300", "note=a b"], quick=True, storage="out dir",
        address=None,
    )  # fmt: skip
    command = resume_command(args, program=["/venv/bin/python", "-m", "grokray"])
    assert command == (
        "/venv/bin/python -m grokray run studies/critical_size.py --set steps=300 --set 'note=a b' "
        "--quick --storage 'out dir' --resume"
    )
    # started as `python -m grokray` (the Makefile's way), it names this Python, not a bare `grokray`
    # that no shell finds without the venv activated
    assert resume_command(args).startswith(f"{shlex.quote(sys.executable)} -m grokray run ")


def test_links_list_the_study_experiments_only(tmp_path):
    from grokray.tracking import claim_study_name, study_links

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert study_links("http://127.0.0.1:5000", uri) == []  # no database yet: none, and none made
    assert not (tmp_path / "mlflow.db").exists()
    claim_study_name("wd-sweep", "wd_sweep.py", uri, description="A weight-decay sweep.")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    client.create_experiment("someone-elses")
    links = study_links("http://127.0.0.1:5000/", uri)
    experiment = client.get_experiment_by_name("wd-sweep")
    assert links == [("wd-sweep", f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs")]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"] == "A weight-decay sweep."


def test_report_takes_a_study_file_and_lists_no_default_experiment(cli, tmp_path):
    result = cli("report", str(ROOT / "studies/critical_size.py"), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "no study named 'critical-size'" in result.stderr  # the file's study, not the path
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    setup = (
        "from mlflow.tracking import MlflowClient; from grokray.tracking import claim_study_name; "
        f"claim_study_name('wd-sweep', 'wd_sweep.py', '{env['MLFLOW_TRACKING_URI']}'); "
        f"MlflowClient('{env['MLFLOW_TRACKING_URI']}').get_experiment_by_name('Default')"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", setup], cwd=ROOT, check=True, capture_output=True, timeout=120)
    result = cli("report", "nope", cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2 and "found: wd-sweep" in result.stderr and "Default" not in result.stderr


def test_a_child_run_is_named_by_its_size_seed_searched_values_and_outcome():
    from grokray.study import load_study
    from grokray.tune.results import replica_configs, run_name

    study = load_study(ROOT / "studies/critical_size.py", quick=True)
    config = replica_configs(study, {"train_fraction": 0.3})[0]
    assert run_name(study, config, "t1-r0") == "f=0.3 seed=0 [t1-r0]"
    grokked = {"grokked": True, "grokking_step": 900, "stop_reason": "grokked"}
    assert run_name(study, config, "t1-r0", grokked) == "f=0.3 seed=0 grokked@900 [t1-r0]"
    assert run_name(study, config, "t1-r0", {"grokked": False, "stop_reason": "budget"}).endswith(
        "no grok [t1-r0]"
    )
    width = load_study(ROOT / "studies/critical_size_width.py", quick=True)
    config = replica_configs(width, {"train_size": 40, "width": 32})[0]
    assert (
        run_name(width, config, "t2-r0", {"stop_reason": "dominated"})
        == "n=40 seed=0 width=32 dominated [t2-r0]"
    )


def _readme_study(**fields):
    from grokray import Study, grid, loguniform

    return Study(
        name="wd-vs-size",
        config={"p": 13, "steps": 100, "eval_every": 10},
        space={"train_fraction": grid([0.3, 0.5, 0.7]), "weight_decay": loguniform(0.1, 3.0)},
        **{"sampler": "tpe", "num_samples": 6, **fields},
    ).validate()


def _proposals(search, count):
    """The first ``count`` configs a searcher proposes, one per trial or several per pack."""
    from grokray.tune.results import pack_members

    out: list[dict] = []
    while len(out) < count:
        out.extend(pack_members(search.suggest(f"t{len(out)}")))
    return out[:count]


@pytest.mark.parametrize("pack", [1, "auto"])
def test_a_tpe_study_over_a_size_grid_trains_every_size_and_says_so(pack):
    """The README's study: under TPE a grid is a categorical, and six samples are all random
    start-up; every size of the grid is proposed first (largest first), the rest is TPE's; a
    trial per config or all six in one pack."""
    from grokray.tune.search import make_search

    study = _readme_study(pack=pack)
    search = make_search(study)
    proposals = _proposals(search, 6)
    assert [p["train_fraction"] for p in proposals[:3]] == [0.7, 0.5, 0.3]
    assert all(0.1 <= p["weight_decay"] <= 3.0 for p in proposals)
    notes = study.notes()
    assert any("all random start-up" in n for n in notes)
    assert any("every train_fraction of the grid is proposed once first" in n for n in notes)
    short = _readme_study(num_samples=2)
    assert any("only the 2 largest are trained" in n for n in short.notes())


def test_the_sampler_seed_makes_a_rerun_propose_other_configs():
    from grokray.tune.search import make_search

    def proposals(study):
        return [p["weight_decay"] for p in _proposals(make_search(study), 4)]

    assert proposals(_readme_study()) == proposals(_readme_study())  # the same seed: the same study
    assert proposals(_readme_study()) != proposals(_readme_study(sampler_seed=1))
    assert _readme_study().fingerprint() != _readme_study(sampler_seed=1).fingerprint()
    assert _readme_study().with_overrides(["sampler_seed=3"]).sampler_seed == 3


def test_a_text_size_no_trial_can_train_is_refused_before_anything_starts(cli, tmp_path):
    one_row = tmp_path / "one.csv"
    one_row.write_text("text,label\ngreat film,1\n")
    study = str(ROOT / "studies/critical_size_text.py")
    result = cli("run", study, "--quick", "--set", f"data_path={one_row}", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "data_path" in result.stderr and "has 1 rows" in result.stderr
    result = cli("run", study, "--quick", "--set", "train_size=500", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    # the shipped sample: 300 rows, 60 (20 %) held out for test
    assert "train_size: got 500; allowed: at most 240" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv"]  # nothing started


def test_a_size_grid_beyond_the_data_is_refused_by_its_largest_value(cli, tmp_path):
    study = str(ROOT / "studies/critical_size_text.py")
    result = cli("run", study, "--quick", "--set", "train_size=40,300", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "train_size: got 300; allowed: at most 240" in result.stderr
