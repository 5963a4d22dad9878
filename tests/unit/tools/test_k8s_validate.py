"""The offline manifest validator's schema rules and the repository's CRD copy."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.paths import ROOT as REPO
from tools import k8s_validate
from tools.k8s_validate import strict_crd_schema

K8S = REPO / "k8s"


def test_strict_crd_schema_rejects_unknown_fields_except_where_preserved() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"x-kubernetes-int-or-string": True, "type": "string"},
                    "free": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                        "properties": {},
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        },
    }
    strict = strict_crd_schema(schema)
    assert strict["additionalProperties"] is False
    assert strict["properties"]["spec"]["additionalProperties"] is False
    assert strict["properties"]["spec"]["properties"]["size"]["anyOf"] == [
        {"type": "integer"},
        {"type": "string"},
    ]
    assert "type" not in strict["properties"]["spec"]["properties"]["size"]
    assert "additionalProperties" not in strict["properties"]["spec"]["properties"]["free"]
    assert strict["properties"]["spec"]["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in schema  # the input is left alone
    ok = {"spec": {"size": 3, "free": {"anything": 1}, "labels": {"a": "b"}}}
    assert k8s_validate.schema_errors(strict, ok) == []
    bad = {"spec": {"size": 1.5, "extra": 1}}
    assert k8s_validate.schema_errors(strict, bad) == [
        "spec.extra: unknown field",
        "spec.size: 1.5 is not valid under any of the given schemas",
    ]


def test_crds_in_the_repo_are_the_shared_v1_7_copy() -> None:
    shared = REPO.parent / "shared" / "kuberay-crds" / "v1.7.0"
    if not shared.is_dir():  # a clone outside the workspace; the manifests are still validated
        # against the repository's copy by tests/integration/test_k8s.py
        pytest.skip(f"{shared} is not here (only the repository's copy in k8s/crds is)")
    for name in ("ray.io_rayjobs.yaml", "ray.io_rayclusters.yaml"):
        assert (K8S / "crds" / name).read_bytes() == (shared / name).read_bytes(), name


def test_env_files_with_credentials_are_ignored_by_git() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("k8s/base/secrets/postgres.env", "k8s/base/secrets/s3.env"):
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
        assert done.returncode == 0, f"{path} is not ignored by git"
    for example in ("k8s/base/secrets/postgres.env.example", "k8s/base/secrets/s3.env.example"):
        assert (REPO / example).is_file()
