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
    scheduled = pool(
        namespace,
        schedules=[
            {"name": "tick", "cron": "*/5 * * * *", "task": "t", "payload": {"a": [1]}},
            {"name": "nightly", "cron": "0 3 * * MON-FRI", "task": "t", "timeZone": "Europe/Riga"},
            {"name": "hourly", "cron": "@hourly", "task": "t", "startingDeadline": "5m"},
        ],
    )
    code, output = create(crds, scheduled)
    assert code == 0, output
    # CEL states the shape only: a minute of 61 is the operator's to report (InvalidSpec).
    shaped = pool(namespace, schedules=[{"name": "a", "cron": "61 * * * *", "task": "t"}])
    code, output = create(crds, shaped)
    assert code == 0, output
    code, output = create(crds, monitor(namespace, selector={"matchLabels": {"team": "a"}}))
    assert code == 0, output


INVALID_POOLS: list[tuple[str, dict[str, Any], str]] = [
    ("min above max", {"replicas": {"min": 5, "max": 2}}, "spec.replicas.min"),
    (
        "override above max",
        {"replicas": {"min": 1, "max": 2, "override": 3}},
        "spec.replicas.override",
    ),
    ("negative min", {"replicas": {"min": -1, "max": 2}}, "spec.replicas.min"),
    (
        "negative concurrency",
        {"worker": {"handlers": "x", "concurrency": -1}},
        "spec.worker.concurrency",
    ),
    (
        "bad duration",
        {"worker": {"handlers": "x", "jobTimeout": "ten minutes"}},
        "spec.worker.jobTimeout",
    ),
    (
        "bad heartbeat duration",
        {"worker": {"handlers": "x", "heartbeatInterval": "5 s"}},
        "spec.worker.heartbeatInterval",
    ),
    ("unknown field", {"unknownField": 1}, "unknownField"),
    ("unknown nested field", {"worker": {"handlers": "x", "concurrancy": 2}}, "concurrancy"),
    ("wrong type", {"replicas": {"min": "two", "max": 3}}, "spec.replicas.min"),
    ("bad queue name", {"queue": "Bad Queue!"}, "spec.queue"),
    ("bad handlers", {"worker": {"handlers": "not a module"}}, "spec.worker.handlers"),
    ("log level enum", {"worker": {"handlers": "x", "logLevel": "LOUD"}}, "spec.worker.logLevel"),
    ("pull policy enum", {"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
    ("scale-up step", {"scaling": {"maxScaleUpStep": "lots"}}, "spec.scaling.maxScaleUpStep"),
    (
        "fallback above max",
        {"replicas": {"min": 1, "max": 2}, "scaling": {"fallbackReplicas": 5}},
        "spec.scaling.fallbackReplicas",
    ),
    ("reserved env", {"env": [{"name": "WORKERFLEET_DSN", "value": "x"}]}, "spec.env[0].name"),
    (
        "env value and valueFrom",
        {
            "env": [
                {
                    "name": "A",
                    "value": "1",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                }
            ]
        },
        "spec.env[0]",
    ),
    (
        "duplicate env",
        {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        "spec.env[1]",
    ),
    ("bad quantity", {"resources": {"requests": {"cpu": "lots"}}}, "spec.resources.requests.cpu"),
    (
        "max attempts zero",
        {"worker": {"handlers": "x", "maxAttempts": 0}},
        "spec.worker.maxAttempts",
    ),
    (
        "cron of four fields",
        {"schedules": [{"name": "a", "cron": "* * * *", "task": "t"}]},
        "spec.schedules[0].cron",
    ),
    (
        "cron macro unknown",
        {"schedules": [{"name": "a", "cron": "@often", "task": "t"}]},
        "spec.schedules[0].cron",
    ),
    (
        "time zone shape",
        {"schedules": [{"name": "a", "cron": "@daily", "task": "t", "timeZone": "../etc"}]},
        "spec.schedules[0].timeZone",
    ),
    (
        "duplicate schedule names",
        {
            "schedules": [
                {"name": "a", "cron": "@daily", "task": "t"},
                {"name": "a", "cron": "@hourly", "task": "u"},
            ]
        },
        "spec.schedules[1]",
    ),
    (
        "schedule name",
        {"schedules": [{"name": "Nightly!", "cron": "@daily", "task": "t"}]},
        "spec.schedules[0].name",
    ),
]


@pytest.mark.parametrize(
    ("case", "spec", "field"), INVALID_POOLS, ids=[c[0] for c in INVALID_POOLS]
)
def test_invalid_workerpools_are_refused_naming_the_field(
    crds: LocalCluster, namespace: str, case: str, spec: dict[str, Any], field: str
) -> None:
    code, output = create(crds, pool(namespace, **spec))
    assert code != 0, f"{case}: accepted"
    assert field in output, f"{case}: {output}"


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
