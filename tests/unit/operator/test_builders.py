from __future__ import annotations

from typing import Any

from tests.unit.operator.conftest import spec_dict
from workerfleet.operator import builders, models


def build(owner: builders.Owner, replicas: int = 2, **overrides: Any) -> dict[str, Any]:
    spec = models.WorkerPoolSpec.model_validate(spec_dict(**overrides))
    return builders.deployment(spec, owner, replicas)


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    (worker,) = [c for c in containers if c["name"] == "worker"]
    return worker


def env_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


def test_deployment_identity_labels_selector_and_owner(owner: builders.Owner) -> None:
    manifest = build(owner, replicas=3)
    meta = manifest["metadata"]
    assert (meta["name"], meta["namespace"]) == ("emails", "mail")
    assert manifest["spec"]["replicas"] == 3
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "workerfleet-worker",
        "workerfleet.dev/pool": "emails",
    }
    assert selector.items() <= manifest["spec"]["template"]["metadata"]["labels"].items()
    (ref,) = meta["ownerReferences"]
    assert ref == {
        "apiVersion": "workerfleet.dev/v1alpha1",
        "kind": "WorkerPool",
        "name": "emails",
        "uid": "1234-abcd",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_worker_command_ports_and_probes(owner: builders.Owner) -> None:
    worker = container(build(owner))
    assert worker["command"] == ["workerfleet-worker"]
    assert worker["image"] == "workerfleet-worker:0.1.0"
    assert worker["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert worker["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": 8080,
        "scheme": "HTTP",
    }
    assert worker["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": 8080,
        "scheme": "HTTP",
    }


def test_env_carries_the_worker_contract(owner: builders.Owner) -> None:
    env = env_of(
        build(
            owner,
            worker={"handlers": "acme.jobs", "concurrency": 8, "leaseDuration": "45s"},
            env=[{"name": "EXTRA", "value": "1"}],
        )
    )
    assert env["WORKERFLEET_DSN"] == {"secretKeyRef": {"name": "queue-db", "key": "dsn"}}
    assert env["WORKERFLEET_QUEUES"] == "emails"
    assert env["WORKERFLEET_POOL"] == "mail/emails"
    assert env["WORKERFLEET_HANDLERS"] == "acme.jobs"
    assert env["WORKERFLEET_CONCURRENCY"] == "8"
    assert env["WORKERFLEET_LEASE_DURATION"] == "45s"
    assert env["WORKERFLEET_SHUTDOWN_GRACE"] == "30s"
    assert env["WORKERFLEET_HEALTH_PORT"] == "8080"
    assert env["WORKERFLEET_MIGRATE"] == "true"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["EXTRA"] == "1"


def test_lease_is_left_to_the_worker_default_when_unset(owner: builders.Owner) -> None:
    assert "WORKERFLEET_LEASE_DURATION" not in env_of(build(owner))


def test_env_names_match_the_worker_settings(owner: builders.Owner) -> None:
    from workerfleet.worker.config import WorkerSettings

    aliases = {f.alias for f in WorkerSettings.model_fields.values()}
    assert set(env_of(build(owner))) <= aliases


def test_restricted_pod_security(owner: builders.Owner) -> None:
    pod = build(owner)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == builders.WORKER_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(build(owner))["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False


def test_workers_run_as_the_pools_own_account_without_a_token(owner: builders.Owner) -> None:
    pod = build(owner)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "emails-worker"
    assert pod["automountServiceAccountToken"] is False
    account = builders.worker_service_account(owner)
    assert (account["kind"], account["metadata"]["name"]) == ("ServiceAccount", "emails-worker")
    assert account["metadata"]["namespace"] == "mail"
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["ownerReferences"][0]["uid"] == "1234-abcd"


def test_the_template_may_ask_for_api_access(owner: builders.Owner) -> None:
    template = {"spec": {"serviceAccountName": "reporter", "automountServiceAccountToken": True}}
    spec = models.WorkerPoolSpec.model_validate(spec_dict(template=template))
    pod = builders.deployment(spec, owner, 1)["spec"]["template"]["spec"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("reporter", True)
    assert builders.template_service_account(spec) == "reporter"
    default = models.WorkerPoolSpec.model_validate(spec_dict())
    assert builders.template_service_account(default) is None


def test_termination_grace_is_shutdown_grace_plus_margin(owner: builders.Owner) -> None:
    manifest = build(owner, worker={"handlers": "x", "shutdownGracePeriod": "1m30s"})
    grace = manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == 90 + builders.TERMINATION_MARGIN_SECONDS


def test_resources_are_rendered_as_strings(owner: builders.Owner) -> None:
    worker = container(build(owner, resources={"requests": {"cpu": 1}, "limits": {}}))
    assert worker["resources"] == {"requests": {"cpu": "1"}}


def test_template_overrides_merge_by_name_and_keep_selector(owner: builders.Owner) -> None:
    manifest = build(
        owner,
        template={
            "metadata": {"labels": {"team": "mail", "workerfleet.dev/pool": "hijack"}},
            "spec": {
                "nodeSelector": {"disk": "ssd"},
                "containers": [
                    {"name": "worker", "env": [{"name": "WORKERFLEET_CONCURRENCY", "value": "9"}]},
                    {"name": "sidecar", "image": "busybox"},
                ],
            },
        },
    )
    template = manifest["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "mail"
    assert template["metadata"]["labels"]["workerfleet.dev/pool"] == "emails"
    assert template["spec"]["nodeSelector"] == {"disk": "ssd"}
    names = [c["name"] for c in template["spec"]["containers"]]
    assert names == ["worker", "sidecar"]
    worker = container(manifest)
    assert worker["command"] == ["workerfleet-worker"]
    assert env_of(manifest)["WORKERFLEET_CONCURRENCY"] == "9"


def test_deep_merge_replaces_scalars_and_unnamed_lists() -> None:
    merged = builders.deep_merge({"a": [1, 2], "b": {"c": 1, "d": 2}}, {"a": [3], "b": {"d": 5}})
    assert merged == {"a": [3], "b": {"c": 1, "d": 5}}


def test_spec_hash_ignores_replicas_but_not_the_template(owner: builders.Owner) -> None:
    base = build(owner, replicas=1)
    assert builders.spec_hash(base) == builders.spec_hash(build(owner, replicas=7))
    assert base["metadata"]["annotations"][builders.SPEC_HASH_ANNOTATION] == builders.spec_hash(
        base
    )
    changed = build(
        owner, worker={"handlers": "workerfleet.worker.demo_handlers", "concurrency": 5}
    )
    assert builders.spec_hash(changed) != builders.spec_hash(base)
    image = build(owner, image="workerfleet-worker:0.2.0")
    assert builders.spec_hash(image) != builders.spec_hash(base)


def test_metrics_service(owner: builders.Owner) -> None:
    service = builders.metrics_service(owner)
    assert service["metadata"]["name"] == "emails-metrics"
    assert service["spec"]["selector"] == builders.selector_labels("emails")
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["metadata"]["ownerReferences"][0]["uid"] == "1234-abcd"


def test_selector_string_matches_labels() -> None:
    assert (
        builders.selector_string("p")
        == "app.kubernetes.io/name=workerfleet-worker,workerfleet.dev/pool=p"
    )
