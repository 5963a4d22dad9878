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
