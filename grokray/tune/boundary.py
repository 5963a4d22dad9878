"""``sampler="boundary"``: an Optuna sampler that searches the critical data size of every group.

Each group (one value of every other searched name: a weight decay, a corruption, a width) has
its own posterior over the logistic P(grok within the budget) (``grokray.analysis.boundary``),
built from the runs Optuna holds: ``PackSearch`` records each config's seeds (grokked, steps run,
grokking step) as the Optuna trial's user attribute ``grokray_outcomes`` before it tells the
objective. A new Optuna trial goes to the group that has the fewest configs in flight (then the
widest interval), at the size with the most expected information about the group's critical size
per expected model-step; a group's first config is its largest size (cheap: it groks fast; and it
says whether the boundary lies in the range at all). At most ``IN_FLIGHT`` configs of a group
train at once, so that each proposal sees the outcomes of all but a few. Where a group's outcomes
overlap (a run failed above a size where another grokked: a noisy band), an untried stretch wider
than ``GAP`` × precision just above the boundary, where the posterior is sure a run groks, gets a
run first (``gap_fill``): cheap, since it stops early, and it bounds the reported bootstrap
interval, which otherwise reaches into the gap.

The search stops (``wants_more`` False, then ``PackSearch`` returns FINISHED once its packs have
ended) when every group's 95 % posterior interval is narrower than ``Study.precision``, when the
next config would take the model-steps spent past ``Study.max_steps_total`` (counting configs in
flight at their whole budget), or at the study's ``num_configs``. ``boundary_finished`` asks the
same of a finished trial table: the driver's check that a study ended rather than being cut off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.samplers import BaseSampler, RandomSampler

from grokray.analysis.boundary import BoundaryPosterior, choose, gap_fill, grok_steps_predictor
from grokray.study import Study
from grokray.tune.search import OUTCOMES_ATTR  # [[grokked, steps_run, grokking_step], ...] per config

IN_FLIGHT = 2  # configs of one group training at once
CANDIDATES = 161  # sizes the search chooses among (the dimension's own grid when smaller)
GAP = 4.0  # a gap wider than GAP × precision between tried sizes above the boundary gets a run


def candidate_sizes(study: Study) -> list[float]:
    """The sizes a boundary study may propose: the size dimension's grid (thinned to
    ``CANDIDATES``, both ends kept), or ``CANDIDATES`` evenly spaced points of its range."""
    dim = study.space[study.size_key() or "train_fraction"]
    values = dim.grid_values()
    if values is not None:
        points = sorted(float(v) for v in values)
        if len(points) > CANDIDATES:
            idx = np.unique(np.round(np.linspace(0, len(points) - 1, CANDIDATES)).astype(int))
            points = [points[i] for i in idx]
        return points
    low, high = float(dim.low), float(dim.high)  # type: ignore[arg-type]
    points = np.linspace(low, high, CANDIDATES)
    return sorted({float(round(v, 6)) for v in points})


@dataclass
class GroupState:
    """What the search knows of one group: its runs, the configs in flight, the steps spent."""

    key: tuple[str, ...]
    values: dict[str, Any]
    budget: int
    sizes: list[float] = field(default_factory=list)  # one per run
    grokked: list[bool] = field(default_factory=list)
    grok_sizes: list[float] = field(default_factory=list)
    grok_steps: list[float] = field(default_factory=list)
    spent: int = 0
    configs: int = 0  # trained (told) configs
    pending: list[float] = field(default_factory=list)  # sizes of configs in flight
    _posterior: BoundaryPosterior | None = None

    def add(self, size: float, outcomes: Iterable[Sequence[Any]]) -> None:
        self.configs += 1
        for grokked, steps_run, grokking_step in outcomes:
            self.sizes.append(float(size))
            self.grokked.append(bool(grokked))
            self.spent += int(steps_run or 0)
            if grokked:
                self.grok_sizes.append(float(size))
                self.grok_steps.append(float(grokking_step if grokking_step is not None else steps_run or 0))
        self._posterior = None

    def overlaps(self) -> bool:
        """Whether a run failed at a size above one where a run grokked (the outcomes overlap)."""
        failed = [x for x, g in zip(self.sizes, self.grokked, strict=True) if not g]
        return bool(failed and self.grok_sizes) and max(failed) > min(self.grok_sizes)

    def posterior(self, low: float, high: float) -> BoundaryPosterior:
        if self._posterior is None:
            self._posterior = BoundaryPosterior(low, high).update(self.sizes, self.grokked)
        return self._posterior


class BoundarySearch:
    """The groups of a boundary study and the rules of where next and when to stop."""

    def __init__(self, study: Study) -> None:
        self.size_key = study.size_key() or "train_fraction"
        self.low, self.high = study.size_range()
        self.candidates = candidate_sizes(study)
        self.seeds = 1 if "seed" in study.space else study.seeds
        self.precision = study.boundary_precision()
        self.max_steps_total = int(study.max_steps_total)
        self.max_configs = study.num_configs
        self.group_keys = [k for k in study.space if k != self.size_key]
        grids = [study.space[k].grid_values() or () for k in self.group_keys]
        self.groups: list[dict[str, Any]] = [
            dict(zip(self.group_keys, combo, strict=True)) for combo in _product(grids)
        ]
        self.budgets = {self.key_of(g): int(study.resolve(g)["steps"]) for g in self.groups}
        self.choices = {k: list(v) for k, v in zip(self.group_keys, grids, strict=True)}

    def key_of(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(str(values.get(k)) for k in self.group_keys)

    def states(self) -> dict[tuple[str, ...], GroupState]:
        return {
            self.key_of(g): GroupState(self.key_of(g), dict(g), self.budgets[self.key_of(g)])
            for g in self.groups
        }

    def converged(self, state: GroupState) -> bool:
        return bool(state.sizes) and state.posterior(self.low, self.high).width() <= self.precision

    def spent(self, states: Mapping[Any, GroupState]) -> int:
        return sum(s.spent for s in states.values())

    def open_groups(self, states: Mapping[Any, GroupState]) -> list[GroupState]:
        """The groups that may get another config now: not converged, fewer than ``IN_FLIGHT`` in
        flight, and the next config fits the budget (configs in flight counted at their budget)."""
        if sum(s.configs + len(s.pending) for s in states.values()) >= self.max_configs:
            return []
        reserved = self.spent(states) + sum(len(s.pending) * self.seeds * s.budget for s in states.values())
        out = []
        for state in states.values():
            if self.converged(state) or len(state.pending) >= IN_FLIGHT:
                continue
            if self.max_steps_total and reserved + self.seeds * state.budget > self.max_steps_total:
                continue
            out.append(state)
        return out

    def finished(self, states: Mapping[Any, GroupState]) -> bool:
        """Nothing in flight and no group may get another config."""
        return not any(s.pending for s in states.values()) and not self.open_groups(states)

    def propose(self, states: Mapping[Any, GroupState]) -> dict[str, Any] | None:
        """The next config (group values and size), or None when no group is open."""
        groups = self.open_groups(states)
        if not groups:
            return None
        # the group with the fewest configs in flight, then the widest interval
        state = min(groups, key=lambda s: (len(s.pending), -s.posterior(self.low, self.high).width()))
        if not state.sizes and not state.pending:
            size = self.candidates[-1]  # a group's first config: its largest size
        else:
            posterior = state.posterior(self.low, self.high)
            size = None
            if state.overlaps():  # a noisy band: its bootstrap interval reaches into gaps above it
                tried = [*state.sizes, *state.pending]
                size = gap_fill(posterior, tried, self.candidates, GAP * self.precision)
            if size is None:
                predictor = grok_steps_predictor(
                    state.grok_sizes, state.grok_steps, state.budget, posterior.median()
                )
                size = choose(posterior, self.candidates, self.seeds, state.budget, predictor, state.pending)
        return {**state.values, self.size_key: size}

    def report(self, states: Mapping[Any, GroupState]) -> list[dict[str, Any]]:
        """Per group: the posterior's critical size and 95 % interval, runs and model-steps."""
        rows = []
        for state in states.values():
            row: dict[str, Any] = {"group": {k: state.values[k] for k in self.group_keys}}
            if state.sizes:
                posterior = state.posterior(self.low, self.high)
                low, high = posterior.interval()
                row.update(posterior_median=posterior.median(), posterior_low=low, posterior_high=high)
            row.update(runs=len(state.sizes), configs=state.configs, model_steps=state.spent,
                       converged=self.converged(state))  # fmt: skip
            rows.append(row)
        return rows

    def from_table(self, table: Any) -> dict[tuple[str, ...], GroupState]:
        """Group states from a trial table (one row per run; failed runs left out, as the sampler
        leaves out the Optuna trials that failed)."""
        states = self.states()
        if table is None or len(table) == 0 or self.size_key not in table:
            return states
        rows = table
        if "failed" in rows:
            rows = rows[~rows["failed"].fillna(False).astype(bool)]
        rows = rows[rows["grokked"].notna()] if "grokked" in rows else rows.iloc[0:0]
        by_config = {"tune_trial_id", "replica"} <= set(rows.columns)
        configs: dict[tuple[Any, ...], list[Sequence[Any]]] = {}
        for row in rows.to_dict("records"):
            key = self.key_of(row)
            if key not in states:
                continue
            config_id = (
                (row.get("tune_trial_id"), int(row.get("replica", 0)) // self.seeds) if by_config else id(row)
            )
            outcome = (bool(row["grokked"]), _int(row.get("steps_run")), _num(row.get("grokking_step")))
            configs.setdefault((key, float(row[self.size_key]), config_id), []).append(outcome)
        for (key, size, _), outcomes in configs.items():
            states[key].add(size, outcomes)
        return states


def _int(value: Any) -> int:
    return int(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else 0


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _same(choice: Any, value: Any) -> bool:
    try:
        return float(choice) == float(value)
    except (TypeError, ValueError):
        return str(choice) == str(value)


def _product(grids: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    import itertools

    return list(itertools.product(*grids))


def boundary_finished(study: Study, table: Any) -> bool:
    """Whether a boundary study whose trials have all ended has finished its search (and was not
    cut off): the searcher's own stopping rule, on the trial table."""
    search = BoundarySearch(study)
    return search.finished(search.from_table(table))


def search_complete(study: Study, configs_ended: int, table: Any = None) -> bool:
    """Whether a study whose Tune trials have all ended trained what it set out to: every config
    (``num_configs``), or for the boundary sampler, until its stopping rule held."""
    if configs_ended >= study.num_configs:
        return True
    return study.sampler == "boundary" and table is not None and boundary_finished(study, table)


class BoundarySampler(BaseSampler):
    """The Optuna sampler of ``sampler="boundary"``: every Optuna trial is one config (a group's
        values and a size) placed by ``BoundarySearch`` from the trials the study holds, with seeds of
    its own (config ``n`` trains ``seed + n·seeds`` onward, ``seed`` the study's): the critical size
    is where half of all seeds grok, and every run samples a new one."""

    def __init__(self, study: Study, seed: int = 0) -> None:
        self._search = BoundarySearch(study)
        self._seed = int(study.resolve({})["seed"])  # config n trains seeds seed + n·seeds, ...
        self._points: dict[int, dict[str, Any]] = {}  # trial number -> its proposed values
        self._fallback = RandomSampler(seed=seed)

    def states(self, optuna_study: Any) -> dict[tuple[str, ...], GroupState]:
        from optuna.trial import TrialState

        search = self._search
        states = search.states()
        for trial in optuna_study.get_trials(deepcopy=False):
            values = trial.params or self._points.get(trial.number)
            if not values or search.size_key not in values:
                continue
            state = states.get(search.key_of(values))
            if state is None:
                continue
            size = float(values[search.size_key])
            if trial.state == TrialState.COMPLETE and OUTCOMES_ATTR in trial.user_attrs:
                state.add(size, trial.user_attrs[OUTCOMES_ATTR])
            elif trial.state in (TrialState.RUNNING, TrialState.WAITING):
                state.pending.append(size)
        return states

    def wants_more(self, optuna_study: Any) -> bool:
        """Whether another config should be asked for now (``PackSearch`` asks while it does)."""
        return bool(self._search.open_groups(self.states(optuna_study)))

    def report(self, optuna_study: Any) -> list[dict[str, Any]]:
        return self._search.report(self.states(optuna_study))

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Any, trial: Any) -> None:
        if trial.number in self._points or "fixed_params" in trial.system_attrs:
            return  # an enqueued (re-queued) config keeps its values
        proposal = self._search.propose(self.states(study))
        if proposal is not None:  # every config its own seeds: P(grok) is over seeds, not one seed's
            self._points[trial.number] = {**proposal, "seed": self._seed + trial.number * self._search.seeds}

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        point = self._points.get(trial.number, {})
        if param_name in point:
            value = point[param_name]
            if hasattr(param_distribution, "choices"):  # a grid: the choice equal to the value
                return next((c for c in param_distribution.choices if _same(c, value)), value)
            if type(param_distribution).__name__ == "IntDistribution":
                return round(float(value))
            return float(value)
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)
