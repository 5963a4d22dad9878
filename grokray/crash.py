"""Named crash points: the fault sweep (``make faults``, ``tools/faults.py --sweep``) kills the
study's driver at a chosen moment of its life, as SQLite's tests crash at every I/O point.

``GROKRAY_CRASH_AT=POINT[:N]`` kills the driver at the N-th time (default 1) this process passes
``crash_point(POINT)``, with ``GROKRAY_CRASH_SIGNAL`` (``KILL``, the default, or ``TERM``). A point
passed in a Ray worker (``checkpoint_write``) signals the driver (``GROKRAY_DRIVER_PID``, set by the
driver and inherited by the workers of a local Ray) and the worker goes on. Never set in use; unset,
``crash_point`` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter

#: Every crash point, in the order a study meets them (the sweep visits each).
POINTS = (
    "before_fit",  # the run's state written, before Tune starts (the resume's own start, too)
    "propose",  # the searcher proposes a config (Optuna asks), before Tune has the trial
    "trial_start",  # Tune started a trial, before its child runs exist
    "runs_open",  # a trial's child runs are created, before their first metrics
    "result",  # the driver logged a result (to MLflow's queue), before Tune's bookkeeping of it
    "checkpoint_write",  # a worker is writing a checkpoint (worker side: the driver is signalled)
    "checkpoint_registered",  # Tune registered a trial's checkpoint
    "trial_end",  # a trial ended, before its child runs are ended in MLflow
    "trial_ended",  # a trial's child runs ended, before Tune's next snapshot
    "table",  # the study's trial table is written, before its plots and estimate
    "estimate",  # the estimate and plots are logged, before the parent run ends
)

_passed: Counter[str] = Counter()


def armed(name: str) -> bool:
    """Whether ``GROKRAY_CRASH_AT`` names this point (whichever pass): a caller may settle what
    the point's window means before ``crash_point``."""
    return os.environ.get("GROKRAY_CRASH_AT", "").partition(":")[0] == name


def crash_point(name: str) -> None:
    """Kill the driver here if ``GROKRAY_CRASH_AT`` names this point (and this is its N-th pass)."""
    if not armed(name):
        return
    nth = os.environ["GROKRAY_CRASH_AT"].partition(":")[2]
    _passed[name] += 1
    if _passed[name] != int(nth or 1):
        return
    term = os.environ.get("GROKRAY_CRASH_SIGNAL", "KILL").upper() == "TERM"
    sig = signal.SIGTERM if term else signal.SIGKILL
    driver = int(os.environ.get("GROKRAY_DRIVER_PID", os.getpid()))
    print(f"grokray: crash point {name}:{_passed[name]}: {sig.name} to the driver", file=sys.stderr,
          flush=True)  # fmt: skip
    os.kill(driver, sig)
    if driver == os.getpid() and sig == signal.SIGTERM:
        time.sleep(0.5)  # let the handler run (it turns SIGTERM into an interruption) before going on


__all__ = ["POINTS", "armed", "crash_point"]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
