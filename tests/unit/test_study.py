import textwrap

import pytest

from grokray.config import StudyError
from grokray.space import categorical, grid, integer, uniform
from grokray.study import Study, load_study
from tests.paths import ROOT

GOOD = """
from grokray import Study, grid, loguniform
study = Study(
    name="t",
    config={"p": 13, "steps": 100, "eval_every": 10},
    space={"train_fraction": grid([0.3, 0.6]), "weight_decay": loguniform(0.1, 1.0)},
    seeds=2, sampler="tpe", num_samples=4,
)
"""


def write(tmp_path, text, name="s.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, text, overrides=()):
    with pytest.raises(StudyError) as info:
        load_study(write(tmp_path, text), overrides)
    return info.value


def test_good_study_loads_and_resolves(tmp_path):
    study = load_study(write(tmp_path, GOOD))
    assert study.total_trials == 8
    config = study.resolve({"train_fraction": 0.6, "weight_decay": 0.5})
    assert config["p"] == 13 and config["train_fraction"] == 0.6 and config["weight_decay"] == 0.5
    assert config["lr"] == 1e-3  # contract default
    # the value `grokray trial` uses for a searched name: its first grid value / geometric middle
    assert study.resolve({})["train_fraction"] == 0.3
    assert study.resolve({})["weight_decay"] == pytest.approx(0.316, abs=1e-3)


@pytest.mark.parametrize(
    ("edit", "field", "allowed"),
    [
        ({"config": '{"learning_rate": 1}'}, "learning_rate", "allowed: "),
        ({"config": '{"p": "big"}'}, "p", "an integer"),
        ({"config": '{"train_fraction": 1.5}'}, "train_fraction", "(0, 1]"),
        ({"config": '{"train_fraction": 0}'}, "train_fraction", "(0, 1]"),
        ({"config": '{"weight_decay": -1.0}'}, "weight_decay", "[0, inf)"),
        ({"config": '{"op": "/", "p": 12}'}, "p", "prime"),
        ({"config": '{"op": "%"}'}, "op", "one of"),
        ({"config": '{"model": "resnet"}'}, "model", "one of"),
        ({"config": '{"optimizer": "lion"}'}, "optimizer", "one of"),
        ({"config": '{"steps": 10, "eval_every": 100}'}, "eval_every", "at most steps"),
        ({"space": '{"train_fraction": grid([])}'}, "space.train_fraction", "at least one"),
        ({"space": '{"train_fraction": uniform(0.5, 0.1)}'}, "space.train_fraction", "low <= high"),
        ({"space": '{"train_fraction": [0.1, 0.2]}'}, "space.train_fraction", "grid()"),
        ({"space": '{"train_fraction": grid([0.1, 2.0])}'}, "space.train_fraction", "(0, 1]"),
        (
            {"space": '{"weight_decay": loguniform(0, 1)}', "sampler": '"tpe"', "num_samples": "2"},
            "space.weight_decay",
            "low > 0",
        ),
        ({"space": '{"weight_decay": loguniform(0.1, 1)}'}, "space.weight_decay", "grid sampler"),
        ({"sampler": '"bayes"'}, "sampler", "tpe, random, grid, gp, qmc, boundary"),
        ({"gpus_per_trial": "1.5"}, "gpus_per_trial", "[0, 1]"),
        ({"seeds": "0"}, "seeds", ">= 1"),
        ({"name": '"Bad Name"'}, "name", "lowercase"),
        ({"sampler": '"tpe"'}, "num_samples", "must be > 0"),
    ],
)
def test_bad_studies_name_the_field(tmp_path, edit, field, allowed):
    parts = {
        "name": '"t"',
        "config": "{}",
        "space": '{"train_fraction": grid([0.2, 0.4])}',
        "sampler": '"grid"',
        **edit,
    }
    body = ", ".join(f"{k}={v}" for k, v in parts.items())
    err = error_of(tmp_path, f"from grokray import *\nstudy = Study({body})\n")
    assert err.field == field
    assert allowed in str(err)
    assert "\n" not in str(err)


def test_study_file_errors(tmp_path):
    assert error_of(tmp_path, "study = (\n").field == "STUDY"
    assert "syntax error" in str(error_of(tmp_path, "study = (\n"))
    assert error_of(tmp_path, "x = 1\n").field == "study"
    assert error_of(tmp_path, "raise RuntimeError('boom')\n").field == "STUDY"
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "missing.py")


def test_set_overrides_fix_values_and_pin_grids(tmp_path):
    path = write(tmp_path, GOOD)
    study = load_study(path, ["p=17", "weight_decay=0.1,1.0", "train_fraction=0.5", "seeds=3"])
    assert study.config["p"] == 17
    assert "train_fraction" not in study.space and study.config["train_fraction"] == 0.5
    assert study.space["weight_decay"] == grid([0.1, 1.0])
    assert study.seeds == 3
    for bad, field in [
        ("p", "--set"),
        ("p=", "--set"),
        ("colour=red", "colour"),
        ("p=abc", "p"),
        ("train_fraction=0.5,7", "train_fraction"),
        ("seeds=two", "seeds"),
    ]:
        with pytest.raises(StudyError) as info:
            load_study(path, [bad])
        assert info.value.field == field, bad


def test_primitives_grid_values():
    assert integer(1, 5, step=2).grid_values() == (1, 3, 5)
    assert uniform(0.1, 0.3, step=0.1).grid_values() == (0.1, 0.2, 0.3)
    assert uniform(0.1, 0.3).grid_values() is None
    assert categorical(["a", "b"]).grid_values() == ("a", "b")
    study = Study(
        name="g", space={"train_fraction": grid([0.2, 0.4, 0.6]), "seed": integer(0, 1)}, sampler="grid"
    ).validate()
    assert study.num_configs == 6 and study.total_trials == 6


def test_quick_profile_and_fingerprint(tmp_path):
    study = load_study(
        write(tmp_path, GOOD.replace("num_samples=4,", 'num_samples=4, quick={"steps": 20},')), quick=True
    )
    assert study.config["steps"] == 20
    full = load_study(write(tmp_path, GOOD))
    assert study.fingerprint() != full.fingerprint()
    assert full.fingerprint() == load_study(write(tmp_path, GOOD)).fingerprint()


def test_shipped_studies_validate():

    for path in sorted((ROOT / "studies").glob("*.py")):
        for quick in (False, True):
            study = load_study(path, quick=quick)
            assert study.total_trials >= 1


def test_linked_values_follow_the_searched_one_and_yield_to_set():
    from grokray.space import grid as grid_dim

    study = Study(
        name="linked",
        space={"optimizer": grid_dim(["adamw", "wand"])},
        linked={"optimizer": {"wand": {"lr": 0.5}}},
        config={"lr": 1e-3},
        sampler="grid",
    ).validate()
    assert study.resolve({"optimizer": "adamw"})["lr"] == 1e-3
    assert study.resolve({"optimizer": "wand"})["lr"] == 0.5
    pinned = study.with_overrides(["lr=0.01"]).validate()
    assert pinned.resolve({"optimizer": "wand"})["lr"] == 0.01
    with pytest.raises(StudyError) as err:
        Study(name="bad", linked={"optimizer": {"wand": {"lr": -1}}}, seeds=2, num_samples=1).validate()
    assert err.value.field == "lr"
