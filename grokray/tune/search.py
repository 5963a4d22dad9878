"""Optuna on the Tune side: the study's space as a define-by-run function, the sampler, the
searcher (in memory, or on an RDB storage made safe for ``Tuner.restore``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optuna.samplers import GridSampler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from grokray.config import StudyError
from grokray.space import Dimension
from grokray.study import Study

# The search space as an Optuna define-by-run function (module-level class: picklable)


class DefineByRun:
    """Asks an Optuna trial for every searched name of the study.

    A linked grid is asked for only under its value (``linked={"regularizer": {"l1":
    {"reg_strength": grid(...)}}}``), under the Optuna name ``reg_strength[regularizer=l1]`` (a
    name has one distribution in an Optuna study), and returned under its config name. With
    ``points`` (a grid study with linked grids) the trial asks for one index into the union of
    the grids, ``grid_point``, and the point's values are returned."""

    def __init__(
        self,
        space: Mapping[str, Dimension],
        linked: Mapping[str, Mapping[Any, Mapping[str, Dimension]]] | None = None,
        fixed: Mapping[str, Any] | None = None,
        points: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.space = dict(space)
        self.linked = {k: {v: dict(d) for v, d in by.items()} for k, by in (linked or {}).items()}
        self.fixed = dict(fixed or {})
        self.points = [dict(p) for p in points] if points is not None else None

    @staticmethod
    def _suggest(trial: Any, name: str, dim: Dimension) -> Any:
        if dim.choices is not None:
            return trial.suggest_categorical(name, list(dim.choices))
        if dim.kind == "int":
            return trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
        return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        if self.points is not None:
            index = trial.suggest_categorical(GRID_POINT, list(range(len(self.points))))
            return dict(self.points[index])
        values = {name: self._suggest(trial, name, dim) for name, dim in self.space.items()}
        extra: dict[str, Any] = {}
        for key, by_value in self.linked.items():
            current = values.get(key, self.fixed.get(key))
            for name, dim in by_value.get(current, {}).items():
                extra[name] = self._suggest(trial, f"{name}[{key}={current}]", dim)
        return extra or None


GRID_POINT = "grid_point"  # the Optuna parameter of a grid study with linked grids
OUTCOMES_ATTR = "grokray_outcomes"  # an Optuna trial's user attribute: [[grokked, steps_run, step], ...]


def make_space(study: Study) -> DefineByRun:
    points = study.grid_points() if study.sampler == "grid" and study.linked_grids() else None
    space = dict(study.space)
    if study.sampler == "boundary":  # each config its own seeds (the sampler numbers them)
        from grokray.space import integer

        space["seed"] = integer(0, 2**31 - 1)
    return DefineByRun(space, study.linked_grids(), study.config, points)


def make_sampler(study: Study, seed: int = 0, batched: bool = False) -> Any:
    """The study's Optuna sampler; ``batched``: proposals asked for a pack at once (TPE lies about
    the configs still training, ``constant_liar``, so that a batch spreads)."""
    import optuna

    if not study.space and not study.linked_grids():  # seeds only (the grid sampler needs a grid)
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "grid":
        size_key = study.size_key()
        largest_first = bool(study.monotone_stop and size_key is not None)
        if study.linked_grids():  # one index into the union of the per-value grids
            points = study.grid_points()
            grid = {GRID_POINT: list(range(len(points)))}
            if largest_first:
                return LargestFirstGridSampler(
                    grid, GRID_POINT, seed=seed, sizes=[p[size_key] for p in points]
                )
            return optuna.samplers.GridSampler(grid, seed=seed)
        grid = {name: list(dim.grid_values() or ()) for name, dim in study.space.items()}
        if largest_first:
            return LargestFirstGridSampler(grid, size_key, seed=seed)
        return optuna.samplers.GridSampler(grid, seed=seed)
    if study.sampler == "boundary":
        from grokray.tune.boundary import BoundarySampler

        return BoundarySampler(study, seed=seed)
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if study.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=batched)


class LargestFirstGridSampler(GridSampler):
    """Optuna's grid sampler, visiting the training sizes from the largest down.

    Trials that grok end early and the ones that will not are the ones below the critical size:
    largest first, the sizes that fail are found after the ones that grok, and ``GrokStopper``'s
    monotone rule can stop the smaller sizes below them. Points of equal size keep the seeded
    shuffle of ``GridSampler`` (which gives trial ``n`` the grid point ``n`` of its list)."""

    def __init__(
        self,
        search_space: Mapping[str, Sequence[Any]],
        size_key: str,
        seed: int = 0,
        sizes: Sequence[float] | None = None,
    ) -> None:
        super().__init__(dict(search_space), seed=seed)
        column = self._param_names.index(size_key)
        if sizes is None:  # the size is a grid column
            self._all_grids.sort(key=lambda point: -float(point[column]))  # stable
        else:  # the column is an index into points whose sizes are ``sizes``
            self._all_grids.sort(key=lambda point: -float(sizes[int(point[column])]))


def make_search(study: Study, storage: Any = None, study_name: str | None = None, rule: Any = None) -> Any:
    """OptunaSearch over the study's space (seeds are replicas inside each trial, not trials).

    Without ``storage`` the Optuna study lives in the searcher (in memory, saved with the Tune
    experiment); with an ``optuna.storages.RDBStorage`` it lives in that database under
    ``study_name``, where other tools can read it while the study runs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if study.configs_per_pack() > 1 or study.sampler == "boundary":  # boundary: outcomes per seed
        from grokray.tune.results import seeds_per_config

        return PackSearch(
            make_space(study),
            study.metric,
            study.mode,
            make_sampler(study, study.sampler_seed, batched=True),
            per_pack=study.configs_per_pack(),
            num_configs=study.num_configs,
            per_config=seeds_per_config(study),
            resolve=study.resolve,
            points_to_evaluate=study.sizes_first() or None,
            storage=storage,
            study_name=study_name,
            rule=rule,
            slots=study.max_concurrent,
        )
    common = {
        "space": make_space(study),
        "metric": study.metric,
        "mode": study.mode,
        "sampler": make_sampler(study, study.sampler_seed),
        # every size of a grid first, before the sampler's own proposals
        "points_to_evaluate": study.sizes_first() or None,
    }
    if storage is None:
        return GrokSearch(**common)
    return StoredOptunaSearch(**common, storage=storage, study_name=study_name)


class GrokSearch(OptunaSearch):
    """OptunaSearch that reports each step of a trial to Optuna once.

    A trial resumed from its checkpoint (``Tuner.restore``, a retry) reports again the evaluations
    after the checkpoint Tune had registered; Optuna already holds some of them and would warn
    "The reported value is ignored because this step is already reported" for each."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        from ray.tune.result import TRAINING_ITERATION

        ot_trial = self._ot_trials.get(trial_id)
        frozen = getattr(ot_trial, "_cached_frozen_trial", None)  # Optuna's own record of the trial
        if frozen is not None and int(result.get(TRAINING_ITERATION, -1)) in frozen.intermediate_values:
            return
        super().on_trial_result(trial_id, result)

    def suggest(self, trial_id: str) -> dict | None:
        from grokray.crash import crash_point

        config = super().suggest(trial_id)
        crash_point("propose")  # Optuna has asked; Tune does not have the trial yet
        return config


class StoredOptunaSearch(GrokSearch):
    """OptunaSearch on an RDB storage that outlives the driver, made safe for ``Tuner.restore``.

    After a hard kill of the driver, ``Tuner.restore`` brings the searcher back as it was at the
    last experiment snapshot, while the database holds everything up to the kill:

    - a trial that finished after the snapshot is run again from its checkpoint and reports to an
      Optuna trial the database already has as finished: Optuna raises ``UpdateFinishedTrialError``,
      and the result it already holds stands;
    - Optuna trials asked for after the snapshot belong to Tune trials the restored experiment does
      not know: nothing would ever finish them, so ``restore`` marks them FAIL and enqueues their
      configs again (the restored experiment asks for as many new trials as it lost; a grid
      sampler counts a FAIL trial as a visited grid point, so without the re-queue its point
      would never be trained).
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            super().on_trial_complete(trial_id, result, error)
        except UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        live = {
            ot_trial._trial_id
            for trial_id, ot_trial in self._ot_trials.items()
            if trial_id not in self._completed_trials
        }
        requeue_orphaned_optuna_trials(self._ot_study, live)
        known = {ot_trial._trial_id for ot_trial in self._ot_trials.values()}
        told = told_after_snapshot(self._ot_study, lambda t: t._trial_id in known)
        self._adopt = [t._trial_id for t in told]

    def suggest(self, trial_id: str) -> dict | None:
        # a config told COMPLETE after the snapshot is proposed again first, under its Optuna trial
        adopt = self.__dict__.get("_adopt") or []
        if adopt and trial_id not in self._ot_trials:
            self._ot_trials[trial_id] = adopted_trial(self._ot_study, adopt.pop(0))
        return super().suggest(trial_id)


def requeue_orphaned_optuna_trials(optuna_study: Any, live: set[int]) -> list[int]:
    """Mark FAIL every RUNNING trial of ``optuna_study`` whose storage id is not in ``live`` and
    enqueue its params, so that the next ``ask`` proposes them again; returns the failed trials'
    numbers."""
    from optuna.trial import TrialState

    storage = optuna_study._storage
    failed = []
    for frozen in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen._trial_id in live:
            continue
        storage.set_trial_user_attr(
            frozen._trial_id, "grokray_fail_reason", "the driver was killed before this trial was saved"
        )
        storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
        if frozen.params:  # empty only if the driver died between ask and suggest
            requeued_from = {"grokray_requeued_from": frozen.number}
            optuna_study.enqueue_trial(dict(frozen.params), user_attrs=requeued_from)
        failed.append(frozen.number)
    return failed


def told_after_snapshot(optuna_study: Any, known: Callable[[Any], bool]) -> list[Any]:
    """The COMPLETE trials of ``optuna_study`` that a restored searcher does not know (``known`` is
    false): asked and told between Tune's last snapshot and the driver's death, in the order they
    were asked. The restored experiment does not know their Tune trials either, so their configs
    must be proposed again; a grid sampler would not (their points are done), and a re-queue would
    complete each config twice. So the restored searcher proposes them again under the same Optuna
    trials (``adopted_trial``): Tune trains them (their MLflow runs continued, by config), Optuna
    keeps the value it holds (training is seeded: the same outcome)."""
    from optuna.trial import TrialState

    done = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [frozen for frozen in sorted(done, key=lambda t: t.number) if not known(frozen)]


def adopted_trial(optuna_study: Any, storage_id: int) -> Any:
    """A handle on a finished Optuna trial (``told_after_snapshot``): a search space asked of it gets
    the values it holds (Optuna does not sample a parameter a trial already has); reporting to it or
    telling it raises ``UpdateFinishedTrialError``, which the searchers take as told."""
    import optuna

    return optuna.trial.Trial(optuna_study, storage_id)


def fail_unfinished_optuna_trials(storage: Any, study_name: str) -> int:
    """Mark FAIL every RUNNING trial of the Optuna study ``study_name`` (a driver died before Tune
    saved the experiment: nothing will finish them; the new run asks in a new Optuna study)."""
    import optuna
    from optuna.trial import TrialState

    try:
        old = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # never created
        return 0
    running = old.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for frozen in running:
        storage.set_trial_user_attr(
            frozen._trial_id, "grokray_fail_reason", "the driver was killed before Tune saved it"
        )
        storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
    return len(running)


def open_optuna_storage(url: str) -> Any:
    """``optuna.storages.RDBStorage(url)``, or a StudyError naming ``--optuna-storage``."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StudyError(
            "--optuna-storage", f"cannot open the Optuna storage {masked_url(url)}: {reason}"
        ) from None


def masked_url(url: str) -> str:
    """A database URL with its password hidden (for printing and for grokray.json)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


# Packed trials: one Tune trial trains many configs (Study(pack=...))


def _replica_records(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A result's per-replica records, from the nested result or the flat one Tune hands a
    searcher (``replicas/0/stop_reason``)."""
    nested = result.get("replicas")
    if isinstance(nested, Mapping):
        return {str(k): dict(v) for k, v in nested.items()}
    records: dict[str, dict[str, Any]] = {}
    for key, value in result.items():
        if key.startswith("replicas/"):
            _, replica, name = key.split("/", 2)
            records.setdefault(replica, {})[name] = value
    return records


class PackSearch(Searcher):
    """A Tune searcher whose every suggestion is a pack: up to ``per_pack`` configs, each its own
    Optuna trial, asked for together (ask/tell) and trained by one Tune trial as one batch.

    The Tune trial's config is ``{"pack": [values, ...]}`` (``grokray.tune.results.PACK``). Each
    config's outcome is told to Optuna as soon as all its replicas have ended (a config of a pack
    that is still training others is not held back), its objective the mean over its seeds.
    Configs whose shapes differ (``grokray.engine.SHARED_KEYS``: width, model, batch size...) are
    never packed together: the rest of a batch waits for the next suggestion.

    Optuna's samplers see a batch as concurrent trials: the grid sampler hands out points in its
    order, TPE runs with ``constant_liar`` (``make_sampler(..., batched=True)``) so that a batch is
    spread rather than ``per_pack`` copies of one proposal, GP and QMC batch natively. Saved with
    the Tune experiment (``save``/``restore``); on an RDB storage, a restore fails and re-queues the
    Optuna trials that the restored experiment does not know (as ``StoredOptunaSearch``)."""

    def __init__(
        self,
        space: DefineByRun,
        metric: str,
        mode: str,
        sampler: Any,
        per_pack: int,
        num_configs: int,
        per_config: int,
        resolve: Any,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        storage: Any = None,
        study_name: str | None = None,
        rule: Any = None,
        slots: int = 1,
    ) -> None:
        import optuna

        super().__init__(metric=metric, mode=mode)
        self._rule = rule  # the study's GrokStopper: its monotone rule orders the packs
        self._slots = max(1, int(slots))  # packs training at once (the study's max_concurrent)
        self._reserved: set[int] = set()  # Optuna trial numbers a pack left to the next free slots
        self._failing: set[tuple[Any, ...]] = set()  # monotone groups where a run spent its budget
        self._space, self._per_pack, self._num_configs = space, per_pack, num_configs
        self._per_config, self._resolve = per_config, resolve
        self._ot_study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=optuna.pruners.NopPruner(),
            study_name=study_name,
            load_if_exists=True,
            direction="minimize" if mode == "min" else "maximize",
        )
        for point in points_to_evaluate or ():
            self._ot_study.enqueue_trial(dict(point))
        self._asked = 0  # configs asked of Optuna (proposed or pending)
        self._pending: list[tuple[Any, dict[str, Any]]] = []  # asked, of another shape than the last pack
        # Tune trial id -> its configs: (Optuna trial, values)
        self._packs: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        self._told: set[int] = set()  # Optuna trial numbers told
        self._last_step: dict[int, int] = {}  # Optuna trial number -> last intermediate step reported

    def suggest(self, trial_id: str) -> dict | None:
        from ray.tune.search.optuna.optuna_search import _OptunaTrialSuggestCaptor

        from grokray.crash import crash_point
        from grokray.engine import SHARED_KEYS
        from grokray.tune.results import PACK

        # a sampler that decides when it has seen enough (the boundary search) is asked while it wants
        more = getattr(self._ot_study.sampler, "wants_more", None)
        while (
            self._asked < self._num_configs
            and len(self._pending) < self._per_pack
            and (more is None or more(self._ot_study))
        ):
            ot_trial = self._ot_study.ask()
            captor = _OptunaTrialSuggestCaptor(ot_trial)
            extra = self._space(captor)
            self._pending.append((ot_trial, {**captor.captured_values, **(extra or {})}))
            self._asked += 1
        if not self._pending:
            if more is not None and self._packs and self._asked < self._num_configs:
                return None  # the packs in flight may leave the search wanting more
            return Searcher.FINISHED
        pack = self._next_pack(SHARED_KEYS)
        if not pack:
            return None  # every pending config waits for a running pack's outcome
        taken = {ot_trial.number for ot_trial, _ in pack}
        self._pending = [item for item in self._pending if item[0].number not in taken]
        self._packs[trial_id] = pack
        crash_point("propose")  # Optuna has asked; Tune does not have the trial yet
        return {PACK: [values for _, values in pack]}

    def _next_pack(self, shared_keys: Sequence[str]) -> list[tuple[Any, dict[str, Any]]]:
        """The pending configs to train next, in the sampler's order, of one shape.

        With the monotone rule (``GrokStopper``), the steps it saves come from order: a size is
        not trained once ``monotone`` larger sizes failed. A pack trains its configs in lockstep,
        so a size packed beside the larger sizes whose failure would dominate it would train to
        the budget for nothing. So a config is *contested* while at least ``monotone`` larger
        sizes of its group, below the smallest that grokked, have failed or are still training
        (in a running pack, or ahead of it in this one once the group has an outcome: a group's
        first pack takes its largest sizes on speculation): it waits for their outcome. One that
        the rule already dominates goes into a pack of its own, which stops before it trains
        (recorded ``dominated``, 0 steps), as a single-config trial does today.

        No slot idles while work waits that is cheap to guess: the configs that may train now
        are shared out over the free slots (``max_concurrent`` packs: one core each on a CPU),
        the rest kept for the next free slot whatever trains meanwhile (``_reserved``); and while
        no run of a group has spent its budget without grokking (``_failing``), a pack also
        takes the largest contested size of that group on speculation (``_speculation``): it
        trains for nothing only if the sizes above it fail, and only until they do (the stopper
        ends a pack whose every config is dominated). Once a run has failed, sizes wait as above:
        the configs trained are the ones the conservative order trains, sooner."""
        rule = self._rule if self._rule is not None and self._rule.monotone else None
        reserved = self.__dict__.setdefault("_reserved", set())  # absent in a search pickled before
        waiting: list[tuple[Any, dict[str, Any]]] = []  # contested configs, in the sampler's order
        if rule is None or rule.size_key is None:
            eligible, dominated = list(self._pending), []
        else:
            # sizes of each group still training, sorted (bisect): the check of a pending config
            # is then O(log n), not a pass over every config in flight (10,000-config studies)
            training: dict[tuple[Any, ...], list[float]] = {}
            for pack in self._packs.values():
                for item in pack:
                    if item[0].number not in self._told and (sized := self._sized(item, rule)):
                        training.setdefault(sized[1], []).append(sized[0])
            for sizes in training.values():
                sizes.sort()
            beside: dict[tuple[Any, ...], list[float]] = {}  # eligible sizes of each group, sorted
            eligible, dominated = [], []
            for item in self._pending:
                sized = self._sized(item, rule)
                if sized is None:
                    eligible.append(item)
                    continue
                size, group = sized
                if rule.dominated(size, group):
                    dominated.append(item)
                    continue
                if item[0].number not in reserved:
                    # a group's first pack, before anything is known of it, takes the largest sizes
                    # on speculation (they mostly grok); once it has an outcome, a pack holds no
                    # size whose failure could dominate another of the same pack
                    known = group in rule.smallest_grokked or bool(rule.failed.get(group))
                    ceiling = rule.smallest_grokked.get(group, math.inf)
                    contested = {f for f in rule.failed.get(group, ()) if size < f < ceiling}
                    for ahead in (training.get(group, []), beside.get(group, []) if known else []):
                        i, end = bisect.bisect_right(ahead, size), bisect.bisect_left(ahead, ceiling)
                        while i < end and len(contested) < rule.monotone:
                            contested.add(ahead[i])
                            i += 1
                    if len(contested) >= rule.monotone and (training or eligible):
                        waiting.append(item)
                        continue
                eligible.append(item)
                bisect.insort(beside.setdefault(group, []), size)
            if not dominated and len(self._packs) < self._slots:
                eligible += self._speculation(waiting, rule)
        chosen = eligible or dominated
        if not chosen:
            return []
        shape = self._shape(chosen[0], shared_keys)
        chosen = [item for item in chosen if self._shape(item, shared_keys) == shape][: self._per_pack]
        if not eligible:
            return chosen  # dominated: trains nothing, one pack however many slots are free
        # shared out over the free slots (this one included); the rest wait for the next ones
        free = max(1, self._slots - len(self._packs))
        taken, left = chosen[: -(-len(chosen) // free)], chosen[-(-len(chosen) // free) :]
        reserved.difference_update(item[0].number for item in taken)
        reserved.update(item[0].number for item in left)
        return taken

    def _speculation(
        self, waiting: list[tuple[Any, dict[str, Any]]], rule: Any
    ) -> list[tuple[Any, dict[str, Any]]]:
        """One contested config a pack trains on speculation: the largest waiting size of a group
        where no run has failed yet (none once one has: near the boundary the order pays)."""
        failing = self.__dict__.setdefault("_failing", set())  # absent in a search pickled before
        for item in sorted(waiting, key=lambda item: -self._sized(item, rule)[0]):
            if self._sized(item, rule)[1] not in failing:
                return [item]
        return []

    def _sized(self, item: tuple[Any, dict[str, Any]], rule: Any) -> tuple[float, tuple[Any, ...]] | None:
        """A config's (size, monotone group), or None without a size."""
        key = rule.size_key
        return self._memo("_sizes", item, lambda v: (float(v[key]), rule.group_of(v)) if key in v else None)

    def _shape(self, item: tuple[Any, dict[str, Any]], keys: Sequence[str]) -> tuple[str, ...]:
        """The shared keys of a config's resolved values (``SHARED_KEYS``)."""

        def shape(values: dict[str, Any]) -> tuple[str, ...]:
            config = self._resolve(values)
            return tuple(str(config.get(k)) for k in keys)

        return self._memo("_shapes", item, shape)

    def _memo(self, cache: str, item: tuple[Any, dict[str, Any]], compute: Any) -> Any:
        """``compute(values)`` of a pending or packed config, once per Optuna trial (not saved)."""
        memo = self.__dict__.setdefault(cache, {})  # absent in a search restored from a pickle
        number = item[0].number
        if number not in memo:
            memo[number] = compute(item[1])
        return memo[number]

    def _tell_ended(self, trial_id: str, result: Mapping[str, Any] | None, error: bool) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        from grokray.outcomes import objectives

        records = _replica_records(result or {})
        for member, (ot_trial, values) in enumerate(self._packs.get(trial_id, ())):
            if ot_trial.number in self._told:
                continue
            rows = [records.get(str(member * self._per_config + i)) for i in range(self._per_config)]
            ended = all(r is not None and r.get("stop_reason", "running") != "running" for r in rows)
            if not ended and not error and result is not None and result.get("stop_reason") != "done":
                continue
            self._told.add(ot_trial.number)
            # the grid sampler calls ``Study.stop`` once its grid is done, which Optuna allows only
            # inside ``optimize``: a tell is the end of a trial as ``optimize`` would end it
            local = self._ot_study._thread_local
            local.in_optimize_loop, was = True, getattr(local, "in_optimize_loop", False)
            try:
                if error or not all(rows):
                    self._ot_study.tell(ot_trial, state=TrialState.FAIL, skip_if_finished=True)
                else:
                    config = self._resolve(values)
                    fraction = config.get("train_fraction", 0.0)
                    scores = [objectives({**r, "train_fraction": fraction}, config["steps"]) for r in rows]
                    value = sum(s[self.metric] for s in scores) / len(scores)
                    # each seed's outcome, for samplers that read them (the boundary search)
                    outcomes = [[bool(r.get("grokked")), int(r.get("steps_run") or 0), r.get("grokking_step")]
                                for r in rows]  # fmt: skip
                    if self._rule is not None and any(r.get("stop_reason") == "budget" for r in rows):
                        sized = self._sized((ot_trial, values), self._rule)
                        if sized is not None:  # a run of this group spent its budget: no more guesses
                            self.__dict__.setdefault("_failing", set()).add(sized[1])
                    self._ot_study._storage.set_trial_user_attr(ot_trial._trial_id, OUTCOMES_ATTR, outcomes)
                    self._ot_study.tell(ot_trial, value, skip_if_finished=True)
            except UpdateFinishedTrialError:  # told before the driver was killed (an RDB storage)
                pass
            except KeyError as err:
                # GridSampler.after_trial, with one grid point left, reads the told trial's grid
                # id, which a re-queued (enqueued) trial does not have; the state is written first
                if "grid_id" not in str(err):
                    raise
            finally:
                local.in_optimize_loop = was

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)
        self._tell_ended(trial_id, result, error=False)

    def _report(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Each config's objective so far (the mean over its seeds) as an Optuna intermediate
        value at the pack's ``training_iteration``, once per step (a resumed pack replays steps)."""
        from ray.tune.result import TRAINING_ITERATION

        from grokray.outcomes import objectives

        step = int(result.get(TRAINING_ITERATION, -1))
        records = _replica_records(result)
        last = self._last_step
        for member, (ot_trial, values) in enumerate(self._packs.get(trial_id, ())):
            if ot_trial.number in self._told or step <= last.get(ot_trial.number, -1):
                continue
            rows = [records.get(str(member * self._per_config + i)) for i in range(self._per_config)]
            if not all(rows):
                continue
            config = self._resolve(values)
            fraction = config.get("train_fraction", 0.0)
            scores = [
                objectives({**r, "train_fraction": fraction}, config["steps"])[self.metric] for r in rows
            ]
            from optuna.exceptions import UpdateFinishedTrialError

            try:
                ot_trial.report(sum(scores) / len(scores), step)
            except UpdateFinishedTrialError:  # told (or failed) before the driver was killed
                self._told.add(ot_trial.number)
                continue
            last[ot_trial.number] = step

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._tell_ended(trial_id, result, error)
        self._packs.pop(trial_id, None)

    def save(self, checkpoint_path: str) -> None:
        import pickle

        # the stopper saves itself; the caches are rebuilt
        state = {k: v for k, v in self.__dict__.items() if k not in ("_rule", "_sizes", "_shapes")}
        with open(checkpoint_path, "wb") as file:
            pickle.dump(state, file)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))
        from optuna.storages import InMemoryStorage

        if isinstance(getattr(self._ot_study._storage, "_backend", self._ot_study._storage), InMemoryStorage):
            return  # the study lives in this pickle: restored as saved
        # asked after the snapshot: nothing will finish them; their configs are proposed again
        held = [item for pack in self._packs.values() for item in pack] + self._pending
        live = {t._trial_id for t, _ in held if t.number not in self._told}
        requeue_orphaned_optuna_trials(self._ot_study, live)
        # asked and told after it: proposed again first, under their own (finished) Optuna trials
        from ray.tune.search.optuna.optuna_search import _OptunaTrialSuggestCaptor

        known = {t.number for t, _ in held} | self._told
        adopted = []
        for frozen in told_after_snapshot(self._ot_study, lambda t: t.number in known):
            handle = adopted_trial(self._ot_study, frozen._trial_id)
            captor = _OptunaTrialSuggestCaptor(handle)
            extra = self._space(captor)
            adopted.append((handle, {**captor.captured_values, **(extra or {})}))
            self._told.add(frozen.number)
            self._asked += 1
        self._pending = adopted + self._pending
