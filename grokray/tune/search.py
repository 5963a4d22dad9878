"""Optuna on the Tune side: the study's space as a define-by-run function, the sampler, the
searcher (in memory, or on an RDB storage made safe for ``Tuner.restore``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna.samplers import GridSampler
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


def make_space(study: Study) -> DefineByRun:
    points = study.grid_points() if study.sampler == "grid" and study.linked_grids() else None
    return DefineByRun(study.space, study.linked_grids(), study.config, points)


def make_sampler(study: Study, seed: int = 0) -> Any:
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
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if study.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


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


def make_search(study: Study, storage: Any = None, study_name: str | None = None) -> Any:
    """OptunaSearch over the study's space (seeds are replicas inside each trial, not trials).

    Without ``storage`` the Optuna study lives in the searcher (in memory, saved with the Tune
    experiment); with an ``optuna.storages.RDBStorage`` it lives in that database under
    ``study_name``, where other tools can read it while the study runs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
