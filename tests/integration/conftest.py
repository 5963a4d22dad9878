"""Fixtures of the integration tests: real services, started once per session and stopped by PID
(``tools/services.py`` starts them; the fault drills use the same code), and the smoke study
tracked on the real mlflow server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.helpers import SMOKE_ARGS, parent_run_id, run_grokray
from tests.paths import ROOT
from tools.services import MlflowServer, Postgres, ServiceMissing


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session."""
    try:
        server = Postgres.start()
    except ServiceMissing as missing:
        pytest.skip(str(missing))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres) -> Iterator[MlflowServer]:
    """An ``mlflow server`` on PostgreSQL (database ``mlflow``) for the whole session."""
    backend = postgres.create_database("mlflow")
    base = postgres.base_dir
    server = MlflowServer.start(
        backend, base.with_name(base.name + "-artifacts"), base.with_name(base.name + ".log")
    )
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.artifacts_dir, ignore_errors=True)
        server.log_path.unlink(missing_ok=True)


@dataclass
class SmokeStudy:
    workdir: Path
    tracking_uri: str
    parent_run_id: str
    stdout: str


@pytest.fixture(scope="session")
def server_smoke_study(mlflow_server: MlflowServer) -> Iterator[SmokeStudy]:
    """The smoke study (3 trials x 2 seeds, in-memory Optuna) tracked on the mlflow server."""
    workdir = Path(tempfile.mkdtemp(prefix="grokray-smoke-"))
    try:
        result = run_grokray(
            "run", str(ROOT / "studies/critical_size.py"), *SMOKE_ARGS, cwd=workdir,
            env={"MLFLOW_TRACKING_URI": mlflow_server.uri},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield SmokeStudy(workdir, mlflow_server.uri, parent_run_id(workdir), result.stdout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
