"""Study-level early stopping: the largest-first grid and the monotone rule of ``GrokStopper``."""

import optuna
import pytest

from grokray.space import grid
from grokray.study import Study
from grokray.tune.search import LargestFirstGridSampler, make_sampler
from grokray.tune.stopper import GrokStopper


def _result(fraction, *replicas, regularizer="none", **extra):
    """A trial result as ``run_trial`` reports it: replicas given as (stop_reason, grokked)."""
    return {
        "config": {"train_fraction": fraction, "regularizer": regularizer},
        "stop_reason": "running" if any(r == "running" for r, _ in replicas) else "done",
        "replicas": {
            str(i): {"replica": i, "stop_reason": reason, "grokked": grokked, "phase": "memorization"}
            for i, (reason, grokked) in enumerate(replicas)
        },
        **extra,
    }


RUNNING = ("running", False)
FAILED = ("budget", False)
GROKKED = ("grokked", True)


def _stopper(monotone=2):
    return GrokStopper("train_fraction", ["regularizer"], monotone)


def test_a_finished_trial_stops_and_a_running_one_continues_without_evidence():
    stopper = _stopper()
    assert stopper("a", _result(0.5, FAILED, FAILED))
    assert stopper("b", _result(0.8, GROKKED, GROKKED))
    assert not stopper("c", _result(0.3, RUNNING, RUNNING))  # one failed size above: not enough


def test_a_trial_below_two_failed_sizes_is_stopped_and_marked_dominated():
    stopper = _stopper()
    stopper("a", _result(0.5, FAILED, FAILED))
    stopper("b", _result(0.45, FAILED, FAILED))
    below = _result(0.3, RUNNING, RUNNING)
    assert stopper("c", below)
    assert [r["stop_reason"] for r in below["replicas"].values()] == ["dominated", "dominated"]
    assert all(r["phase"] is None and r["grokked"] is False for r in below["replicas"].values())
    above = _result(0.6, RUNNING, RUNNING)  # larger than the failures: nothing known about it
    assert not stopper("d", above)
    assert above["replicas"]["0"]["stop_reason"] == "running"
    between = _result(0.48, RUNNING, RUNNING)  # only one failed size above it
    assert not stopper("e", between)


def test_a_seed_that_grokked_below_a_failed_size_voids_that_evidence():
    stopper = _stopper()
    stopper("a", _result(0.5, FAILED, FAILED))
    stopper("b", _result(0.45, FAILED, FAILED))
    assert not stopper("c", _result(0.4, RUNNING, GROKKED))  # grokking below the failures
    assert not stopper("d", _result(0.3, RUNNING, RUNNING))  # so they no longer count
    stopper("e", _result(0.35, FAILED, FAILED))
    stopper("f", _result(0.32, FAILED, FAILED))
    assert stopper("g", _result(0.3, RUNNING, RUNNING))  # two failures below the grokked 0.4


def test_only_whole_budget_failures_of_every_seed_count_and_groups_stay_apart():
    stopper = _stopper()
    stopper("a", _result(0.5, FAILED, GROKKED))  # one seed grokked: not a failed size
    stopper("b", _result(0.45, FAILED, ("diverged", False)))  # a diverged seed proves nothing
    stopper("c", _result(0.4, FAILED, FAILED))
    assert not stopper("d", _result(0.2, RUNNING, RUNNING))
    stopper("e", _result(0.35, FAILED, FAILED))
    assert stopper("f", _result(0.2, RUNNING, RUNNING))
    assert not stopper("g", _result(0.2, RUNNING, RUNNING, regularizer="l1"))  # another group


def test_the_rule_is_off_at_zero_and_without_a_searched_size():
    for stopper in (_stopper(monotone=0), GrokStopper(None, [], 2)):
        for trial, fraction in enumerate((0.5, 0.45, 0.4)):
            stopper(str(trial), _result(fraction, FAILED, FAILED))
        assert not stopper("x", _result(0.2, RUNNING, RUNNING))
        assert stopper("y", _result(0.2, FAILED, FAILED))


def test_one_failed_size_is_enough_at_monotone_one():
    stopper = _stopper(monotone=1)
    stopper("a", _result(0.5, FAILED))
    assert stopper("b", _result(0.2, RUNNING))


def _asked(sampler, space, n):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    points = []

    def objective(trial):
        points.append({name: trial.suggest_categorical(name, values) for name, values in space.items()})
        return 0.0

    study.optimize(objective, n_trials=n)
    return points


def test_the_grid_is_visited_from_the_largest_size_down_once_each():
    space = {"train_fraction": [0.1, 0.3, 0.2, 0.5, 0.4], "regularizer": ["none", "l1"]}
    points = _asked(LargestFirstGridSampler(space, "train_fraction", seed=0), space, 10)
    fractions = [p["train_fraction"] for p in points]
    assert fractions == sorted(fractions, reverse=True)
    assert sorted((p["train_fraction"], p["regularizer"]) for p in points) == sorted(
        (f, r) for f in space["train_fraction"] for r in space["regularizer"]
    )


def test_a_grid_study_over_the_size_gets_the_largest_first_sampler_unless_the_rule_is_off():
    study = Study(name="s", space={"train_fraction": grid([0.2, 0.4, 0.6])}, sampler="grid").validate()
    assert isinstance(make_sampler(study), LargestFirstGridSampler)
    off = Study(name="s", space={"train_fraction": grid([0.2, 0.4])}, sampler="grid", monotone_stop=0)
    assert type(make_sampler(off.validate())) is optuna.samplers.GridSampler
    other = Study(name="s", space={"weight_decay": grid([0.1, 1.0])}, sampler="grid").validate()
    assert type(make_sampler(other)) is optuna.samplers.GridSampler


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_monotone_stop_must_be_a_count(value):
    from grokray.config import StudyError

    with pytest.raises(StudyError, match="monotone_stop"):
        Study(name="s", monotone_stop=value).validate()


def test_a_run_above_the_threshold_at_the_budget_is_no_evidence_of_failure():
    stopper = _stopper(monotone=1)
    near = _result(0.5, FAILED, FAILED)
    near["replicas"]["0"]["grok_unconfirmed"] = True  # generalized at the very end, patience not reached
    stopper("a", near)
    assert not stopper("b", _result(0.3, RUNNING, RUNNING))  # not dominated by a near-grok
    stopper("c", _result(0.45, FAILED, FAILED))
    assert stopper("d", _result(0.3, RUNNING, RUNNING))  # a plain failure above it is enough
