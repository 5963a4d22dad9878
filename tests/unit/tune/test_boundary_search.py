"""``sampler="boundary"``: validation, the searcher's packs against a threshold oracle (where the
first config goes, how many are in flight, when the search stops), one search per group, and the
driver's check that a boundary study ended rather than being cut off."""

from __future__ import annotations

import pandas as pd
import pytest
from ray.tune.utils import flatten_dict

from grokray.config import StudyError
from grokray.space import categorical, grid, loguniform, uniform
from grokray.study import Study
from grokray.tune.boundary import IN_FLIGHT, BoundarySampler, boundary_finished, search_complete
from grokray.tune.results import PACK
from grokray.tune.search import OUTCOMES_ATTR, PackSearch, make_search

BUDGET = 1000


def _study(**fields):
    base = {
        "name": "b",
        "config": {"p": 13, "steps": BUDGET},
        "space": {"train_fraction": uniform(0.1, 0.9, step=0.01)},
        "seeds": 1,
        "sampler": "boundary",
        "precision": 0.05,
        "pack": 8,
    }
    return Study(**{**base, **fields}).validate()


@pytest.mark.parametrize(
    ("fields", "field", "allowed"),
    [
        ({"space": {"lr": uniform(0.001, 0.01)}}, "sampler", "train_fraction or train_size"),
        (
            {"space": {"train_fraction": uniform(0.1, 0.9), "lr": loguniform(1e-3, 1e-2)}},
            "space.lr",
            "grid() or categorical()",
        ),
        ({"precision": -1.0}, "precision", ">= 0"),
        ({"max_steps_total": -5}, "max_steps_total", ">= 0"),
        ({"sampler": "tpe", "num_samples": 4}, "precision", "sampler='boundary' only"),
    ],
)
def test_bad_boundary_studies_name_the_field(fields, field, allowed):
    with pytest.raises(StudyError) as info:
        _study(**fields)
    assert info.value.field == field and allowed in str(info.value)


def test_boundary_fields_are_set_from_the_command_line_and_turn_the_monotone_rule_off():
    study = _study().with_overrides(["precision=0.01", "max_steps_total=5000"]).validate()
    assert study.precision == 0.01 and study.max_steps_total == 5000
    assert study.monotone == 0 and _study(sampler="grid", precision=0.0).monotone == 2
    assert _study(precision=0.0).boundary_precision() == pytest.approx(0.8 / 40)
    assert study.fingerprint() != _study().fingerprint()  # where it stops defines the study
    assert study.num_configs == 64  # num_samples=0: at most 64 configs a group
    assert any("boundary search over train_fraction" in note for note in study.notes())


def _grokked(size: float, group: dict, threshold: float) -> tuple[bool, int, int | None]:
    grok = size > threshold
    return grok, (200 if grok else BUDGET), (150 if grok else None)


def _drive(study: Study, threshold_of, max_rounds: int = 200) -> tuple[PackSearch, list[list[dict]]]:
    """Suggest packs and report each as ended (every run groks iff its size is above its group's
    threshold) until the searcher is finished."""
    search = make_search(study)
    assert isinstance(search, PackSearch) and isinstance(search._ot_study.sampler, BoundarySampler)
    packs = []
    for n in range(max_rounds):
        suggestion = search.suggest(f"t{n}")
        if suggestion == PackSearch.FINISHED:
            return search, packs
        assert suggestion is not None  # nothing is left running between rounds here
        members = suggestion[PACK]
        packs.append(members)
        replicas = {}
        for m, values in enumerate(members):
            group = {k: v for k, v in values.items() if k != "train_fraction"}
            for s in range(study.seeds):
                grok, steps, step = _grokked(values["train_fraction"], group, threshold_of(group))
                replicas[str(m * study.seeds + s)] = {
                    "stop_reason": "grokked" if grok else "budget",
                    "grokked": grok,
                    "steps_run": steps,
                    "grokking_step": step,
                    "step": steps,
                }
        result = {"config": suggestion, "stop_reason": "done", "replicas": replicas}
        search.on_trial_complete(f"t{n}", flatten_dict(result))
    raise AssertionError("the search did not finish")


def test_the_search_starts_at_the_top_keeps_few_in_flight_and_stops_at_its_precision():
    study = _study()
    search, packs = _drive(study, lambda group: 0.423)
    assert packs[0][0]["train_fraction"] == pytest.approx(0.9)  # the largest size first
    assert all(len(pack) <= IN_FLIGHT for pack in packs)
    report = search._ot_study.sampler.report(search._ot_study)
    [group] = report
    assert group["converged"] and group["posterior_high"] - group["posterior_low"] <= 0.05
    assert group["posterior_low"] <= 0.423 <= group["posterior_high"]
    trials = search._ot_study.get_trials()
    assert all(OUTCOMES_ATTR in t.user_attrs for t in trials)
    assert len(trials) < 20  # a bisection, not a sweep of 81 sizes


def test_the_search_stops_before_its_budget_of_model_steps():
    study = _study(precision=0.001, max_steps_total=5 * BUDGET)
    search, _packs = _drive(study, lambda group: 0.5)
    spent = sum(o[1] for t in search._ot_study.get_trials() for o in t.user_attrs[OUTCOMES_ATTR])
    assert spent <= 5 * BUDGET
    # and the next config would not have fitted: configs in flight count at their whole budget
    assert spent + BUDGET > 5 * BUDGET - BUDGET


def test_one_search_per_group_shares_the_packs():
    """A phase boundary: the critical fraction for each weight decay, each group its own search;
    a pack holds configs of both groups."""
    study = _study(space={"train_fraction": uniform(0.1, 0.9, step=0.01), "weight_decay": grid([0.1, 1.0])})
    thresholds = {0.1: 0.7, 1.0: 0.3}
    search, packs = _drive(study, lambda group: thresholds[group["weight_decay"]])
    assert any(len({m["weight_decay"] for m in pack}) == 2 for pack in packs)
    report = {r["group"]["weight_decay"]: r for r in search._ot_study.sampler.report(search._ot_study)}
    for wd, threshold in thresholds.items():
        assert report[wd]["converged"]
        assert report[wd]["posterior_low"] <= threshold <= report[wd]["posterior_high"]


def test_a_finished_table_tells_a_finished_search_from_an_interrupted_one():
    study = _study(space={"train_fraction": uniform(0.1, 0.9, step=0.01), "op": categorical(["+", "-"])})
    _search, packs = _drive(study, lambda group: 0.5)
    rows = []
    for n, pack in enumerate(packs):
        for m, values in enumerate(pack):
            grok, steps, step = _grokked(values["train_fraction"], {}, 0.5)
            rows.append({"tune_trial_id": f"t{n}", "replica": m, **values, "grokked": grok,
                         "steps_run": steps, "grokking_step": step, "failed": False})  # fmt: skip
    table = pd.DataFrame(rows)
    assert boundary_finished(study, table)
    assert search_complete(study, len(rows), table)
    cut = table.iloc[: len(table) // 2]  # a driver killed half-way
    assert not boundary_finished(study, cut) and not search_complete(study, len(cut), cut)
    # other samplers end at their number of configs
    grid_study = Study(name="g", config={"p": 13}, space={"train_fraction": grid([0.3, 0.6])}, sampler="grid")
    assert search_complete(grid_study.validate(), 2) and not search_complete(grid_study, 1)


def test_a_group_knows_when_its_outcomes_overlap():
    from grokray.tune.boundary import GroupState

    state = GroupState((), {}, BUDGET)
    state.add(0.9, [(True, 200, 150)])
    state.add(0.4, [(False, BUDGET, None)])
    assert not state.overlaps()  # separated: every failure below every success
    state.add(0.6, [(True, 700, 650)])
    state.add(0.65, [(False, BUDGET, None)])
    assert state.overlaps()  # 0.65 failed above 0.6, which grokked


def _runs(sizes, grokked):
    """A boundary study's trial table: one run a config, a success stopping at step 300."""
    return pd.DataFrame(
        {"tune_trial_id": [f"t{i}" for i in range(len(sizes))], "replica": 0, "train_fraction": sizes,
         "grokked": grokked, "steps_run": [300 if g else BUDGET for g in grokked],
         "grokking_step": [250 if g else None for g in grokked], "steps": BUDGET, "n_total": 961,
         "failed": False}
    )  # fmt: skip


def test_a_boundary_studys_interval_is_the_hull_of_the_bootstrap_and_the_posterior():
    """A noisy band tried once a size: the reported interval holds both the bootstrap's and the
    posterior's (computed here on their own), and the point estimate stays the logistic fit's."""
    from grokray.analysis.boundary import BoundaryPosterior
    from grokray.analysis.critical import critical_data_size
    from grokray.tune.finish import widen_to_posterior

    study = _study(space={"train_fraction": uniform(0.1, 0.9, step=0.01)})
    sizes = [0.9, 0.7, 0.6, 0.55, 0.5, 0.52, 0.48, 0.45, 0.58, 0.4]
    grokked = [True, True, True, False, True, False, False, False, True, False]
    table = _runs(sizes, grokked)
    estimates = critical_data_size(table)
    boot = (estimates[0]["ci_low"], estimates[0]["ci_high"])
    x0 = estimates[0]["critical_fraction"]
    post = BoundaryPosterior(0.1, 0.9).update(sizes, grokked).interval()
    widen_to_posterior(study, table, estimates)
    e = estimates[0]
    assert (e["ci_bootstrap_low"], e["ci_bootstrap_high"]) == boot
    assert e["ci_low"] == pytest.approx(min(boot[0], post[0]))
    assert e["ci_high"] == pytest.approx(max(boot[1], post[1]))
    assert e["ci_low"] < boot[0] and e["ci_high"] > boot[1]  # here the posterior reaches past both ends
    assert e["critical_fraction"] == x0 and "hull" in e["note"]
    assert e["ci_high"] - e["ci_low"] >= max(boot[1] - boot[0], post[1] - post[0])


def test_separated_outcomes_are_reported_with_the_posterior_too():
    """A few separated runs may come from a noisy band: the posterior's interval is in the report."""
    from grokray.analysis.boundary import BoundaryPosterior
    from grokray.analysis.critical import critical_data_size
    from grokray.tune.finish import widen_to_posterior

    study = _study(space={"train_fraction": uniform(0.1, 0.9, step=0.01)})
    sizes = [0.9, 0.7, 0.6, 0.55, 0.52, 0.5, 0.45]
    grokked = [True, True, True, True, True, False, False]
    table = _runs(sizes, grokked)
    estimates = critical_data_size(table)
    low, high = estimates[0]["ci_low"], estimates[0]["ci_high"]
    assert low <= 0.5 and high >= 0.52  # the bootstrap's spans the bracket of tried sizes
    post = BoundaryPosterior(0.1, 0.9).update(sizes, grokked).interval()
    widen_to_posterior(study, table, estimates)
    assert estimates[0]["ci_low"] == pytest.approx(min(low, post[0]))
    assert estimates[0]["ci_high"] == pytest.approx(max(high, post[1]))
