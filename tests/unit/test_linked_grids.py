"""Per-value grids in ``linked``, wand's weight decay, and one grouping for the estimate and stopper."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from grokray.analysis import critical_data_size
from grokray.analysis.critical import bin_label
from grokray.config import StudyError
from grokray.space import grid, loguniform
from grokray.study import Study
from grokray.tune.results import replica_configs
from grokray.tune.search import GRID_POINT, make_sampler, make_space
from grokray.tune.stopper import GrokStopper

PER_NORM = {
    "l1": {"reg_strength": grid([1e-6, 1e-5])},
    "l2": {"reg_strength": grid([1e-4, 1e-3, 1e-2])},
}


def _norm_study(**extra) -> Study:
    return Study(
        name="norms",
        config={"p": 11, "steps": 100, "eval_every": 50},
        space={"regularizer": grid(["l1", "l2", "none"]), "lr": grid([1e-3, 1e-2])},
        linked={"regularizer": PER_NORM},
        sampler="grid",
        **extra,
    ).validate()


def test_grid_points_are_the_union_of_the_per_value_grids():
    study = _norm_study()
    points = study.grid_points()
    # (2 l1 values + 3 l2 values + 1 for none) × 2 learning rates
    assert len(points) == (2 + 3 + 1) * 2 == study.num_configs
    by_norm = {
        norm: sorted({p.get("reg_strength") for p in points if p["regularizer"] == norm})
        for norm in ("l1", "l2", "none")
    }
    assert by_norm == {"l1": [1e-6, 1e-5], "l2": [1e-4, 1e-3, 1e-2], "none": [None]}
    assert study.searched_names() == ["regularizer", "lr", "reg_strength"]
    assert study.group_names() == ["regularizer", "lr", "reg_strength"]


def test_resolve_takes_the_linked_grid_value_only_under_its_value():
    study = _norm_study()
    assert study.resolve({"regularizer": "l2", "lr": 1e-2, "reg_strength": 1e-3})["reg_strength"] == 1e-3
    assert study.resolve({"regularizer": "l1", "lr": 1e-2})["reg_strength"] == 1e-6  # the grid's first
    assert study.resolve({"regularizer": "none", "lr": 1e-2, "reg_strength": 5.0})["reg_strength"] == 0.0


def test_the_grid_sampler_visits_every_point_of_the_union_once():
    study = _norm_study()
    space = make_space(study)
    optuna_study = optuna.create_study(sampler=make_sampler(study, seed=3))
    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(tuple(sorted(space(trial).items())))
        assert set(trial.params) == {GRID_POINT}
        return 0.0

    optuna_study.optimize(objective, n_trials=study.num_configs + 5)  # the grid stops it
    assert sorted(seen) == sorted(tuple(sorted(p.items())) for p in study.grid_points())


def test_the_grid_with_a_size_is_visited_largest_first():
    study = _norm_study(monotone_stop=2)
    study.space["train_fraction"] = grid([0.3, 0.9, 0.6])
    study.validate()
    space, optuna_study = make_space(study), optuna.create_study(sampler=make_sampler(study, seed=0))
    sizes: list[float] = []
    optuna_study.optimize(lambda trial: sizes.append(space(trial)["train_fraction"]) or 0.0, n_trials=99)
    assert len(sizes) == study.num_configs == 36
    assert sizes == sorted(sizes, reverse=True)


def test_tpe_asks_a_linked_grid_under_its_own_optuna_name():
    study = Study(
        name="norms-tpe",
        config={"p": 11, "steps": 100, "eval_every": 50},
        space={"regularizer": grid(["l1", "l2"])},
        linked={"regularizer": {"l1": {"reg_strength": loguniform(1e-7, 1e-5)}}},
        sampler="tpe",
        num_samples=4,
    ).validate()
    space, optuna_study = make_space(study), optuna.create_study(sampler=make_sampler(study, seed=0))
    for _ in range(8):
        trial = optuna_study.ask()
        values = space(trial) or {}
        if trial.params["regularizer"] == "l1":
            assert 1e-7 <= values["reg_strength"] <= 1e-5
            assert "reg_strength[regularizer=l1]" in trial.params
        else:
            assert values == {}
        config = replica_configs(study, {**trial.params, **values})[0]
        assert (config["reg_strength"] > 0) == (trial.params["regularizer"] == "l1")
        optuna_study.tell(trial, 0.0)


def test_a_linked_grid_cannot_also_be_searched_and_must_be_a_grid_for_the_grid_sampler():
    with pytest.raises(StudyError, match="reg_strength"):
        Study(
            name="x",
            space={"regularizer": grid(["l1"]), "reg_strength": grid([1e-3])},
            linked={"regularizer": PER_NORM},
            sampler="grid",
        ).validate()
    with pytest.raises(StudyError, match=r"linked\.regularizer\.l1\.reg_strength"):
        Study(
            name="x",
            space={"regularizer": grid(["l1"])},
            linked={"regularizer": {"l1": {"reg_strength": loguniform(1e-6, 1e-3)}}},
            sampler="grid",
        ).validate()


def test_set_on_the_command_line_wins_over_a_linked_grid():
    study = _norm_study().with_overrides(["reg_strength=0.5"]).validate()
    assert {p.get("reg_strength") for p in study.grid_points()} == {None}
    assert study.resolve({"regularizer": "l1", "lr": 1e-3})["reg_strength"] == 0.5


def test_wand_has_no_weight_decay_unless_the_study_names_it():
    study = Study(
        name="w",
        config={"p": 11},
        space={"optimizer": grid(["adamw", "wand"])},
        linked={"optimizer": {"wand": {"lr": 0.5}}},
        sampler="grid",
    ).validate()
    assert study.resolve({"optimizer": "adamw"})["weight_decay"] == 1.0  # the contract's default
    assert study.resolve({"optimizer": "wand"})["weight_decay"] == 0.0
    named = Study(
        name="w", config={"p": 11, "optimizer": "wand", "weight_decay": 0.1}, sampler="grid"
    ).validate()
    assert named.resolve({})["weight_decay"] == 0.1
    linked = Study(
        name="w",
        config={"p": 11},
        space={"optimizer": grid(["wand"])},
        linked={"optimizer": {"wand": {"weight_decay": 0.2}}},
        sampler="grid",
    ).validate()
    assert linked.resolve({"optimizer": "wand"})["weight_decay"] == 0.2
    overridden = Study(name="w", config={"p": 11}, sampler="grid").with_overrides(
        ["optimizer=wand", "weight_decay=0.3"]
    )
    assert overridden.validate().resolve({})["weight_decay"] == 0.3
    assert Study(name="w", config={"p": 11, "optimizer": "wand"}, sampler="grid").validate().resolve({})[
        "weight_decay"] == 0.0  # fmt: skip


def _width_table() -> pd.DataFrame:
    """Five widths, each with its own critical fraction (0.3 … 0.7), deterministic outcomes."""
    rows = []
    for width, f0 in zip([16, 32, 64, 128, 256], [0.3, 0.4, 0.5, 0.6, 0.7], strict=True):
        for fraction in np.round(np.arange(0.1, 0.91, 0.05), 2):
            for seed in range(4):
                # grokked above f0; at f0 ± 0.05 half of the seeds, so the fit is not separable
                grokked = fraction > f0 + 0.05 or (abs(fraction - f0) <= 0.051 and seed % 2 == 0)
                rows.append(
                    dict(width=width, train_fraction=fraction, seed=seed, grokked=grokked,
                         grokking_step=1000.0 if grokked else np.nan, steps=5000, n_total=961)
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_a_grid_of_five_widths_gives_five_critical_sizes():
    study = Study(
        name="w",
        config={"p": 31},
        space={"width": grid([16, 32, 64, 128, 256]), "train_fraction": grid([0.1, 0.5])},
        sampler="grid",
    ).validate()
    assert study.group_bins() == {}  # a grid: grouped by exact value
    estimates = critical_data_size(
        _width_table(), group_cols=study.group_names(), binned=study.group_bins(), n_bootstrap=50
    )
    assert [e["group"] for e in estimates] == [{"width": w} for w in (16, 32, 64, 128, 256)]
    assert [round(e["critical_fraction"], 2) for e in estimates] == [0.3, 0.4, 0.5, 0.6, 0.7]
    # the old rule (a table of unknown origin) binned them into three groups of mixed sizes
    assert len(critical_data_size(_width_table(), group_cols=["width"], n_bootstrap=10)) == 3


def test_continuous_dimensions_are_binned_over_their_range_the_same_way_by_the_stopper():
    study = Study(
        name="w",
        config={"p": 31},
        space={"weight_decay": loguniform(0.01, 10.0), "train_fraction": grid([0.1, 0.5])},
        num_samples=4,
    ).validate()
    assert study.group_bins() == {"weight_decay": (0.01, 10.0, True)}
    table = _width_table().rename(columns={"width": "weight_decay"})
    table["weight_decay"] = table["weight_decay"].map({16: 0.02, 32: 0.05, 64: 0.5, 128: 2.0, 256: 9.0})
    estimates = critical_data_size(
        table, group_cols=["weight_decay"], binned=study.group_bins(), n_bootstrap=10
    )
    labels = [e["group"]["weight_decay"] for e in estimates]
    assert labels == ["[0.01, 0.1)", "[0.1, 1)", "[1, 10]"]  # log bins over the dimension's range
    stopper = GrokStopper("train_fraction", study.group_names(), 2, study.group_bins())
    for value, label in [(0.02, labels[0]), (0.5, labels[1]), (9.0, labels[2]), (10.0, labels[2])]:
        assert stopper.group_of({"weight_decay": value}) == (label,)
        assert bin_label(value, (0.01, 10.0, True)) == label
    exact = GrokStopper("train_fraction", ["width"], 2, {})
    assert exact.group_of({"width": 64}) == ("64",)
