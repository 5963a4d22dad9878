"""The searcher: each evaluation of a trial reaches Optuna once, also when a resumed trial reports
it again."""

from __future__ import annotations

import warnings

from grokray.space import grid
from grokray.study import Study


def test_a_step_reported_again_after_a_resume_reaches_optuna_once_without_a_warning():
    from grokray.tune.search import GrokSearch, make_search

    study = Study(
        name="s",
        config={"p": 13, "steps": 100},
        space={"train_fraction": grid([0.3, 0.7])},
        sampler="grid",
        pack=1,
    ).validate()
    search = make_search(study)
    assert isinstance(search, GrokSearch)
    search.suggest("t0")
    metric = search.metric
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's "already reported" is a UserWarning
        for iteration, value in ((1, 0.9), (2, 0.8), (2, 0.8), (1, 0.9), (3, 0.7)):  # 1, 2 replayed
            search.on_trial_result("t0", {metric: value, "training_iteration": iteration})
    (trial,) = search._ot_study.get_trials()
    assert trial.intermediate_values == {1: 0.9, 2: 0.8, 3: 0.7}


def test_a_config_told_after_the_snapshot_is_proposed_again_under_its_own_optuna_trial(tmp_path):
    """After a hard kill, Tune restores the searcher from its last snapshot while the database holds
    every tell up to the kill. A config asked *and told* after the snapshot (its Tune trial unknown
    to the restored experiment) is proposed again first, under the same Optuna trial: it is trained
    again (its MLflow run continued), and Optuna ends with each config COMPLETE once, its value as
    told. (Before, the grid sampler skipped its done point and proposed another config twice.)"""
    import pickle

    from optuna.trial import TrialState

    from grokray.tune.search import StoredOptunaSearch, make_search, open_optuna_storage

    study = Study(
        name="s",
        config={"p": 13, "steps": 100},
        space={"train_fraction": grid([0.8, 0.6, 0.4, 0.2])},
        sampler="grid",
        pack=1,
    ).validate()
    search = make_search(study, open_optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}"), "s")
    assert isinstance(search, StoredOptunaSearch)
    metric = search.metric
    pristine = pickle.dumps(search)  # what Tune pickles at Tuner creation (tuner.pkl)
    first, second = search.suggest("t1"), search.suggest("t2")
    search.on_trial_complete("t1", {metric: 0.8, "training_iteration": 1})
    snapshot = tmp_path / "searcher-state.pkl"
    search.save(str(snapshot))  # the last experiment snapshot before the kill
    told = search.suggest("t3")  # asked after the snapshot, and ended before the kill
    search.on_trial_result("t3", {metric: 0.6, "training_iteration": 1})
    search.on_trial_complete("t3", {metric: 0.6, "training_iteration": 1})

    restored = pickle.loads(pristine)
    restored.restore(str(snapshot))
    # t2 was in the snapshot: it reruns from its checkpoint; the restored experiment asks for two
    # trials it does not have: the told config first, then the grid's last point
    again = restored.suggest("t3-again")
    assert again == told
    restored.on_trial_result("t3-again", {metric: 0.6, "training_iteration": 1})
    restored.on_trial_complete("t3-again", {metric: 0.6, "training_iteration": 1})
    last = restored.suggest("t4")
    restored.on_trial_complete("t2", {metric: 0.4, "training_iteration": 1})
    restored.on_trial_complete("t4", {metric: 1.8, "training_iteration": 1})
    trials = restored._ot_study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.params["train_fraction"] for t in trials) == [0.2, 0.4, 0.6, 0.8]  # once each
    proposed = [first, second, told, last]
    assert sorted(c["train_fraction"] for c in proposed) == [0.2, 0.4, 0.6, 0.8]
    assert {t.params["train_fraction"]: t.value for t in trials}[told["train_fraction"]] == 0.6
