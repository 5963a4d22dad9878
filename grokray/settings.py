"""Where things live and the environment knobs: every default location and every ``GROKRAY_*``
variable grokray reads, in one place. Imports neither torch, Ray nor MLflow.

``current()`` reads the environment when called: the CLI reads it once at start, a Tune trial once
when it starts (its worker's environment is the job's), and passes the values down.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

#: The checkout (or installed tree) whose ``data/`` and ``studies/`` ship with grokray.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Where a study's results go unless ``--storage`` / ``GROKRAY_STORAGE`` say otherwise.
DEFAULT_STORAGE = "results"
#: MLflow's store unless ``MLFLOW_TRACKING_URI`` says otherwise: a SQLite file, no server.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

#: ``GROKRAY_ENGINE``: "" (the MLP on token pairs through ReplicaMLP; other models looped on a CPU
#: and through vmap on a GPU), "vmap" or "loop" (every model through VmapReplicas, so).
ENGINES = ("", "vmap", "loop")
#: ``GROKRAY_TRACKING_WRITER``: where the child runs' MLflow calls are made: "process" (a writer
#: process beside the driver, ``grokray/tune/writer.py``) or "inline" (in the driver).
TRACKING_WRITERS = ("process", "inline")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The environment's say, with its defaults."""

    storage: str = DEFAULT_STORAGE  # GROKRAY_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI  # MLFLOW_TRACKING_URI
    optuna_storage: str | None = None  # GROKRAY_OPTUNA_STORAGE
    ray_address: str | None = None  # RAY_ADDRESS
    checkpoint_seconds: float = 30.0  # GROKRAY_CHECKPOINT_SECONDS: a trial's checkpoint period
    tracking_outage_seconds: float = 600.0  # GROKRAY_TRACKING_OUTAGE_SECONDS: how long to wait for MLflow
    engine: str = ""  # GROKRAY_ENGINE (ENGINES)
    tracking_writer: str = "process"  # GROKRAY_TRACKING_WRITER (TRACKING_WRITERS)
    inject_fault: str = ""  # GROKRAY_INJECT_FAULT: fault drills only (raise-once@STEP, raise-always@STEP)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        engine = environ.get("GROKRAY_ENGINE", "")
        if engine not in ENGINES:
            raise ValueError(
                f"GROKRAY_ENGINE: got {engine!r}; allowed: {', '.join(repr(e) for e in ENGINES)}"
            )
        writer = environ.get("GROKRAY_TRACKING_WRITER") or "process"
        if writer not in TRACKING_WRITERS:
            raise ValueError(
                f"GROKRAY_TRACKING_WRITER: got {writer!r}; "
                f"allowed: {', '.join(repr(w) for w in TRACKING_WRITERS)}"
            )
        return cls(
            storage=environ.get("GROKRAY_STORAGE") or DEFAULT_STORAGE,
            tracking_uri=environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
            optuna_storage=environ.get("GROKRAY_OPTUNA_STORAGE") or None,
            ray_address=environ.get("RAY_ADDRESS") or None,
            checkpoint_seconds=float(environ.get("GROKRAY_CHECKPOINT_SECONDS", "30")),
            tracking_outage_seconds=float(environ.get("GROKRAY_TRACKING_OUTAGE_SECONDS", "600")),
            engine=engine,
            tracking_writer=writer,
            inject_fault=environ.get("GROKRAY_INJECT_FAULT", ""),
        )


def current() -> Settings:
    """The settings of this process's environment, now."""
    return Settings.from_env(os.environ)
