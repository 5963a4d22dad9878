"""MLflow: one experiment per study, a parent run per ``grokray run``, a child run per trial.

No Ray here: the Tune callback (``grokray/tune/callbacks.py``) calls these methods from the driver.
Metrics go out with ``log_batch`` (one call per flush, not one per metric). Every run this module starts is
ended by it: ``finish_open_runs`` marks any child still RUNNING as KILLED when a study stops.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Collection, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri
from sqlalchemy import event
from sqlalchemy.engine import Engine

from grokray import settings
from grokray.crash import pid_alive

BASIC_CURVES = ("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")  # every record has these
TRIAL_TAG = "ray.key"
RUN_KEY_TAG = "grokray.run_key"  # Tune trial id + replica: the key of one child run
ROLE_TAG = "grokray.role"
#: a child run's config (its applicable values, seed included) as a hash: the run's identity, whichever
#: Tune trial trains it (``grokray.tune.results.config_key``)
CONFIG_TAG = "grokray.config_key"
CONTINUED_TAG = "grokray.continued_from"  # the run key a run had before a restored study continued it
SUPERSEDED_TAG = "grokray.superseded"  # a run left by a killed driver whose config was not proposed again
#: MLflow 3's experiment kind: without it the UI opens a study on its GenAI overview (traces)
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the description the UI shows of an experiment or a run
STUDY_FILE_TAG = "grokray.study_file"  # experiment tag: the basename of the study file that owns the name
DRIVER_TAG = "grokray.driver"  # parent run tag: HOST:PID of the driver that runs it now
MAX_BATCH = 900  # MLflow accepts 1000 metrics per log_batch


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """SQLite stores (the embedded tracking database, an Optuna file) in write-ahead-log mode with
    ``synchronous=NORMAL``: a commit appends to the log and no longer syncs the file twice, the
    cheaper the more runs a study writes (four calls per run). A killed process loses nothing
    committed (a power cut may lose the last commits; the study resumes from Tune's snapshot)."""
    import sqlite3

    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError:  # read-only or locked: the default journal is fine
            pass
        finally:
            cursor.close()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite file in the working directory."""
    return settings.current().tracking_uri


def _clean(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def ensure_store(uri: str) -> None:
    """Create a missing SQLite tracking database whole, or not at all.

    MLflow creates its SQLite schema on first use, in a few dozen Alembic migrations. A driver killed
    inside them leaves a half-migrated file (``_alembic_tmp_experiments already exists`` on the next
    start), and the study could not be resumed. So a missing database is migrated under a temporary
    name beside it and linked into place only when complete; a kill leaves no file or a whole one.
    Other URIs (a server, PostgreSQL, an existing file) are left alone.
    """
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if str(path) == ":memory:" or path.exists():
        return
    # MLflow's own constructor for a sqlite URI, so the Default experiment gets the artifact root
    # MLflow would have given it
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    store = _get_sqlalchemy_store(f"sqlite:///{tmp}", None)
    store.engine.dispose()
    try:
        os.link(tmp, path)  # fails if another process made it meanwhile: theirs is kept
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    for left in path.parent.glob(f".{path.name}.creating-*"):  # left by a driver killed while creating
        pid = left.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            left.unlink(missing_ok=True)


def _driver() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


class StudyTracker:
    """Owns the study's MLflow experiment and parent run, and the trials' child runs."""

    def __init__(self, study_name: str, uri: str | None = None) -> None:
        self.uri = uri or tracking_uri()
        ensure_store(self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        experiment = self.client.get_experiment_by_name(study_name)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                study_name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
            )
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id
        self.study_name = study_name
        self.parent_run_id: str | None = None
        self._pending: dict[str, list[Metric]] = {}
        self._child_runs: dict[str, str] = {}  # run key -> run id
        self._by_config: dict[str, list[str]] = {}  # config key -> run ids
        self._trial_of: dict[str, str] = {}  # run id -> the Tune trial id it belongs to
        #: run id -> its artifact location, as the store gave it when the run was created or found:
        #: ``end_trial`` writes there without ``log_artifacts``' look-up of the run (a ``get_run``,
        #: a sixth of a tiny run's tracking time)
        self._artifact_uris: dict[str, str] = {}
        self.parent_start_ms: int | None = None
        self.ended_at_attach = 0  # child runs already ended when this driver attached (a resume)

    # -- the study's parent run ----------------------------------------------------------------

    def start_study(self, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Create the parent run of one ``grokray run``."""
        name = f"{self.study_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = self.client.create_run(
            self.experiment_id,
            tags={ROLE_TAG: "study", "mlflow.runName": name, DRIVER_TAG: _driver(), **tags},
        )
        self.parent_run_id = run.info.run_id
        self.client.log_batch(
            self.parent_run_id, params=[Param(k, _clean(v)[:6000]) for k, v in params.items()]
        )
        return self.parent_run_id

    def reopen_study(self, run_id: str) -> None:
        """Resume: the same parent run goes back to RUNNING."""
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, DRIVER_TAG, _driver())
        self.attach(run_id)

    def abandoned_study(self, fingerprint: str) -> str | None:
        """The parent run of this very study (``fingerprint``) that a driver on this machine
        created and died with before it saved the run's state file (a kill in the moment between
        the two): still RUNNING, its driver process gone. The next run continues it rather than
        leaving it RUNNING beside a second parent run."""
        import socket

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'study' and attributes.status = 'RUNNING' "
            f"and tags.`grokray.fingerprint` = '{fingerprint}'",
        )
        for run in runs:
            host, _, pid = run.data.tags.get(DRIVER_TAG, "").rpartition(":")
            if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
                return run.info.run_id
        return None

    def attach(self, run_id: str) -> None:
        """Work under an existing parent run; its child runs are found again by trial id."""
        self.parent_run_id = run_id
        self.parent_start_ms = self.client.get_run(run_id).info.start_time
        for run in self._children():
            key = run.data.tags.get(RUN_KEY_TAG)
            if key:
                self._register(run.info.run_id, key, run.data.tags)
                self._artifact_uris[run.info.run_id] = run.info.artifact_uri
                self.ended_at_attach += run.info.status != RunStatus.to_string(RunStatus.RUNNING)

    def _register(self, run_id: str, key: str, tags: Mapping[str, str]) -> None:
        self._child_runs[key] = run_id
        self._trial_of[run_id] = tags.get("ray.trial_id", "")
        if tags.get(CONFIG_TAG) and run_id not in self._by_config.setdefault(tags[CONFIG_TAG], []):
            self._by_config[tags[CONFIG_TAG]].append(run_id)

    def _orphan(self, config_key: str | None, live: Collection[str]) -> str | None:
        """A child run of this config whose Tune trial the (restored) experiment does not know: a
        trial the killed driver had started after Tune's last snapshot of the experiment."""
        for run_id in self._by_config.get(config_key or "", []):
            if self._trial_of.get(run_id) not in live:
                return run_id
        return None

    def end_study(self, status: str) -> None:
        """End every open child run, then the parent, with ``status`` (FINISHED/FAILED/KILLED)."""
        self.finish_open_runs("KILLED" if status != "FINISHED" else "FAILED")
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status)

    def log_study_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        assert self.parent_run_id is not None
        self.client.log_artifact(self.parent_run_id, str(path), artifact_path)

    def log_study_metrics(self, values: Mapping[str, float]) -> None:
        assert self.parent_run_id is not None
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if _finite(v)]
        if metrics:
            self.client.log_batch(self.parent_run_id, metrics=metrics)

    def set_study_tags(self, tags: Mapping[str, Any]) -> None:
        assert self.parent_run_id is not None
        self.client.log_batch(self.parent_run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    # -- the trials' child runs ----------------------------------------------------------------

    def _children(self, running: bool = False, page_size: int = 5000) -> list[Any]:
        """The parent's child runs (all of them, page by page: a study may have more than a
        search returns at once), or only those still RUNNING."""
        where = f"tags.mlflow.parentRunId = '{self.parent_run_id}'"
        if running:
            where += " and attributes.status = 'RUNNING'"
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=where, max_results=page_size, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def start_trial(
        self,
        key: str,
        name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        *,
        config_key: str | None = None,
        live: Collection[str] = (),
        start_time: int | None = None,
    ) -> int:
        """Open the child run ``key``: found again by its run-key tag; else the run of the same
        config that a killed driver left to a trial the restored experiment does not know (``live``:
        the trial ids it knows), continued under the new key; else created (at ``start_time``, ms,
        default now).

        Returns the last step the run already has metrics for (-1 for a new run), so that a
        restarted trial does not log the same steps twice.
        """
        tags = dict(tags or {})
        run_id = self._child_runs.get(key)
        orphan = self._orphan(config_key, live) if run_id is None else None
        if orphan is not None:  # one run per config and seed, never a second one beside it
            old_key = next(k for k, r in self._child_runs.items() if r == orphan)
            del self._child_runs[old_key]
            retag = {
                **tags,
                TRIAL_TAG: key,
                RUN_KEY_TAG: key,
                CONTINUED_TAG: old_key,
                SUPERSEDED_TAG: "false",  # continued now, if an interrupted study had set it aside
                "mlflow.runName": name,
            }
            self.client.log_batch(orphan, tags=[RunTag(k, v) for k, v in retag.items()])
            self._register(orphan, key, {**retag, CONFIG_TAG: config_key or ""})
            run_id = orphan
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "val_acc")
            return max((m.step for m in history), default=-1)
        all_tags = {
            "mlflow.parentRunId": self.parent_run_id or "",
            TRIAL_TAG: key,
            RUN_KEY_TAG: key,
            ROLE_TAG: "trial",
            "mlflow.runName": name,
            **({CONFIG_TAG: config_key} if config_key else {}),
            **tags,
        }
        run = self.client.create_run(self.experiment_id, start_time=start_time, tags=all_tags)
        run_id = run.info.run_id
        self._register(run_id, key, all_tags)
        self._artifact_uris[run_id] = run.info.artifact_uri
        self.client.log_batch(run_id, params=[Param(k, _clean(v)) for k, v in params.items()])
        return -1

    def supersede_orphans(self, live: Collection[str]) -> int:
        """At the end of a study: mark the child runs of trials the experiment does not know (a
        killed driver's, whose config was not proposed again) superseded, ended KILLED; they are
        left out wherever runs are counted. Returns how many."""
        count = 0
        for run_id in list(self._child_runs.values()):
            if self._trial_of.get(run_id) not in live:
                self.client.log_batch(run_id, tags=[RunTag(SUPERSEDED_TAG, "true")])
                self.client.set_terminated(run_id, "KILLED")
                count += 1
        return count

    def log_trial_metrics(
        self, key: str, record: Mapping[str, Any], keys: Iterable[str] = BASIC_CURVES
    ) -> None:
        """Queue the curve values of one evaluation record; sent by ``flush``."""
        step, now = int(record["step"]), int(time.time() * 1000)
        queue = self._pending.setdefault(key, [])
        for key in keys:
            value = record.get(key)
            if _finite(value):
                queue.append(Metric(key, float(value), now, step))

    def flush(self, key: str | None = None) -> None:
        """Send queued metrics; a batch leaves the queue only once the server has taken it."""
        for k in [key] if key else list(self._pending):
            run_id = self._child_runs.get(k)
            queue = self._pending.get(k, [])
            while run_id is not None and queue:
                # a batch ends at a step boundary: a kill between batches leaves whole evaluations
                # (the last step of val_acc tells a restarted trial where to continue)
                cut = min(MAX_BATCH, len(queue))
                while cut < len(queue) and cut > 1 and queue[cut].step == queue[cut - 1].step:
                    cut -= 1
                self.client.log_batch(run_id, metrics=queue[:cut])
                del queue[:cut]

    def end_trial(
        self,
        key: str,
        outcome: Mapping[str, Any],
        curves: pd.DataFrame | None,
        status: str = "FINISHED",
        error: str | None = None,
        folder: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        """Tag the outcome, attach the curves as Parquet with the files of ``folder`` (the run's
        ``weights.pt``, its figure), rename it with its outcome, and end the child run: two
        calls (the queued metrics go with the outcome) and a write to the run's artifact root, the
        most a 10,000-run study can afford."""
        run_id = self._child_runs.get(key)
        if run_id is None:
            return
        tags = [
            RunTag(k, str(outcome.get(k)))
            for k in (
                "grokked",
                "phase",
                "stop_reason",
                "memorization_step",
                "grokking_step",
                "grokking_delay",
                "grok_unconfirmed",
            )
            if k in outcome
        ]
        if error:
            tags.append(RunTag("error", error[:4000]))
        if name:
            tags.append(RunTag("mlflow.runName", name))
        metrics = [
            Metric(k, float(outcome[k]), int(time.time() * 1000), int(outcome.get("steps_run") or 0))
            for k in ("memorization_step", "grokking_step", "grokking_delay", "steps_run")
            if _finite(outcome.get(k))
        ]
        queue = self._pending.get(key, [])
        if len(queue) + len(metrics) > MAX_BATCH:
            self.flush(key)
        self.client.log_batch(run_id, metrics=queue + metrics, tags=tags)
        del queue[:]
        with nullcontext(folder) if folder is not None else tempfile.TemporaryDirectory() as path:
            where = Path(path)
            if curves is not None and len(curves):
                pq.write_table(pa.Table.from_pandas(curves, preserve_index=False), where / "curves.parquet")
            if any(where.iterdir()):
                self._log_artifacts(run_id, where)
        self.client.set_terminated(run_id, status)

    def _log_artifacts(self, run_id: str, folder: Path) -> None:
        """The files of ``folder`` into the run's artifact root, through MLflow's artifact repository
        for the location the run was created with (the one ``log_artifacts`` would look up)."""
        location = self._artifact_uris.get(run_id)
        if location is None:
            self.client.log_artifacts(run_id, str(folder))
            return
        location = add_databricks_profile_info_to_artifact_uri(location, self.uri)
        get_artifact_repository(location, tracking_uri=self.uri).log_artifacts(str(folder))

    def finish_open_runs(self, status: str = "KILLED") -> int:
        """End every child of the parent still RUNNING; returns how many."""
        if self.parent_run_id is None:
            return 0
        self.flush()
        count = 0
        for run in self._children(running=True):
            self.client.set_terminated(run.info.run_id, status)
            count += 1
        return count


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_reachable(uri: str | None = None, timeout: float = 5.0) -> None:
    """Fail fast (``ConnectionError``) when an HTTP tracking server does not answer ``/health``,
    instead of MLflow's minutes of retries; file and database URIs are left to MLflow."""
    import urllib.error
    import urllib.request

    uri = uri or tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status != 200:
                raise ConnectionError(f"{uri}/health answered HTTP {response.status}")
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(f"no MLflow tracking server answers at {uri} ({reason})") from None


def claim_study_name(study_name: str, study_file: str, uri: str | None = None, description: str = "") -> None:
    """The duplicate-name rule: a study name (its MLflow experiment) belongs to one study file.

    The experiment is created here, on the driver, tagged with the study file's basename. Running
    the same file again (edited, or with ``--set``) is a new parent run under it; another file that
    uses the same name is refused with ``StudyError`` (exit 2) before anything starts. An experiment
    without the tag (made before the rule, or by hand) is accepted and tagged. The experiment is
    marked as model training (the UI opens on its runs) and described by the study's docstring.
    """
    from grokray.config import StudyError

    uri = uri or tracking_uri()
    ensure_store(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study_name)
    tags = {STUDY_FILE_TAG: study_file, EXPERIMENT_KIND_TAG: MODEL_TRAINING}
    if description:
        tags[NOTE_TAG] = description
    if experiment is None:
        client.create_experiment(study_name, tags=tags)
        return
    owner = experiment.tags.get(STUDY_FILE_TAG)
    if owner is not None and owner != study_file:
        raise StudyError(
            "name",
            f"study {study_name!r} already exists in MLflow (from {owner}); "
            "rename the study in this file or use that file",
        )
    for key, value in tags.items():  # an experiment from before a tag existed, or made by hand
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)


def jsonable(value: Any) -> Any:
    """Strict JSON values: NaN/inf (an estimate that is not identifiable) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return value


def latest_study_run(study_name: str, uri: str | None = None) -> tuple[MlflowClient, Any]:
    """The newest parent run of ``study_name`` that has an estimate; raises LookupError if none."""
    uri = uri or tracking_uri()
    database = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if database and database != ":memory:" and not Path(database).exists():  # do not create it
        raise LookupError(f"no study named {study_name!r} in {uri}; found: none (no such database)")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        names = [e.name for e in study_experiments(client)]
        raise LookupError(
            f"no study named {study_name!r} in {uri or tracking_uri()}; found: {', '.join(names) or 'none'}"
        )
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'study' and tags.`grokray.has_estimate` = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise LookupError(f"study {study_name!r} has no finished run with an estimate yet")
    return client, runs[0]


def study_experiments(client: MlflowClient) -> list[Any]:
    """The experiments grokray made for studies (tagged with their study file), not MLflow's
    ``Default`` or anyone else's."""
    return [e for e in client.search_experiments() if STUDY_FILE_TAG in e.tags]


def study_links(base_url: str, uri: str | None = None) -> list[tuple[str, str]]:
    """(study, URL of its runs in the MLflow UI at ``base_url``), one per study experiment."""
    uri = uri or tracking_uri()
    database = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if database and not Path(database).exists():  # do not create it
        return []
    client = MlflowClient(uri)
    base = base_url.rstrip("/")
    return [(e.name, f"{base}/#/experiments/{e.experiment_id}/runs") for e in study_experiments(client)]


def load_estimate(study_name: str, uri: str | None = None) -> dict[str, Any]:
    """The estimate JSON of the newest finished run of ``study_name``."""
    client, run = latest_study_run(study_name, uri)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no bar
        path = client.download_artifacts(run.info.run_id, "estimate.json", tmp)
        payload = json.loads(Path(path).read_text())
    payload["run_id"] = run.info.run_id
    return payload
