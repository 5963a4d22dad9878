"""The Tune trainable: one trial trains its seed replicas through the engine as one batch and
reports every evaluation; checkpoints, resume, and the fault-drill hook.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grokray import settings
from grokray.crash import crash_point
from grokray.study import Study
from grokray.tune.results import PACK, replayed_results, replica_configs, seeds_per_config, trial_result


def run_trial(sampled: dict[str, Any], study: Study) -> None:
    """The Tune trainable: train the trial's replicas (its configs' seeds) as one batch through the
    engine (in parts where the pack does not fit in device memory: ``FittingRun``), report every
    evaluation (``Reporter``); a resumed or retried trial continues from its newest checkpoint.
    ``study.early_stop``: a replica ends once it has grokked."""
    import ray
    import torch
    from ray import tune

    from grokray.engine.split import FittingRun

    knobs = settings.current()
    configs = replica_configs(study, sampled)
    torch.set_num_threads(max(1, int(study.cpus_per_trial)))
    run = FittingRun(configs, stop_on_grok=study.early_stop, engine=knobs.engine)  # split if it does not fit
    per_config = seeds_per_config(study) if PACK in sampled else 0
    node = ray.get_runtime_context().get_node_id()
    reporter = Reporter(run, configs, node, knobs.checkpoint_seconds, per_config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        state, registered_step = newest_checkpoint_state(checkpoint.filesystem, checkpoint.path)
        run.load_state_dict(state)
        reporter.replay(registered_step)
    run.run(FaultDrill(reporter, run, knobs.inject_fault) if knobs.inject_fault else reporter)


class Reporter:
    """``on_eval`` of a trial's run: each evaluation reported to Tune as a ``TrialResult``, with a
    checkpoint (the whole run state) every ``every`` seconds and at the end, so that a retried
    (``FailureConfig``) or resumed trial continues where it left off."""

    def __init__(
        self, run: Any, configs: list[dict[str, Any]], node_id: str, every: float, per_config: int = 0
    ) -> None:
        self.run, self.configs, self.node_id, self.every = run, configs, node_id, every
        self.per_config = per_config
        self.last_saved = time.monotonic()

    def replay(self, registered_step: int) -> None:
        """After a resume: the evaluations after the checkpoint Tune knows may never have reached
        the driver's files: report them again (the MLflow callback and the curves skip steps
        they have)."""
        from ray import tune

        for result in replayed_results(self.run.histories, registered_step, self.configs, self.per_config):
            tune.report({**result, "ray_node_id": self.node_id, "replayed": True})
        self.last_saved = time.monotonic()

    def __call__(self, records: list[dict[str, Any]]) -> None:
        import torch
        from ray import tune

        latest = trial_result(self.run.latest_records(), self.configs, self.per_config)
        result = {**latest, "ray_node_id": self.node_id}
        if time.monotonic() - self.last_saved < self.every and self.run.active:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as directory:
            torch.save(self.run.state_dict(), Path(directory) / "state.pt")
            crash_point("checkpoint_write")  # fault sweep: the driver dies while a checkpoint is in hand
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
        self.last_saved = time.monotonic()


def newest_checkpoint_state(filesystem: Any, registered: str) -> tuple[dict[str, Any], int]:
    """The run state to resume from: the furthest-trained loadable ``state.pt`` among the one Tune
    hands back (``registered``) and the trial's checkpoints after it; and the registered one's step.

    A report's checkpoint is on storage before the driver learns of it, and Tune registers it
    only after the driver has logged the report's result: a driver stopped or killed in between
    leaves the experiment state naming the checkpoint before, and resuming from that one would
    train those steps twice. Tune numbers the checkpoints of a resumed trial on from the
    registered one, over older unregistered ones, so the step decides, not the number. A
    checkpoint cut short by the kill does not load and is passed over."""
    import io

    import pyarrow.fs as pafs
    import torch

    def load(path: str) -> dict[str, Any]:
        with filesystem.open_input_stream(f"{path}/state.pt") as stream:
            return torch.load(io.BytesIO(stream.read()), weights_only=False)

    def index_of(name: str) -> int | None:
        digits = name.removeprefix("checkpoint_")
        return int(digits) if name.startswith("checkpoint_") and digits.isdigit() else None

    best = load(registered)
    registered_step = int(best["step"])
    parent, _, name = registered.rstrip("/").rpartition("/")
    registered_index = index_of(name)
    if registered_index is None:
        return best, registered_step
    for info in filesystem.get_file_info(pafs.FileSelector(parent)):
        index = index_of(info.base_name)
        if info.type != pafs.FileType.Directory or index is None or index <= registered_index:
            continue
        try:
            state = load(info.path)
        except Exception:  # written only in part when the driver died
            continue
        if state["step"] > best["step"]:
            best = state
    return best, registered_step


class FaultDrill:
    """``GROKRAY_INJECT_FAULT=raise-once@STEP`` (or ``raise-always@STEP``) makes a trial raise at its
    first evaluation at or past STEP: once per trial, or on every attempt. For fault drills
    (retries from checkpoints, failed trials recorded while the study goes on), never set in use."""

    def __init__(self, report: Callable[[list[dict[str, Any]]], None], run: Any, spec: str) -> None:
        from ray import tune

        self.report, self.run, self.spec = report, run, spec
        self.mode, _, at = spec.partition("@")
        self.at = int(at)
        self.marker = Path(tune.get_context().get_trial_dir()) / "injected_fault"

    def __call__(self, records: list[dict[str, Any]]) -> None:
        self.report(records)
        run = self.run
        if run.step >= self.at and run.active and (self.mode == "raise-always" or not self.marker.exists()):
            self.marker.touch()
            raise RuntimeError(f"injected fault at step {run.step} ({self.spec})")
