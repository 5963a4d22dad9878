"""Packed trials (``Study(pack=...)``): the searcher asks Optuna for a pack of configs at once, tells
each config's outcome as its replicas end, never packs shapes together, and orders packs so that
the monotone rule keeps its savings; the stopper judges each config of a pack."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from ray.tune.utils import flatten_dict

from grokray.config import StudyError
from grokray.space import grid
from grokray.study import Study
from grokray.tune.results import PACK, pack_members, replica_configs
from grokray.tune.search import PackSearch, make_search
from grokray.tune.stopper import GrokStopper

SIZES = [0.9, 0.7, 0.5, 0.3, 0.1]


def _study(pack=4, seeds=2, monotone_stop=2, max_concurrent=1, **space):
    return Study(
        name="s",
        config={"p": 13, "steps": 100},
        space={"train_fraction": grid(SIZES), **space},
        seeds=seeds,
        sampler="grid",
        pack=pack,
        monotone_stop=monotone_stop,
        max_concurrent=max_concurrent,
    ).validate()


def _sizes(suggestion):
    return [m["train_fraction"] for m in suggestion[PACK]]


def _records(*replicas):
    """Replica records as a trial reports them: (stop_reason, grokked) per replica."""
    return {
        str(i): {
            "replica": i,
            "step": 100,
            "stop_reason": reason,
            "grokked": grokked,
            "grokking_step": 40 if grokked else None,
        }
        for i, (reason, grokked) in enumerate(replicas)
    }


def _result(suggestion, *replicas, **extra):
    running = any(reason == "running" for reason, _ in replicas)
    return {"config": suggestion, "stop_reason": "running" if running else "done",
            "replicas": _records(*replicas), **extra}  # fmt: skip


def _pack(*sizes):
    return {PACK: [{"train_fraction": size} for size in sizes]}


RUNNING, FAILED, GROKKED = ("running", False), ("budget", False), ("grokked", True)


def test_pack_is_validated_and_set_from_the_command_line():
    with pytest.raises(StudyError, match="pack: got 0; allowed: 'auto' or an integer >= 1"):
        _study(pack=0)
    assert _study().with_overrides(["pack=auto"]).validate().pack == "auto"
    assert _study().with_overrides(["pack=6"]).validate().configs_per_pack() == 3  # 6 replicas / 2 seeds
    with pytest.raises(StudyError, match="pack"):
        _study().with_overrides(["pack=many"])
    assert _study(pack=1).configs_per_pack() == 1  # one config's seeds per trial, as before packs
    assert _study(pack=1).fingerprint() != _study(pack=4).fingerprint()


def test_a_pack_is_asked_of_optuna_at_once_and_each_config_is_its_own_optuna_trial():
    study = _study(pack=4)  # 2 configs x 2 seeds; no stopper: packs in the grid's order
    search = make_search(study)
    assert isinstance(search, PackSearch)
    first, second, third = (search.suggest(t) for t in ("t0", "t1", "t2"))
    assert _sizes(first) == [0.9, 0.7] and _sizes(second) == [0.5, 0.3] and _sizes(third) == [0.1]
    assert search.suggest("t3") == PackSearch.FINISHED
    trials = search._ot_study.get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.RUNNING for t in trials)
    # the replicas of a pack: each config's seeds, in order
    configs = replica_configs(study, first)
    assert [(c["train_fraction"], c["seed"]) for c in configs] == [(0.9, 0), (0.9, 1), (0.7, 0), (0.7, 1)]


def test_a_config_is_told_when_its_replicas_end_with_the_mean_of_its_seeds():
    search = make_search(_study(pack=4))
    first = search.suggest("t0")  # 0.9 and 0.7
    # Tune hands a searcher the flattened result; 0.9 has ended (one seed grokked), 0.7 trains on
    result = _result(first, GROKKED, FAILED, RUNNING, RUNNING, training_iteration=3)
    search.on_trial_result("t0", flatten_dict(result))
    search.on_trial_result("t0", flatten_dict(result))  # replayed after a resume: reported once
    by_fraction = {t.params["train_fraction"]: t for t in search._ot_study.get_trials()}
    assert by_fraction[0.9].state == TrialState.COMPLETE
    # the config still training has its objective so far as an intermediate value (not grokked yet)
    assert by_fraction[0.7].intermediate_values == {3: pytest.approx(2 - 0.7)}
    # boundary_score: the fraction if grokked, else 2 - fraction; the mean over the two seeds
    assert by_fraction[0.9].value == pytest.approx((0.9 + (2 - 0.9)) / 2)
    assert by_fraction[0.7].state == TrialState.RUNNING
    search.on_trial_complete("t0", flatten_dict(_result(first, GROKKED, FAILED, FAILED, FAILED)))
    by_fraction = {t.params["train_fraction"]: t for t in search._ot_study.get_trials()}
    assert by_fraction[0.7].state == TrialState.COMPLETE and by_fraction[0.7].value == pytest.approx(2 - 0.7)
    assert by_fraction[0.9].value == pytest.approx(1.0)  # told once


def test_an_errored_pack_fails_the_configs_not_yet_told():
    search = make_search(_study(pack=4))
    first = search.suggest("t0")
    search.on_trial_result("t0", flatten_dict(_result(first, GROKKED, GROKKED, RUNNING, RUNNING)))
    search.on_trial_complete("t0", error=True)
    states = {t.params["train_fraction"]: t.state for t in search._ot_study.get_trials()}
    assert states == {0.9: TrialState.COMPLETE, 0.7: TrialState.FAIL}


def test_configs_of_different_shapes_are_never_packed_together():
    study = _study(pack=8, seeds=1, width=grid([64, 128]))
    search = make_search(study)
    seen = []
    while (suggestion := search.suggest(f"t{len(seen)}")) != PackSearch.FINISHED:
        widths = {study.resolve(m)["width"] for m in pack_members(suggestion)}
        assert len(widths) == 1
        seen.extend(pack_members(suggestion))
    assert len(seen) == 10  # every config once


def test_packs_are_ordered_so_that_the_monotone_rule_keeps_its_savings():
    """A group's first pack takes the largest sizes on speculation; once the group has an outcome, a
    size waits while two larger sizes (below the smallest that grokked) are failed or training (a
    pack guesses one such size while no run of the group has failed), and the sizes the rule then
    dominates get a pack of their own, which trains nothing."""
    study = _study(pack=8, seeds=1)

    def ends(trial_id, suggestion, *replicas):
        result = _result(suggestion, *replicas)
        assert stopper(trial_id, result)  # the stopper sees a result before the searcher
        search.on_trial_complete(trial_id, flatten_dict(result))

    stopper = GrokStopper("train_fraction", [], 2)  # the study's rule, as run_study hands it over
    search = make_search(study, rule=stopper)
    assert _sizes(search.suggest("t0")) == SIZES  # nothing known: the first pack takes all it can
    stopper("t-", _result({"train_fraction": 0.95}, GROKKED))  # now 0.95 is known to grok
    search = make_search(study, rule=stopper)
    first = search.suggest("t0")
    # 0.5 would lie below two sizes of its own pack: it is the pack's one guess (nothing failed)
    assert _sizes(first) == [0.9, 0.7, 0.5]
    assert search.suggest("t1") is None  # 0.3 waits for t0's outcome (the one slot is busy)
    ends("t0", first, GROKKED, FAILED, FAILED)
    dominated = search.suggest("t1")
    assert _sizes(dominated) == [0.3, 0.1]  # below 0.7 and 0.5, which failed: a pack of their own
    start = _result(dominated, RUNNING, RUNNING)
    assert stopper("t1", start)  # stops at its first evaluation
    assert [r["stop_reason"] for r in start["replicas"].values()] == ["dominated", "dominated"]
    assert search.suggest("t2") == PackSearch.FINISHED
    # once a run of the group has failed, a size waits for the outcome of the two above it
    stopper = GrokStopper("train_fraction", [], 2)
    stopper("t-", _result({"train_fraction": 0.95}, GROKKED))
    search = make_search(study, rule=stopper)
    first = search.suggest("t0")
    ends("t0", first, GROKKED, FAILED, GROKKED)  # 0.7 failed (0.5 grokked: no evidence below it)
    second = search.suggest("t1")
    assert _sizes(second) == [0.3, 0.1]  # nothing below 0.5 has failed: both may train together
    ends("t1", second, FAILED, FAILED)
    assert search.suggest("t2") == PackSearch.FINISHED


def test_free_slots_share_the_configs_that_may_train_and_guess_until_a_run_fails():
    """Two packs train at once (``max_concurrent=2``): a group's first speculative batch is shared
    out over both slots; while no run of the group has failed, each pack guesses one contested size
    (it may train for nothing, until the sizes above it fail); once a run failed, sizes wait."""
    sizes = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    study = Study(
        name="s", config={"p": 13, "steps": 100}, space={"train_fraction": grid(sizes)}, seeds=1,
        sampler="grid", pack=4, monotone_stop=2, max_concurrent=2,
    ).validate()  # fmt: skip
    stopper = GrokStopper("train_fraction", [], 2)
    search = make_search(study, rule=stopper)

    def ends(trial_id, suggestion, *replicas):
        result = _result(suggestion, *replicas)
        assert stopper(trial_id, result)
        search.on_trial_complete(trial_id, flatten_dict(result))

    a, b = search.suggest("a"), search.suggest("b")
    assert _sizes(a) == [0.9, 0.8]  # the first 4 sizes shared over the 2 free slots
    assert _sizes(b) == [0.7, 0.6, 0.5]  # 0.5 (below 0.7 and 0.6, training) guessed
    ends("a", a, GROKKED, GROKKED)
    c = search.suggest("c")
    assert _sizes(c) == [0.4]  # contested by 0.6 and 0.5; nothing failed yet: guessed
    assert search.suggest("c2") is None  # both slots busy
    ends("b", b, GROKKED, FAILED, FAILED)  # 0.6 and 0.5 fail: 0.4 and below are dominated
    assert _sizes(search.suggest("d")) == [0.3, 0.2]  # a pack of their own, training nothing
    guessed = _result(c, RUNNING)
    assert stopper("c", guessed)  # the guess stops at its next evaluation
    assert guessed["replicas"]["0"]["stop_reason"] == "dominated"
    search.on_trial_complete("c", flatten_dict(guessed))
    assert search.suggest("e") == PackSearch.FINISHED
    assert stopper.failed[()] == {0.6, 0.5} and stopper.smallest_grokked[()] == 0.7


def test_a_pack_stops_only_once_every_config_still_training_is_dominated():
    stopper = GrokStopper("train_fraction", [], 2)
    for name, size in (("a", 0.6), ("b", 0.5)):
        stopper(name, _result({"train_fraction": size}, FAILED, FAILED))
    mixed = _result(_pack(0.7, 0.3), RUNNING, RUNNING, per_config=1)
    assert not stopper("c", mixed)  # 0.3 is dominated, 0.7 is not: the pack trains on
    assert [r["stop_reason"] for r in mixed["replicas"].values()] == ["running", "running"]
    low = _result(_pack(0.3, 0.2), RUNNING, RUNNING, per_config=1)
    assert stopper("d", low)
    assert [r["stop_reason"] for r in low["replicas"].values()] == ["dominated", "dominated"]
    # a config's evidence counts as soon as its replicas end, its pack still training
    fresh = GrokStopper("train_fraction", [], 2)
    assert not fresh("e", _result(_pack(0.6, 0.5, 0.9), FAILED, FAILED, RUNNING, per_config=1))
    assert fresh.failed[()] == {0.6, 0.5}


def test_a_restored_pack_search_requeues_the_packs_asked_after_the_snapshot(tmp_path):
    """After a hard kill, Tune restores the searcher from its last snapshot while the database (an
    Optuna RDB storage, here SQLite) holds every ask up to the kill: the configs of packs asked after
    the snapshot are failed and proposed again, and each config ends COMPLETE once."""
    import pickle

    from grokray.tune.search import open_optuna_storage

    study = _study(pack=4, monotone_stop=0)  # 2 configs a pack
    search = make_search(study, open_optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}"), "s")
    pristine = pickle.dumps(search)  # what Tune pickles at Tuner creation (tuner.pkl)
    first = search.suggest("t0")
    snapshot = tmp_path / "searcher-state.pkl"
    search.save(str(snapshot))  # the last experiment snapshot before the kill
    lost = search.suggest("t1")  # asked after it: the restored experiment does not know t1
    grokked = _result(first, GROKKED, GROKKED, GROKKED, GROKKED)
    search.on_trial_complete("t0", flatten_dict(grokked))  # t0 ended before the kill, too

    restored = pickle.loads(pristine)
    restored.restore(str(snapshot))
    states = [t.state for t in restored._ot_study.get_trials()]
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.WAITING) == 2
    # t0 reruns from its checkpoint (reporting again, its configs already COMPLETE in the database)
    # and ends again: the values Optuna holds stand, no error
    rerun = _result(first, RUNNING, RUNNING, RUNNING, RUNNING, training_iteration=5)
    restored.on_trial_result("t0", flatten_dict(rerun))
    restored.on_trial_complete("t0", flatten_dict(grokked))
    again = restored.suggest("t1-again")
    assert sorted(_sizes(again)) == sorted(_sizes(lost))
    rest = [restored.suggest("t2")]
    restored.on_trial_complete("t1-again", flatten_dict(_result(again, *[FAILED] * 4)))
    restored.on_trial_complete("t2", flatten_dict(_result(rest[0], FAILED, FAILED)))
    assert restored.suggest("t3") == PackSearch.FINISHED
    complete = [
        t.params["train_fraction"] for t in restored._ot_study.get_trials() if t.state == TrialState.COMPLETE
    ]
    assert sorted(complete) == sorted(SIZES)  # every config COMPLETE once


def test_a_restored_pack_search_proposes_again_the_configs_told_after_the_snapshot(tmp_path):
    """A pack asked *and* ended after the last snapshot (its Tune trial unknown to the restored
    experiment, its configs COMPLETE in the database): its configs are proposed again first, under
    their own Optuna trials, so that they are trained again (their MLflow runs continued); Optuna
    keeps each config COMPLETE once, with the value it was told."""
    import pickle

    from grokray.tune.search import open_optuna_storage

    study = _study(pack=4, monotone_stop=0)  # 2 configs a pack
    search = make_search(study, open_optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}"), "s")
    pristine = pickle.dumps(search)  # what Tune pickles at Tuner creation (tuner.pkl)
    first = search.suggest("t0")
    search.on_trial_complete("t0", flatten_dict(_result(first, GROKKED, GROKKED, GROKKED, GROKKED)))
    snapshot = tmp_path / "searcher-state.pkl"
    search.save(str(snapshot))  # the last experiment snapshot before the kill
    told = search.suggest("t1")  # asked after it, and ended before the kill
    search.on_trial_complete("t1", flatten_dict(_result(told, GROKKED, GROKKED, FAILED, FAILED)))
    values = {t.number: t.value for t in search._ot_study.get_trials() if t.state == TrialState.COMPLETE}

    restored = pickle.loads(pristine)
    restored.restore(str(snapshot))
    again = restored.suggest("t1-again")
    assert _sizes(again) == _sizes(told)
    # trained again: it reports and ends without an error, the values Optuna holds stand
    restored.on_trial_result("t1-again", flatten_dict(_result(again, *[RUNNING] * 4, training_iteration=3)))
    restored.on_trial_complete("t1-again", flatten_dict(_result(again, *[FAILED] * 4)))
    rest = restored.suggest("t2")
    restored.on_trial_complete("t2", flatten_dict(_result(rest, FAILED, FAILED)))
    assert restored.suggest("t3") == PackSearch.FINISHED
    trials = restored._ot_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(SIZES)
    assert sorted(t.params["train_fraction"] for t in trials) == sorted(SIZES)  # each config once
    assert {t.number: t.value for t in trials if t.number in values} == values
