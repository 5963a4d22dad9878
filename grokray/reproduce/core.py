"""The reproduction suite's plumbing: a row is one reference experiment of one paper.

A row function takes a ``Context`` (output folder, quick flag, progress printer) and returns a
``Row``: the paper, the figure or table, the paper's number, grokray's measured value, the
tolerance and PASS/FAIL, what was scaled down and why the effect survives, and a PNG. Rows train
through the same batched engine a Tune trial runs (``train_replicas``) on configs resolved from
the shipped study files, so a row measures the study as shipped (with the overrides it names).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from grokray.settings import PROJECT_ROOT
from grokray.study import load_study

STUDIES = PROJECT_ROOT / "studies"


@dataclasses.dataclass
class Context:
    out: Path  # where the row writes its PNG
    quick: bool = False  # a smoke profile: tiny budgets, seconds; PASS is not expected
    progress: Callable[[str], None] = print


@dataclasses.dataclass
class Row:
    key: str  # e.g. "zhang-wand"
    paper: str  # e.g. "Zhang et al. 2025"
    figure: str  # e.g. "Fig. 2, WanD on x+y mod 67"
    claim: str  # the headline, one line
    reference: str  # the paper's number (or the scaled reference), as text
    measured: str  # grokray's value, as text (mean [min, max] over seeds)
    tolerance: str  # what counts as PASS, as text
    passed: bool
    scaled: str = ""  # what was scaled down and why the effect survives; "" = the paper's setting
    command: str = ""  # how a researcher reruns (part of) it by hand (grokray trial / run)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # the numbers, for the JSON
    plot: str = ""  # PNG file name inside the output folder
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RowFunction = Callable[[Context], Row]
REGISTRY: dict[str, RowFunction] = {}


def row(key: str) -> Callable[[RowFunction], RowFunction]:
    """Register a row function under ``key`` (the order of registration is the report's order)."""

    def register(function: RowFunction) -> RowFunction:
        if key in REGISTRY:
            raise ValueError(f"row {key!r} registered twice")
        REGISTRY[key] = function
        return function

    return register


# ---------------------------------------------------------------------------------------------
# Helpers for row functions


def study_configs(
    study_file: str, overrides: Sequence[str] = (), quick: bool = False
) -> list[dict[str, Any]]:
    """Every trial config of a grid study (each grid point × its seeds), as the trials get them.

    ``study_file`` is a name under ``studies/`` (``"glass.py"``); ``overrides`` are ``--set``
    assignments (``"p=31"``, ``"temperature=0,0.5"``)."""
    from grokray.tune.results import replica_configs

    study = load_study(STUDIES / study_file, overrides, quick=quick)
    configs = []
    for point in study.grid_points():
        configs.extend(replica_configs(study, point))
    return configs


def run_configs(
    configs: Sequence[Mapping[str, Any]],
    stop_on_grok: bool = True,
    progress: Callable[[str], None] | None = None,
    label: str = "",
) -> list[dict[str, Any]]:
    """Train every config through ``train_replicas``, configs that can share a batch together;
    return one outcome (with ``history``) per config, in input order."""
    import torch

    from grokray.engine import SHARED_KEYS, train_replicas

    torch.set_num_threads(max(1, torch.get_num_threads()))
    order = sorted(range(len(configs)), key=lambda i: [str(configs[i][k]) for k in SHARED_KEYS])
    outcomes: list[dict[str, Any] | None] = [None] * len(configs)
    groups = [
        list(members)
        for _, members in itertools.groupby(order, key=lambda i: [str(configs[i][k]) for k in SHARED_KEYS])
    ]
    for n, members in enumerate(groups, 1):
        started = time.perf_counter()
        results = train_replicas([configs[i] for i in members], stop_on_grok=stop_on_grok, batched=True)
        by_replica = {r["replica"]: r for r in results}
        for position, i in enumerate(members):
            outcomes[i] = by_replica[position]
        if progress is not None:
            progress(
                f"  {label} batch {n}/{len(groups)}: {len(members)} runs, "
                f"{time.perf_counter() - started:.0f} s"
            )
    return [o for o in outcomes if o is not None]


def spread(values: Iterable[float], fmt: str = "{:.3g}") -> str:
    """``mean [min, max]`` of finite values (``n/a`` if none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return fmt.format(finite[0])
    mean = statistics.fmean(finite)
    return f"{fmt.format(mean)} [{fmt.format(min(finite))}, {fmt.format(max(finite))}]"


def figure(ctx: Context, name: str) -> tuple[Any, Path]:
    """A matplotlib module on the Agg backend and the PNG path ``ctx.out / name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctx.out.mkdir(parents=True, exist_ok=True)
    return plt, ctx.out / name


def save(fig: Any, path: Path) -> str:
    """Lay out, write and close a row's figure; return its file name (``Row.plot``)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def set_flags(values: Mapping[str, Any]) -> str:
    """``--set k=v`` for each value, for a row's by-hand command."""
    return " ".join(f"--set {k}={v}" for k, v in values.items())
