"""The autoscalers the benchmark compares, each sizing the same Deployment of the same
``workerfleet-worker`` pods (the Deployment the operator builds for the pool, with the
same env, handlers, probes and grace period) from the same queue:

- workerfleet: the operator serving the run's namespace and a WorkerPool;
- KEDA: a plain Deployment built from the same WorkerPool spec (no operator runs), a
  TriggerAuthentication and a ScaledObject with the ``postgresql`` trigger
  (localcluster/keda_manifests.py), driven by the KEDA that localcluster/keda.py runs
  and the controller-manager's HPA controller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from localcluster import keda_manifests
from localcluster.control_plane import LocalCluster
from localcluster.fixtures import run_ledger
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from workerfleet.durations import parse_duration
from workerfleet.operator import builders, models

POOL = "bench"
QUEUE = "bench"
SECRET = "queue-db"
MAX_REPLICAS = 20
JOBS_PER_WORKER = 10
CONCURRENCY = 10
SHUTDOWN_GRACE = "10s"
# After the queue empties, how long past a system's own scale-down delay to wait for min.
SETTLE_MARGIN_SECONDS = 120.0
KEDA_COOLDOWN_SECONDS = 300.0  # KEDA's default cooldownPeriod
START_TIMEOUT_SECONDS = 60.0
REACTION_QUANTILES = (0.5, 0.99)

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class RunSetup:
    """One run's namespace and queue database, shared by whichever system runs in it."""

    cluster: LocalCluster
    namespace: str
    dsn: str
    handlers_dir: Path
    logs: Path

    def apply(self, *objects: dict[str, Any]) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(items))

    def get_json(self, *args: str) -> dict[str, Any]:
        out = self.cluster.kubectl("get", *args, "-n", self.namespace, "-o", "json").stdout
        result: dict[str, Any] = json.loads(out)
        return result


def pool_spec(handlers_dir: Path, step: int, delay: str) -> dict[str, Any]:
    """The WorkerPool spec of every run; KEDA's Deployment is built from it too."""
    return {
        "image": "workerfleet-worker:bench",
        "queue": QUEUE,
        "database": {"secretRef": {"name": SECRET}},
        "replicas": {"min": 0, "max": MAX_REPLICAS},
        "scaling": {
            "jobsPerWorker": JOBS_PER_WORKER,
            "maxScaleUpStep": step,
            "scaleDownDelay": delay,
        },
        "worker": {
            "handlers": run_ledger.MODULE,
            "concurrency": CONCURRENCY,
            "shutdownGracePeriod": SHUTDOWN_GRACE,
        },
        "env": [
            {"name": "PYTHONPATH", "value": str(handlers_dir)},
            {
                "name": run_ledger.DSN_VARIABLE,
                "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "dsn"}},
            },
        ],
    }


def conditions_text(body: dict[str, Any], types: tuple[str, ...]) -> str:
    said = []
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") in types:
            said.append(
                f"{condition['type']}={condition.get('status')} {condition.get('reason', '')}: "
                f"{condition.get('message', '')}".strip()
            )
    return "; ".join(said) or "no conditions"


class System(Protocol):
    label: str

    def start(self, setup: RunSetup) -> None:
        """Create what sizes the pool; returns with the Deployment there at 0 replicas."""

    def settle_seconds(self) -> float:
        """How long after the queue empties the pool may take to get back to min."""

    def said(self) -> str:
        """What the system reports about its scaling right now, in its own words."""

    def figures(self) -> dict[str, Any]:
        """System-specific figures at the end of a run."""

    def stop(self) -> None: ...


class Workerfleet:
    def __init__(self, step: int, delay: str) -> None:
        self.step = step
        self.delay = delay
        self.label = f"workerfleet step {step}"
        self.operator: OperatorProcess | None = None
        self.setup: RunSetup | None = None

    def start(self, setup: RunSetup) -> None:
        self.setup = setup
        self.operator = OperatorProcess(
            setup.cluster.kubeconfig,
            setup.namespace,
            setup.logs / f"operator-{setup.namespace}.log",
        )
        self.operator.wait_ready()
        pool = {
            "apiVersion": models.API_VERSION,
            "kind": models.WORKERPOOL_KIND,
            "metadata": {"name": POOL, "namespace": setup.namespace},
            "spec": pool_spec(setup.handlers_dir, self.step, self.delay),
        }
        setup.apply(pool)
        wait_for(
            "the operator to LISTEN on the queue database",
            lambda: metric(self._samples(), "workerfleet_operator_listen_connections") >= 1,
            timeout=START_TIMEOUT_SECONDS,
        )

    def settle_seconds(self) -> float:
        return parse_duration(self.delay) + SETTLE_MARGIN_SECONDS

    def said(self) -> str:
        assert self.setup is not None
        pool = self.setup.get_json("workerpool", POOL)
        return conditions_text(pool, ("QueueReachable", "Scaling"))

    def figures(self) -> dict[str, Any]:
        samples = self._samples()
        name = "workerfleet_operator_scale_reaction_seconds"
        buckets = [
            (float(labels["le"]), value) for labels, value in samples.get(f"{name}_bucket", [])
        ]
        return {
            "drains_timed_out": metric(
                samples, "workerfleet_operator_drains_total", outcome="timed_out"
            ),
            "operator_interrupted": metric(
                samples, "workerfleet_operator_scale_in_interrupted_jobs_total"
            ),
            "reaction": {
                f"p{round(q * 100)}": histogram_quantile(q, buckets) for q in REACTION_QUANTILES
            },
            "reaction_count": metric(samples, f"{name}_count"),
        }

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()

    def _samples(self) -> Samples:
        assert self.operator is not None
        _, body = self.operator.get("/metrics")
        found: Samples = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return found


class KedaSystem:
    def __init__(self, tuning: keda_manifests.Tuning, delay: str) -> None:
        self.tuning = tuning
        self.delay = delay
        self.label = tuning.label
        self.setup: RunSetup | None = None

    def start(self, setup: RunSetup) -> None:
        self.setup = setup
        spec = models.WorkerPoolSpec.model_validate(
            pool_spec(setup.handlers_dir, MAX_REPLICAS, self.delay)
        )
        # The objects the operator would own, owned by nothing: no operator runs here.
        owner = builders.Owner(POOL, setup.namespace, uid="none")
        deployment = builders.deployment(spec, owner, replicas=0)
        account = builders.worker_service_account(owner)
        for manifest in (deployment, account):
            del manifest["metadata"]["ownerReferences"]
        setup.apply(
            account,
            deployment,
            keda_manifests.trigger_authentication(setup.namespace, SECRET, SECRET, "dsn"),
            keda_manifests.scaled_object(
                setup.namespace,
                POOL,
                POOL,
                QUEUE,
                JOBS_PER_WORKER,
                (0, MAX_REPLICAS),
                SECRET,
                self.tuning,
            ),
        )
        wait_for(
            f"ScaledObject {POOL} to be Ready",
            lambda: "Ready=True" in self._scaled_object_said(),
            timeout=START_TIMEOUT_SECONDS,
            describe=self._scaled_object_said,
        )

    def settle_seconds(self) -> float:
        return KEDA_COOLDOWN_SECONDS + SETTLE_MARGIN_SECONDS

    def said(self) -> str:
        assert self.setup is not None
        hpa = self.setup.get_json("hpa", keda_manifests.hpa_name(POOL))
        return (
            f"ScaledObject {self._scaled_object_said()} | "
            f"HPA {conditions_text(hpa, ('AbleToScale', 'ScalingActive'))}"
        )

    def figures(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        return None

    def _scaled_object_said(self) -> str:
        assert self.setup is not None
        body = self.setup.get_json("scaledobject", POOL)
        return conditions_text(body, ("Ready", "Active"))


# -- the operator's metrics -----------------------------------------------------------------------


def metric(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower
