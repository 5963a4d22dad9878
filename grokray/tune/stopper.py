"""The study's Tune ``Stopper``: onset (a trial ends once it has grokked) and the monotone rule.
(Module-level: Tune pickles it into the experiment state.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune import Callback, Stopper

from grokray.outcomes import mark_dominated


class GrokStopper(Stopper):
    """Ends a trial once grokking is confirmed (or it diverged, or its budget is spent), and with
    ``monotone`` = k > 0 a trial that cannot grok because more data did not: one whose training
    size lies below k larger sizes (same other searched values, ``group_keys``) where every seed
    ran its whole budget without grokking, all of them below the smallest size where any seed
    grokked. P(grok within the budget) rising with the data size is what the critical-size
    estimate assumes; a grokked seed below a failed size (evidence against it, in that group)
    keeps that failed size from counting.

    A stopped trial's result is marked in place before Tune logs it (result.json, callbacks,
    Optuna, the trial table all see it): its running seeds get ``stop_reason`` ``dominated`` and
    ``phase`` None (not observed), ``grokked`` stays False."""

    def __init__(
        self,
        size_key: str | None = None,
        group_keys: Sequence[str] = (),
        monotone: int = 0,
        binned: Mapping[str, tuple[float, float, bool]] | None = None,
    ) -> None:
        self.size_key, self.group_keys, self.monotone = size_key, tuple(group_keys), monotone
        self.binned = dict(binned or {})  # continuous group keys, binned as the estimate bins them
        self.failed: dict[tuple[Any, ...], set[float]] = {}
        self.smallest_grokked: dict[tuple[Any, ...], float] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        from grokray.tune.results import pack_members

        done = result.get("stop_reason", "running") != "running"
        if not self.monotone or self.size_key is None:
            return done
        replicas = result.get("replicas") or {}
        members = pack_members(result.get("config") or {})
        per = int(result.get("per_config") or max(1, len(replicas) // max(1, len(members))))
        judged = []  # (records, size, group) of each config with a size
        for m, config in enumerate(members):
            if self.size_key not in config:
                continue
            records = [replicas[str(m * per + i)] for i in range(per) if str(m * per + i) in replicas]
            size, group = float(config[self.size_key]), self.group_of(config)
            judged.append((records, size, group))
            ended = bool(records) and all(r.get("stop_reason", "running") != "running" for r in records)
            if any(record.get("grokked") for record in records):
                self.smallest_grokked[group] = min(size, self.smallest_grokked.get(group, math.inf))
            elif (
                (done or ended)
                and records
                and all(r.get("stop_reason") == "budget" and not r.get("grok_unconfirmed") for r in records)
            ):  # a run above the threshold at the budget (unconfirmed) is no evidence of failure below it
                self.failed.setdefault(group, set()).add(size)
        if done:
            return True
        if not judged:
            return False
        # a trial stops once every config still training in it is dominated (a pack trains its
        # configs in one batch: one that is not dominated keeps them all training)
        running = [(records, size, group) for records, size, group in judged
                   if any(r.get("stop_reason", "running") == "running" for r in records)]  # fmt: skip
        if len(judged) < len(members) or not all(self.dominated(size, group) for _, size, group in running):
            return False
        for records, _, _ in running:
            for record in records:
                mark_dominated(record)
        return True

    def dominated(self, size: float, group: tuple[Any, ...]) -> bool:
        """Whether a config of ``size`` in ``group`` cannot grok by the monotone rule now."""
        ceiling = self.smallest_grokked.get(group, math.inf)
        return sum(size < f < ceiling for f in self.failed.get(group, ())) >= self.monotone

    def group_of(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The group of a trial: exact values, and the estimate's bin for continuous keys."""
        from grokray.analysis.critical import bin_label

        binned = getattr(self, "binned", {})  # a stopper pickled before binning existed has none
        return tuple(
            bin_label(config[key], binned[key])
            if key in binned and config.get(key) is not None
            else str(config.get(key))
            for key in self.group_keys
        )

    def stop_all(self) -> bool:
        return False


class FailFast(Callback, Stopper):
    """Ends the study when its first ``first`` configs to end (a pack that fails fails each of its
    configs) all failed (after their retries) with
    the same error and none has succeeded: a failure every trial will hit (a dataset that every
    trial rejects, a bug), not worth minutes of retries and tracebacks. The same object is the
    run's callback (it sees the errors) and one of its stoppers (``stop_all``). ``reason`` is the
    error's last line. A restored experiment unpickles the two roles apart: the rule is then off."""

    def __init__(self, first: int = 2) -> None:
        self.first, self.errors, self.succeeded, self.reason = first, [], False, None

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.succeeded = True

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from grokray.tune.callbacks import ended_before_failure, error_line
        from grokray.tune.results import pack_members

        # a pack's failure fails each of its configs but those that had ended before it (successes)
        members = len(pack_members(trial.config or {}))
        records = ((trial.last_result or {}).get("replicas") or {}).values()
        ended = sum(ended_before_failure(r) for r in records)
        per = max(1, len(records) // members) if records else 1
        if ended:
            self.succeeded = True
        self.errors.extend([error_line(trial)] * max(0, members - ended // per))
        if not self.succeeded and len(self.errors) >= self.first and len(set(self.errors)) == 1:
            self.reason = self.errors[0]

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.reason is not None
