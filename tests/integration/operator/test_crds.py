"""The CRDs install and become Established; the API server itself refuses bad specs, naming
the field (the corpus of bad specs by class of mistake: test_spec_corpus.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from tests.operator_support import workerpool

pytestmark = pytest.mark.cluster


def create(cluster: LocalCluster, manifest: dict[str, Any]) -> tuple[int, str]:
    """Server-side dry-run create with strict field validation (kubectl's default)."""
    result = cluster.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    return result.returncode, result.stderr + result.stdout


def pool(namespace: str, **spec: Any) -> dict[str, Any]:
    return workerpool("pool", namespace, "jobs", **spec)


def without(manifest: dict[str, Any], *path: str) -> dict[str, Any]:
    target = manifest
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return manifest


def monitor(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "workerfleet.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": "mon", "namespace": namespace},
        "spec": spec,
    }


def test_crds_are_established(crds: LocalCluster) -> None:
    for name in ("workerpools.workerfleet.dev", "monitors.workerfleet.dev"):
        crd = json.loads(crds.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True", name
        assert conditions.get("NamesAccepted") == "True", name
    categories = crds.kubectl("get", "workerfleet", "-A").returncode
    assert categories == 0


def test_valid_specs_are_accepted(crds: LocalCluster, namespace: str) -> None:
    code, output = create(crds, pool(namespace))
    assert code == 0, output
    for interval in ("1s", "1500ms", "1", "2.5", "1m30s", "1d"):
        code, output = create(crds, pool(namespace, scaling={"pollInterval": interval}))
        assert code == 0, f"pollInterval {interval}: {output}"
    code, output = create(crds, monitor(namespace, selector={"matchLabels": {"team": "a"}}))
    assert code == 0, output


def test_missing_required_fields_are_named(crds: LocalCluster, namespace: str) -> None:
    for path, field in (
        (("spec", "queue"), "spec.queue"),
        (("spec", "database"), "spec.database"),
        (("spec", "worker", "handlers"), "spec.worker.handlers"),
        (("spec", "image"), "spec.image"),
    ):
        code, output = create(crds, without(pool(namespace), *path))
        assert code != 0, field
        assert field in output, output
        assert "Required" in output, output


def test_pool_name_too_long_for_its_service(crds: LocalCluster, namespace: str) -> None:
    manifest = pool(namespace)
    manifest["metadata"]["name"] = "p" * 60
    code, output = create(crds, manifest)
    assert code != 0
    assert "metadata.name" in output
