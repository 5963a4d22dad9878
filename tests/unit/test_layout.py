"""The shape the code keeps: what the CLI imports before it validates stays light, and every name
list of the config contract has its builder."""

from __future__ import annotations

import subprocess
import sys

from grokray.config import MODEL_TASKS, MODELS, OPTIMIZERS, REGULARIZERS, TASKS
from tests.paths import ROOT

LIGHT = (
    "grokray.config",
    "grokray.space",
    "grokray.study",
    "grokray.outcomes",
    "grokray.settings",
    "grokray.cli",
)
HEAVY = ("torch", "ray", "mlflow", "optuna", "pandas")


def test_the_modules_read_before_validation_import_no_heavy_library():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in LIGHT)
        + f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported before validation: {done.stdout.strip()}"


def test_every_task_model_optimizer_and_regularizer_of_the_contract_is_built():
    from grokray.optim.regularizers import PENALTIES
    from grokray.optim.replicas import KINDS
    from grokray.tasks import BUILDERS

    assert tuple(BUILDERS) == TASKS
    assert set(MODEL_TASKS) == set(TASKS)
    assert {m for models in MODEL_TASKS.values() for m in models} == set(MODELS)
    assert tuple(KINDS) == OPTIMIZERS
    assert set(PENALTIES) == set(REGULARIZERS) - {"none"}
