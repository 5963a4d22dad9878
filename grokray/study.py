"""The Study spec: what to run, how to search it, its headline plots, ``--set`` overrides and
loading a study file. The config contract is ``grokray.config``, the search primitives
``grokray.space``, the outcome keys ``grokray.outcomes``.

This module imports neither Ray, MLflow nor torch, so a broken study file fails in well under a
second with one line that names the field (``StudyError``), before anything starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grokray.config import PARAMS, StudyError, check_config, coerce, default_config, unknown_name
from grokray.outcomes import OBJECTIVES, OUTCOME_KEYS
from grokray.space import Dimension, grid

SAMPLERS = ("tpe", "random", "grid", "gp", "qmc", "boundary")

#: configs a boundary study trains at most per group when ``num_samples`` is 0
BOUNDARY_CONFIGS = 64

# ---------------------------------------------------------------------------------------------
# Headline plots of a study (drawn by grokray.analysis.study_plots, logged to MLflow as PNG)

PLOT_KINDS = ("trials", "phase", "curves")


@dataclasses.dataclass(frozen=True)
class Plot:
    """A figure of the study's answer.

    - ``trials``: ``y`` (a trial-table column, e.g. ``grokking_delay``) against ``x`` (e.g.
      ``reg_strength``), one line per value of ``color``, mean and spread over seeds;
    - ``phase``: a phase diagram over ``x`` × ``y`` coloured by the majority of the column
      ``value`` (``doshi_phase`` or ``phase``), one panel per value of ``facet``;
    - ``curves``: the curve ``y`` (an evaluation metric, e.g. ``complexity_bytes``) against step,
      one line per run coloured by the config value ``color``.
    """

    kind: str
    x: str = ""
    y: str = ""
    color: str = ""
    value: str = ""
    facet: str = ""
    logx: bool = False
    logy: bool = False
    title: str = ""

    def file_name(self) -> str:
        parts = [self.kind, self.value if self.kind == "phase" else self.y, "vs", self.x or "step"]
        if self.color:
            parts += ["by", self.color]
        return re.sub(r"[^a-z0-9_.-]+", "_", "_".join(p for p in parts if p).lower()) + ".png"


# ---------------------------------------------------------------------------------------------
# The Study

SIZE_KEYS = ("train_size", "train_fraction")  # the training-set size, absolute or as a fraction
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclasses.dataclass
class Study:
    """A study: fixed config values plus a search space, and how to search it.

    ``seeds`` trains each proposed config with that many seeds (``seed`` = 0..seeds-1 unless the
    space searches ``seed``). ``num_samples`` is the number of configs Optuna proposes; the study
    runs ``num_samples * seeds`` trials. With ``sampler="grid"`` and ``num_samples=0`` the study
    visits every grid point once.
    """

    name: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    space: dict[str, Dimension] = dataclasses.field(default_factory=dict)
    seeds: int = 1
    sampler: str = "tpe"
    num_samples: int = 0
    max_concurrent: int = 2
    objective: str = "boundary"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    description: str = ""
    quick: dict[str, Any] = dataclasses.field(default_factory=dict)
    # values that follow a searched one: {"optimizer": {"wand": {"lr": 0.5}, "sgd": {"lr": 0.1}}}
    linked: dict[str, dict[Any, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    plots: list[Plot] = dataclasses.field(default_factory=list)
    early_stop: bool = True  # end a trial once it has grokked; False: always run to the budget
    # with early_stop and a searched training size: stop a trial below this many larger sizes
    # (same other searched values) where no seed grokked within the budget; 0: off
    monotone_stop: int = 2
    sampler_seed: int = 0  # the sampler's seed (``--set sampler_seed=N``: a rerun that proposes others)
    # the most replicas (configs x seeds) one Tune trial trains at once: "auto" (from the device) or
    # N >= 1; 1 is one config's seeds per trial
    pack: int | str = "auto"
    # the most child runs that get their own figure (grokking_curve.png), the first to end; every run
    # keeps its curves (MLflow's charts, curves.parquet) and the study's figures cover them all
    run_figures: int = 100
    # sampler="boundary": stop once the 95 % posterior interval of the critical size is narrower
    # than this in every group (size units: a fraction, or examples); 0: a 40th of the size range
    precision: float = 0.0
    # sampler="boundary": the most model-steps (steps trained, summed over runs) the study spends;
    # 0: no limit but num_samples
    max_steps_total: int = 0

    # -- derived ----------------------------------------------------------------------------

    def validate(self) -> Study:
        """Check every field; raise ``StudyError`` naming the first wrong one. Returns self."""
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise StudyError("name", f"got {self.name!r}; allowed: lowercase letters, digits, '-', '_', '.'")
        if not isinstance(self.config, dict):
            raise StudyError("config", "must be a dict of config names to values")
        if not isinstance(self.space, dict):
            raise StudyError("space", "must be a dict of config names to search dimensions")
        for key, value in self.config.items():
            self.config[key] = coerce(key, value)
        if "replicas" in self.config or "replicas" in self.space:
            raise StudyError("replicas", "is set by Study(seeds=N): each trial trains N seeds as one batch")
        overlap = set(self.config) & set(self.space)
        if overlap:
            name = sorted(overlap)[0]
            raise StudyError(name, "is both fixed in config and searched in space; keep one")
        for key, dim in self.space.items():
            self._check_dimension(key, dim)
        for field_name, allowed in (("sampler", SAMPLERS), ("objective", tuple(OBJECTIVES))):
            value = getattr(self, field_name)
            if value not in allowed:
                raise StudyError(field_name, f"got {value!r}; allowed: {', '.join(allowed)}")
        if not isinstance(self.linked, dict):
            raise StudyError("linked", "must be {name: {value: {name: value, ...}}}")
        for key, by_value in self.linked.items():
            if key not in PARAMS:
                raise unknown_name(key, f"linked.{key}")
            if not isinstance(by_value, dict) or not all(isinstance(v, dict) for v in by_value.values()):
                raise StudyError(f"linked.{key}", "must map each value to a dict of config values")
            for value, settings in by_value.items():
                coerce(key, value)
                for name, setting in settings.items():
                    if name in self.space or name == key:
                        raise StudyError(
                            f"linked.{key}", f"{name!r} is searched in space; link it or search it, not both"
                        )
                    if isinstance(setting, Dimension):  # a grid of this value only (per-norm β grids)
                        self._check_dimension(f"{name}", setting, field=f"linked.{key}.{value}.{name}")
                        if self.sampler == "grid" and setting.grid_values() is None:
                            raise StudyError(
                                f"linked.{key}.{value}.{name}",
                                "the grid sampler needs grid(), categorical(), integer() or "
                                "uniform(step=...)",
                            )
                        continue
                    settings[name] = coerce(name, setting)
        if not isinstance(self.early_stop, bool):
            raise StudyError("early_stop", f"got {self.early_stop!r}; allowed: True or False")
        for field_name, low in (
            ("seeds", 1),
            ("max_concurrent", 1),
            ("max_failures", 0),
            ("monotone_stop", 0),
            ("run_figures", 0),
        ):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise StudyError(field_name, f"got {value!r}; allowed: an integer >= {low}")
        pack = self.pack
        if pack != "auto" and (isinstance(pack, bool) or not isinstance(pack, int) or pack < 1):
            raise StudyError("pack", f"got {self.pack!r}; allowed: 'auto' or an integer >= 1")
        if (
            isinstance(self.num_samples, bool)
            or not isinstance(self.num_samples, int)
            or self.num_samples < 0
        ):
            raise StudyError("num_samples", f"got {self.num_samples!r}; allowed: an integer >= 0")
        if not isinstance(self.cpus_per_trial, (int, float)) or not 0 < self.cpus_per_trial <= 1024:
            raise StudyError("cpus_per_trial", f"got {self.cpus_per_trial!r}; allowed: a number in (0, 1024]")
        if not isinstance(self.gpus_per_trial, (int, float)) or not 0 <= self.gpus_per_trial <= 1:
            raise StudyError(
                "gpus_per_trial",
                f"got {self.gpus_per_trial!r}; allowed: a fraction in [0, 1] (one trial, one GPU at most)",
            )
        if self.sampler == "grid":
            for key, dim in self.space.items():
                if dim.grid_values() is None:
                    raise StudyError(
                        f"space.{key}",
                        "the grid sampler needs grid(), categorical(), integer() or uniform(step=...)",
                    )
        if self.sampler == "boundary":
            self._check_boundary()
        elif self.precision or self.max_steps_total:
            field_name = "precision" if self.precision else "max_steps_total"
            raise StudyError(field_name, f"applies to sampler='boundary' only (sampler is {self.sampler!r})")
        if self.num_samples == 0 and self.sampler not in ("grid", "boundary"):
            raise StudyError("num_samples", "must be > 0 unless sampler='grid' (0 = every grid point)")
        if not self.space and self.num_samples > 1 and self.seeds == 1:
            raise StudyError("space", "is empty: nothing to search; add a dimension or use seeds")
        for key, value in self.quick.items():
            if (
                key not in ("steps", "num_samples", "seeds", "eval_every", "space")
                and key not in STUDY_FIELDS
            ):
                coerce(key, value)
        if not isinstance(self.plots, list) or not all(isinstance(p, Plot) for p in self.plots):
            raise StudyError("plots", "must be a list of Plot(kind=..., x=..., y=...)")
        for plot in self.plots:
            if plot.kind not in PLOT_KINDS:
                raise StudyError("plots.kind", f"got {plot.kind!r}; allowed: {', '.join(PLOT_KINDS)}")
            for attr in ("x", "color", "facet"):
                name = getattr(plot, attr)
                if name and name not in PARAMS and name not in OUTCOME_KEYS and name not in ("n_train",):
                    raise StudyError(f"plots.{attr}", f"got {name!r}; allowed: a config name or outcome key")
            if plot.kind == "phase" and not (plot.x and plot.y and plot.value):
                raise StudyError("plots", "a phase plot needs x, y and value (e.g. value='doshi_phase')")
            if plot.kind != "phase" and not plot.y:
                raise StudyError("plots.y", f"a {plot.kind} plot needs y")
        # every combination of fixed values and searched bounds must be a valid config
        check_config(self.resolve({}))
        size = self.space.get("train_size")
        values = (size.grid_values() or (size.low, size.high)) if size is not None else ()
        if values and max(values) != self.resolve({})["train_size"]:  # the largest size must fit the data
            check_config(self.resolve({"train_size": max(values)}))
        return self

    def _check_boundary(self) -> None:
        """sampler='boundary': a searched data size, every other searched name a grid (one search
        per grid point), no linked grids, ``precision`` and ``max_steps_total`` in range."""
        size_key = self.size_key()
        if size_key is None:
            raise StudyError(
                "sampler", "'boundary' searches a data size: put train_fraction or train_size in space"
            )
        dim = self.space[size_key]
        values = dim.grid_values()
        if dim.log or (values is not None and len(values) < 2):
            raise StudyError(
                f"space.{size_key}",
                "sampler='boundary' needs a linear range (uniform(), integer()) or a grid",
            )
        for key, other in self.space.items():
            if key == "seed":
                raise StudyError("space.seed", "sampler='boundary' trains Study(seeds=N) seeds per size")
            if key != size_key and other.grid_values() is None:
                raise StudyError(
                    f"space.{key}",
                    "sampler='boundary' runs one search per value of the other names: give grid() or "
                    "categorical()",
                )
        if self.linked_grids():
            raise StudyError("linked", "sampler='boundary' does not search linked grids")
        precision = self.precision
        if isinstance(precision, bool) or not isinstance(precision, (int, float)) or precision < 0:
            raise StudyError(
                "precision", f"got {precision!r}; allowed: a number >= 0 (0: a 40th of the range)"
            )
        total = self.max_steps_total
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise StudyError("max_steps_total", f"got {total!r}; allowed: an integer >= 0 (0: no limit)")

    def size_range(self) -> tuple[float, float]:
        """The searched data size's range (its grid's ends for a grid)."""
        dim = self.space[self.size_key() or "train_fraction"]
        values = dim.grid_values()
        if dim.choices is not None and values:
            return float(min(values, key=float)), float(max(values, key=float))
        return float(dim.low), float(dim.high)  # type: ignore[arg-type]

    def boundary_precision(self) -> float:
        """``precision``, or a 40th of the size range when 0."""
        low, high = self.size_range()
        return float(self.precision) if self.precision else (high - low) / 40.0

    @property
    def monotone(self) -> int:
        """The monotone rule's k as the study uses it: off for the boundary sampler, which places
        its own sizes and whose posterior allows a seed to fail above another's success."""
        return 0 if self.sampler == "boundary" else self.monotone_stop

    def _check_dimension(self, key: str, dim: Any, field: str = "") -> None:
        field = field or f"space.{key}"
        if key not in PARAMS:
            raise unknown_name(key, field)
        if not isinstance(dim, Dimension):
            raise StudyError(
                field,
                f"got {dim!r}; allowed: uniform(), loguniform(), integer(), categorical(), grid()",
            )
        if dim.choices is not None:
            if not dim.choices:
                raise StudyError(field, "has no values; give at least one")
            for value in dim.choices:
                try:
                    coerce(key, value)
                except StudyError as err:
                    raise StudyError(field, err.message) from None
        else:
            if dim.low is None or dim.high is None or not dim.low <= dim.high:
                raise StudyError(field, f"needs low <= high, got [{dim.low}, {dim.high}]")
            if dim.log and dim.low <= 0:
                raise StudyError(field, f"log scale needs low > 0, got {dim.low}")
            if dim.step is not None and dim.step <= 0:
                raise StudyError(field, f"step must be > 0, got {dim.step}")
            for bound in (dim.low, dim.high):
                try:
                    coerce(key, int(bound) if dim.kind == "int" else bound)
                except StudyError as err:
                    raise StudyError(field, f"bound {bound}: {err.message}") from None
        if dim.default is not None:
            try:
                coerce(key, dim.default)
            except StudyError as err:
                raise StudyError(field, f"default: {err.message}") from None

    def resolve(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The full config of one trial: defaults < fixed config < sampled values < linked values.

        A linked grid (``linked={"regularizer": {"l1": {"reg_strength": grid([...])}}}``) is searched
        only under its value: ``sampled`` holds its name when that value was drawn. ``wand`` gets
        no weight decay unless the study names ``weight_decay`` (the contract's default of 1 is
        AdamW's; θ·(1 − lr·wd) at wand's lr ≈ 0.5 would halve every weight each step)."""
        config = default_config()
        config.update(self.config)
        for key, dim in self.space.items():
            config[key] = coerce(key, sampled[key]) if key in sampled else dim.first()
        if "seed" in sampled and "seed" not in self.space:  # a boundary study's seeds, one set a config
            config["seed"] = coerce("seed", sampled["seed"])
        named = set(self.config) | set(self.space)
        for key, by_value in self.linked.items():  # e.g. each optimizer with its own lr
            for name, setting in by_value.get(config[key], {}).items():
                if isinstance(setting, Dimension):
                    setting = coerce(name, sampled[name]) if name in sampled else setting.first()
                config[name] = setting
                named.add(name)
        if config["optimizer"] == "wand" and "weight_decay" not in named:
            config["weight_decay"] = 0.0
        return config

    def linked_grids(self) -> dict[str, dict[Any, dict[str, Dimension]]]:
        """The linked dimensions: {searched name: {its value: {name: Dimension}}}."""
        out: dict[str, dict[Any, dict[str, Dimension]]] = {}
        for key, by_value in self.linked.items():
            for value, settings in by_value.items():
                dims = {n: d for n, d in settings.items() if isinstance(d, Dimension)}
                if dims:
                    out.setdefault(key, {})[value] = dims
        return out

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of the grid: the product of the space's grid values, each extended by the
        product of the linked grids of its values (the union of per-value grids). ``[{}]`` for
        an empty space."""
        names = list(self.space)
        values = [self.space[n].grid_values() or (self.space[n].first(),) for n in names]
        linked = self.linked_grids()
        points = []
        for combo in itertools.product(*values):
            point = dict(zip(names, combo, strict=True))
            extra: dict[str, tuple[Any, ...]] = {}
            for key, by_value in linked.items():
                current = point.get(key, self.config.get(key))
                for name, dim in by_value.get(current, {}).items():
                    extra[name] = dim.grid_values() or (dim.first(),)
            for extra_combo in itertools.product(*extra.values()):
                points.append({**point, **dict(zip(extra, extra_combo, strict=True))})
        return points

    @property
    def metric(self) -> str:
        return OBJECTIVES[self.objective][0]

    @property
    def mode(self) -> str:
        return OBJECTIVES[self.objective][1]

    @property
    def total_trials(self) -> int:
        return self.num_configs * self.seeds

    def size_grid(self) -> tuple[Any, ...] | None:
        """The values of a searched training size given as a grid (or categorical), else None."""
        size_key = self.size_key()
        dim = self.space.get(size_key) if size_key else None
        return dim.grid_values() if dim is not None and dim.choices is not None else None

    def sizes_first(self) -> list[dict[str, Any]]:
        """With any sampler but ``grid`` and a grid over the training size: one proposal per size,
        largest first, before the sampler's own (the other searched names are the sampler's to
        choose), so that every size of the grid is trained: under TPE a grid is a categorical, and
        its random start-up may never draw some values. ``grid`` visits every point anyway."""
        sizes = self.size_grid()
        if self.sampler in ("grid", "boundary") or not sizes:
            return []
        size_key = self.size_key()
        return [{size_key: v} for v in sorted(sizes, key=float, reverse=True)][: self.num_configs]

    def notes(self) -> list[str]:
        """What a researcher should know before the study starts (printed by ``grokray run``)."""
        out = []
        startup = {"tpe": 10, "gp": 10}.get(self.sampler)
        if startup and self.num_configs <= startup:
            out.append(
                f"{self.sampler} proposes its first {startup} configs at random: num_samples="
                f"{self.num_configs} is all random start-up (sampler='random' says so, 'grid' covers a grid)"
            )
        if self.sampler == "boundary":
            low, high = self.size_range()
            limits = [f"the 95 % interval of the critical {self.size_key()} is narrower than "
                      f"{self.boundary_precision():g} in every group"]  # fmt: skip
            if self.max_steps_total:
                limits.append(f"{self.max_steps_total:,} model-steps are spent")
            limits.append(f"{self.num_configs} configs are trained")
            off = f"; monotone_stop={self.monotone_stop} is off (the search places its own sizes)"
            out.append(
                f"boundary search over {self.size_key()} in [{low:g}, {high:g}]: it stops once "
                + ", or once ".join(limits)
                + (off if self.monotone_stop else "")
            )
            return out
        sizes = self.size_grid()
        if sizes and self.sampler != "grid":
            size_key = self.size_key()
            if self.num_configs < len(sizes):
                out.append(
                    f"{size_key} has {len(sizes)} grid values but num_samples={self.num_configs}: only the "
                    f"{self.num_configs} largest are trained (raise num_samples or use sampler='grid')"
                )
            else:
                out.append(
                    f"every {size_key} of the grid is proposed once first (largest first), then "
                    f"{self.sampler} searches for {self.num_configs - len(sizes)} more configs"
                )
        return out

    def pack_replicas(self) -> int:
        """The most replicas one Tune trial trains: ``pack``, or for ``auto`` the device's size: on
        a CPU the R where the engine's throughput stops growing (``make bench``: R = 16 small MLPs
        run 2.7x the plain loop on 2 cores), on a GPU a batch of small MLPs that launches enough
        work to fill it."""
        if self.pack != "auto":
            return int(self.pack)
        return AUTO_PACK_GPU if self.gpus_per_trial > 0 else AUTO_PACK_CPU

    def configs_per_pack(self) -> int:
        """The most configs one Tune trial trains (each with its seeds); 1: a trial per config."""
        per_config = 1 if "seed" in self.space else self.seeds
        return max(1, self.pack_replicas() // per_config)

    @property
    def num_configs(self) -> int:
        """The configs the study trains (for the boundary sampler, the most it may train)."""
        if self.num_samples:
            return self.num_samples
        if self.sampler == "boundary":
            groups = [d.grid_values() or () for k, d in self.space.items() if k != self.size_key()]
            return BOUNDARY_CONFIGS * math.prod(len(v) for v in groups)
        if self.linked_grids():
            return len(self.grid_points())
        return math.prod(len(d.grid_values() or ()) for d in self.space.values()) or 1

    def searched_names(self) -> list[str]:
        """The searched names: the space's, then the linked grids' (each once); not ``seed``."""
        names = [key for key in self.space if key != "seed"]
        for by_value in self.linked_grids().values():
            for dims in by_value.values():
                names += [n for n in dims if n not in names and n != "seed"]
        return names

    def size_key(self) -> str | None:
        """The searched training-set size, ``train_size`` or ``train_fraction``; None if neither."""
        return next((key for key in SIZE_KEYS if key in self.space), None)

    def group_names(self) -> list[str]:
        """The searched names that split trials into groups of one critical size (not the size)."""
        return [key for key in self.searched_names() if key not in SIZE_KEYS]

    def group_bins(self) -> dict[str, tuple[float, float, bool]]:
        """The continuous grouping dimensions (no grid values) with their ranges (low, high, log):
        the estimate and the monotone stopper bin these, and group every other one by value."""
        dims = dict(self.space)
        for by_value in self.linked_grids().values():
            for linked in by_value.values():
                dims.update(linked)
        return {
            name: (float(dims[name].low), float(dims[name].high), bool(dims[name].log))  # type: ignore[arg-type]
            for name in self.group_names()
            if dims[name].grid_values() is None
        }

    def fingerprint(self) -> str:
        """A hash of everything that defines the study's trials (resume refuses a changed study)."""
        payload = {
            "config": self.config,
            "space": {k: dataclasses.asdict(v) for k, v in sorted(self.space.items())},
            "seeds": self.seeds,
            "sampler": self.sampler,
            "num_samples": self.num_samples,
            "objective": self.objective,
            "linked": self.linked,
        }
        if self.pack != 1:  # packed trials (1: the trials of studies from before packs)
            payload["pack"] = self.pack
        if self.sampler_seed:  # only when set: the fingerprint of studies from before is unchanged
            payload["sampler_seed"] = self.sampler_seed
        if self.sampler == "boundary":  # where a boundary search stops
            payload["precision"] = self.precision
            payload["max_steps_total"] = self.max_steps_total
        blob = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["space"] = {k: dataclasses.asdict(v) for k, v in self.space.items()}
        return out

    # -- overrides ---------------------------------------------------------------------------

    def with_overrides(self, assignments: Sequence[str]) -> Study:
        """Apply ``--set name=value`` (fix a value) and ``--set name=a,b,c`` (pin a grid)."""
        study = dataclasses.replace(self, config=dict(self.config), space=dict(self.space))
        seen: dict[str, str] = {}
        for assignment in assignments:
            if "=" not in assignment:
                raise StudyError("--set", f"got {assignment!r}; expected name=value or name=a,b,c")
            key, _, raw = assignment.partition("=")
            key, raw = key.strip(), raw.strip()
            if not key or not raw:
                raise StudyError("--set", f"got {assignment!r}; expected name=value or name=a,b,c")
            if key in seen:
                raise StudyError(
                    "--set",
                    f"{key} is set twice ({seen[key]!r} and {raw!r}); give it once (a,b,c for a grid)",
                )
            seen[key] = raw
            if key in STUDY_FIELDS:
                study = _set_study_field(study, key, raw)
                continue
            if key not in PARAMS:
                raise unknown_name(key, extra=tuple(STUDY_FIELDS))
            values = [coerce(key, part.strip()) for part in raw.split(",")]
            # a value set on the command line wins over one linked to a searched value
            study.linked = {
                name: {v: {k: x for k, x in s.items() if k != key} for v, s in by_value.items()}
                for name, by_value in study.linked.items()
            }
            if len(values) == 1:
                study.space.pop(key, None)
                study.config[key] = values[0]
            else:
                study.config.pop(key, None)
                study.space[key] = grid(values)
        return study

    def quick_variant(self) -> Study:
        """The study's fast profile (``--quick``): same path, small budget."""
        study = dataclasses.replace(self, config=dict(self.config), space=dict(self.space))
        for key, value in self.quick.items():
            if key == "space":
                study.space.update(value)
            elif key in STUDY_FIELDS:
                setattr(study, key, value)
            else:
                study.space.pop(key, None)
                study.config[key] = value
        return study


AUTO_PACK_CPU = 16  # replicas per pack on a CPU (Study(pack="auto"))
AUTO_PACK_GPU = 256  # replicas per pack on a GPU


def _pack_value(raw: str) -> int | str:
    if raw.strip() == "auto":
        return "auto"
    return int(raw)


_pack_value.__name__ = "'auto' or an integer >= 1"

STUDY_FIELDS = {
    "seeds": int,
    "sampler": str,
    "num_samples": int,
    "max_concurrent": int,
    "objective": str,
    "cpus_per_trial": float,
    "gpus_per_trial": float,
    "max_failures": int,
    "monotone_stop": int,
    "sampler_seed": int,
    "pack": _pack_value,
    "run_figures": int,
    "precision": float,
    "max_steps_total": int,
}


def _set_study_field(study: Study, key: str, raw: str) -> Study:
    kind = STUDY_FIELDS[key]
    try:
        value = kind(raw)
    except ValueError:
        raise StudyError(key, f"got {raw!r}; allowed: {kind.__name__}") from None
    return dataclasses.replace(study, **{key: value})


# ---------------------------------------------------------------------------------------------
# Loading a study file


def load_study(path: str | Path, overrides: Sequence[str] = (), quick: bool = False) -> Study:
    """Import ``path``, take its ``study`` object, apply ``--quick`` and ``--set``, validate."""
    path = Path(path)
    if not path.is_file():
        raise StudyError("STUDY", f"no such study file: {path}")
    module_name = f"_grokray_study_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StudyError("STUDY", f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise StudyError("STUDY", f"{path}:{err.lineno}: syntax error: {err.msg}") from None
    except StudyError:
        raise
    except TypeError as err:
        if "Study.__init__()" not in str(err):  # a misspelt Study(...) argument: say which exist
            raise StudyError("STUDY", f"{path} raised TypeError: {err}") from None
        allowed = ", ".join(f.name for f in dataclasses.fields(Study))
        raise StudyError("study", f"{str(err).replace('.__init__', '')}; allowed: {allowed}") from None
    except Exception as err:
        raise StudyError("STUDY", f"{path} raised {type(err).__name__}: {err}") from None
    finally:
        sys.modules.pop(module_name, None)
    study = getattr(module, "study", None)
    if not isinstance(study, Study):
        raise StudyError("study", f"{path} must define `study = Study(...)`")
    for field_name in ("config", "space", "quick"):  # before --quick/--set copy them as dicts
        if not isinstance(getattr(study, field_name), dict):
            raise StudyError(
                field_name, f"got {getattr(study, field_name)!r}; allowed: a dict of config names to values"
            )
    if quick:
        study = study.quick_variant()
    study = study.with_overrides(overrides)
    return study.validate()
