"""Specs as users get them wrong, by class of mistake, and edge cases that are right.

One corpus, two tiers: ``tests/unit/operator/test_spec_corpus.py`` proves the
operator's Python twin refuses every bad spec naming the field, and
``tests/integration/operator/test_spec_corpus.py`` proves the real API server
refuses the same specs at admission, naming the same field. Both accept every
good spec, so the two never disagree in either direction.

A case's ``spec`` is merged over a valid base spec (dicts merge key by key, one
level down; ``REMOVED`` deletes a key); ``field`` is the path the refusal must
name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["WorkerPool", "Monitor"]
REMOVED: Any = object()
POOL_NAME = "pool"

POOL_BASE: dict[str, Any] = {
    "image": "workerfleet-worker:test",
    "queue": "jobs",
    "database": {"secretRef": {"name": "queue-db"}},
    "worker": {"handlers": "acme.jobs"},
}
MONITOR_BASE: dict[str, Any] = {}


@dataclass(frozen=True)
class Case:
    mistake: str
    """The class of mistake (see MISTAKES)."""
    case: str
    kind: Kind
    spec: dict[str, Any]
    field: str = ""
    """The path the refusal names (empty for a good spec)."""
    name: str = POOL_NAME

    @property
    def id(self) -> str:
        return f"{self.mistake}: {self.case}"

    def full_spec(self) -> dict[str, Any]:
        base = POOL_BASE if self.kind == "WorkerPool" else MONITOR_BASE
        merged = copy.deepcopy(base)
        for key, value in self.spec.items():
            if value is REMOVED:
                merged.pop(key, None)
            elif isinstance(value, dict) and isinstance(merged.get(key), dict):
                inner = {**merged[key], **value}
                merged[key] = {k: copy.deepcopy(v) for k, v in inner.items() if v is not REMOVED}
            else:
                merged[key] = copy.deepcopy(value)
        return merged

    def manifest(self, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "workerfleet.dev/v1alpha1",
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": namespace},
            "spec": self.full_spec(),
        }


def pool(mistake: str, case: str, spec: dict[str, Any], field: str, **kw: Any) -> Case:
    return Case(mistake, case, "WorkerPool", spec, field, **kw)


def monitor(mistake: str, case: str, spec: dict[str, Any], field: str) -> Case:
    return Case(mistake, case, "Monitor", spec, field)


def worker(**settings: Any) -> dict[str, Any]:
    return {"worker": settings}


MISTAKES = {
    "structure": "unknown or misspelled fields, wrong types, missing required fields",
    "bounds": "numbers out of range, and minimums above maximums",
    "names": "names and patterns: queues, handlers, images, env names, the pool's name",
    "duration grammar": "durations that are not durations",
    "zero duration": "zero where zero cannot work",
    "duration order": "durations that contradict each other",
    "resources": "quantities, resource names, requests against limits",
    "selector": "label selectors that do not select what they say",
    "enums": "values outside a fixed set",
    "env": "extra environment variables that clash",
}

BAD: list[Case] = [
    # -- structure
    pool("structure", "unknown field", {"unknownField": 1}, "unknownField"),
    pool("structure", "misspelled nested field", worker(concurrancy=2), "concurrancy"),
    pool("structure", "string for a number", {"replicas": {"min": "two"}}, "spec.replicas.min"),
    pool("structure", "string for a boolean", {"paused": "yes"}, "spec.paused"),
    pool("structure", "list for an object", {"scaling": [1]}, "spec.scaling"),
    pool("structure", "missing queue", {"queue": REMOVED}, "spec.queue"),
    pool("structure", "missing image", {"image": REMOVED}, "spec.image"),
    pool("structure", "missing database", {"database": REMOVED}, "spec.database"),
    pool("structure", "missing handlers", worker(handlers=REMOVED), "spec.worker.handlers"),
    pool("structure", "missing secret name", {"database": {"secretRef": {}}}, "name"),
    monitor("structure", "misspelled field", {"restartHungWorker": True}, "restartHungWorker"),
    monitor("structure", "number for a duration", {"interval": 30}, "spec.interval"),
    # -- bounds
    pool("bounds", "negative min", {"replicas": {"min": -1}}, "spec.replicas.min"),
    pool("bounds", "max zero", {"replicas": {"min": 0, "max": 0}}, "spec.replicas.max"),
    pool("bounds", "min above max", {"replicas": {"min": 5, "max": 2}}, "spec.replicas.min"),
    pool(
        "bounds",
        "override above max",
        {"replicas": {"max": 2, "override": 3}},
        "spec.replicas.override",
    ),
    pool("bounds", "max above the cap", {"replicas": {"max": 5000}}, "spec.replicas.max"),
    pool(
        "bounds",
        "fallback above max",
        {"replicas": {"max": 2}, "scaling": {"fallbackReplicas": 5}},
        "spec.scaling.fallbackReplicas",
    ),
    pool("bounds", "concurrency zero", worker(concurrency=0), "spec.worker.concurrency"),
    pool("bounds", "negative concurrency", worker(concurrency=-1), "spec.worker.concurrency"),
    pool("bounds", "max attempts zero", worker(maxAttempts=0), "spec.worker.maxAttempts"),
    pool("bounds", "jobs per worker zero", {"scaling": {"jobsPerWorker": 0}}, "jobsPerWorker"),
    pool("bounds", "activation zero", {"scaling": {"activationJobs": 0}}, "activationJobs"),
    pool(
        "bounds",
        "scale-up step zero",
        {"scaling": {"maxScaleUpStep": 0}},
        "spec.scaling.maxScaleUpStep",
    ),
    pool(
        "bounds",
        "scale-up percentage without %",
        {"scaling": {"maxScaleUpStep": "150"}},
        "spec.scaling.maxScaleUpStep",
    ),
    pool(
        "bounds",
        "scale-up zero percent",
        {"scaling": {"maxScaleUpStep": "0%"}},
        "spec.scaling.maxScaleUpStep",
    ),
    monitor("bounds", "threshold zero", {"rules": {"failedJobs": {"threshold": 0}}}, "threshold"),
    # -- names
    pool("names", "queue with spaces", {"queue": "Bad Queue!"}, "spec.queue"),
    pool("names", "queue too long", {"queue": "q" * 64}, "spec.queue"),
    pool("names", "handlers not a module", worker(handlers="not a module"), "spec.worker.handlers"),
    pool("names", "empty command", worker(handlers="command: "), "spec.worker.handlers"),
    pool("names", "empty image", {"image": ""}, "spec.image"),
    pool("names", "env name with a space", {"env": [{"name": "A B", "value": "1"}]}, "name"),
    pool("names", "pool name too long", {}, "metadata.name", name="p" * 60),
    pool("names", "pool name starting with a digit", {}, "metadata.name", name="9lives"),
    # -- duration grammar
    pool("duration grammar", "words", worker(jobTimeout="ten minutes"), "spec.worker.jobTimeout"),
    pool("duration grammar", "space", worker(heartbeatInterval="5 s"), "heartbeatInterval"),
    pool("duration grammar", "negative", worker(retryBase="-5s"), "spec.worker.retryBase"),
    pool("duration grammar", "weeks", {"scaling": {"scaleDownDelay": "1w"}}, "scaleDownDelay"),
    pool("duration grammar", "signed part", worker(retryCap="1h-30m"), "spec.worker.retryCap"),
    monitor("duration grammar", "words", {"interval": "often"}, "spec.interval"),
    monitor(
        "duration grammar",
        "retention in words",
        {"retention": {"dead": "two weeks"}},
        "spec.retention.dead",
    ),
    # -- zero duration
    pool("zero duration", "poll interval", worker(pollInterval="0s"), "spec.worker.pollInterval"),
    pool("zero duration", "heartbeat", worker(heartbeatInterval="0"), "heartbeatInterval"),
    pool("zero duration", "job timeout", worker(jobTimeout="0ms"), "spec.worker.jobTimeout"),
    pool(
        "zero duration",
        "health log interval",
        worker(healthLogInterval="0m0s"),
        "spec.worker.healthLogInterval",
    ),
    pool(
        "zero duration",
        "queue poll interval",
        {"scaling": {"pollInterval": "0.0"}},
        "spec.scaling.pollInterval",
    ),
    pool(
        "bounds",
        "queue poll interval under a second",
        {"scaling": {"pollInterval": "500ms"}},
        "spec.scaling.pollInterval",
    ),
    pool(
        "bounds",
        "queue poll interval under a second, bare seconds",
        {"scaling": {"pollInterval": "0.5"}},
        "spec.scaling.pollInterval",
    ),
    monitor("zero duration", "interval", {"interval": "0s"}, "spec.interval"),
    monitor("zero duration", "dead worker after", {"deadWorkerAfter": "0m"}, "deadWorkerAfter"),
    monitor(
        "zero duration",
        "failed jobs window",
        {"rules": {"failedJobs": {"window": "0s"}}},
        "spec.rules.failedJobs.window",
    ),
    monitor(
        "zero duration",
        "webhook timeout",
        {"alerts": {"webhook": {"secretRef": {"name": "hook"}, "timeout": "0s"}}},
        "spec.alerts.webhook.timeout",
    ),
    # -- duration order
    pool(
        "duration order",
        "lease shorter than heartbeat",
        worker(heartbeatInterval="10s", leaseDuration="5s"),
        "spec.worker.leaseDuration",
    ),
    pool(
        "duration order",
        "lease equal to heartbeat, spelled differently",
        worker(heartbeatInterval="5s", leaseDuration="5000ms"),
        "spec.worker.leaseDuration",
    ),
    pool(
        "duration order",
        "lease below the default heartbeat",
        worker(leaseDuration="4.5"),
        "spec.worker.leaseDuration",
    ),
    pool(
        "duration order",
        "retry base above cap",
        worker(retryBase="10m", retryCap="1m"),
        "spec.worker.retryBase",
    ),
    pool(
        "duration order",
        "a day above 23 hours",
        worker(retryBase="1d", retryCap="23h59m"),
        "spec.worker.retryBase",
    ),
    # -- resources
    pool(
        "resources",
        "quantity in words",
        {"resources": {"requests": {"cpu": "lots"}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "quantity with a unit of bytes",
        {"resources": {"limits": {"memory": "1GB"}}},
        "spec.resources.limits",
    ),
    pool(
        "resources",
        "fractional exponent",
        {"resources": {"limits": {"memory": "1e1.5"}}},
        "spec.resources.limits",
    ),
    pool(
        "resources",
        "negative quantity",
        {"resources": {"requests": {"cpu": "-100m"}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "negative number",
        {"resources": {"limits": {"cpu": -1}}},
        "spec.resources.limits",
    ),
    pool(
        "resources",
        "memory request above the default limit",
        {"resources": {"requests": {"memory": "1Gi"}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "cpu request above its limit",
        {"resources": {"requests": {"cpu": 2}, "limits": {"cpu": "1500m"}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "a typo of memory",
        {"resources": {"requests": {"memroy": "64Mi"}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "capitalised name",
        {"resources": {"limits": {"Memory": "64Mi"}}},
        "spec.resources.limits",
    ),
    pool(
        "resources",
        "name with a space",
        {"resources": {"limits": {"ephemeral storage": "1Gi"}}},
        "spec.resources.limits",
    ),
    pool(
        "resources",
        "half a GPU",
        {"resources": {"requests": {"nvidia.com/gpu": "0.5"}, "limits": {"nvidia.com/gpu": "0.5"}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "GPU requested without a limit",
        {"resources": {"requests": {"nvidia.com/gpu": 1}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "hugepages request below its limit",
        {"resources": {"requests": {"hugepages-2Mi": "2Mi"}, "limits": {"hugepages-2Mi": "4Mi"}}},
        "spec.resources.requests",
    ),
    pool(
        "resources",
        "too many resources",
        {"resources": {"limits": {f"example.com/r{i}": 1 for i in range(17)}}},
        "spec.resources.limits",
    ),
    # -- selector
    monitor(
        "selector",
        "label without a value (team: )",
        {"selector": {"matchLabels": {"team": None}}},
        "spec.selector.matchLabels",
    ),
    monitor(
        "selector",
        "one of two labels without a value",
        {"selector": {"matchLabels": {"tier": "batch", "team": None}}},
        "spec.selector.matchLabels",
    ),
    monitor(
        "selector",
        "label key with a space",
        {"selector": {"matchLabels": {"my team": "mail"}}},
        "spec.selector.matchLabels",
    ),
    monitor(
        "selector",
        "label value with a space",
        {"selector": {"matchLabels": {"team": "mail ops"}}},
        "spec.selector.matchLabels",
    ),
    monitor(
        "selector",
        "label value too long",
        {"selector": {"matchLabels": {"team": "m" * 64}}},
        "spec.selector.matchLabels",
    ),
    monitor(
        "selector",
        "expression key with a slash too many",
        {"selector": {"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]}},
        "spec.selector.matchExpressions[0].key",
    ),
    monitor(
        "selector",
        "expression value with a space",
        {"selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x y"]}]}},
        "spec.selector.matchExpressions[0].values",
    ),
    monitor(
        "selector",
        "In without values",
        {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        "spec.selector.matchExpressions[0].values",
    ),
    monitor(
        "selector",
        "Exists with values",
        {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
        "spec.selector.matchExpressions[0].values",
    ),
    monitor(
        "selector",
        "unknown operator",
        {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
        "spec.selector.matchExpressions[0].operator",
    ),
    # -- enums
    pool("enums", "log level", worker(logLevel="LOUD"), "spec.worker.logLevel"),
    pool("enums", "log format", worker(logFormat="xml"), "spec.worker.logFormat"),
    pool("enums", "retry jitter", worker(retryJitter="lots"), "spec.worker.retryJitter"),
    pool("enums", "pull policy", {"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
    monitor(
        "enums",
        "webhook format",
        {"alerts": {"webhook": {"secretRef": {"name": "w"}, "format": "teams"}}},
        "spec.alerts.webhook.format",
    ),
    # -- env
    pool("env", "reserved prefix", {"env": [{"name": "WORKERFLEET_DSN", "value": "x"}]}, "name"),
    pool("env", "reserved pod variable", {"env": [{"name": "POD_IP", "value": "x"}]}, "name"),
    pool(
        "env",
        "value and valueFrom",
        {
            "env": [
                {"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "a"}}},
            ]
        },
        "spec.env[0]",
    ),
    pool(
        "env",
        "valueFrom without a source",
        {"env": [{"name": "A", "valueFrom": {}}]},
        "valueFrom",
    ),
    pool(
        "env",
        "valueFrom with two sources",
        {
            "env": [
                {
                    "name": "A",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "a"},
                        "secretKeyRef": {"name": "s", "key": "k"},
                    },
                }
            ]
        },
        "valueFrom",
    ),
    pool(
        "env",
        "duplicate names",
        {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        "spec.env[1]",
    ),
    # -- alerting (issue 10)
    monitor(
        "bounds",
        "dead jobs threshold zero",
        {"rules": {"deadJobs": {"threshold": 0}}},
        "spec.rules.deadJobs.threshold",
    ),
    monitor(
        "bounds",
        "window past the hour",
        {"rules": {"deadJobs": {"window": "2h"}}},
        "spec.rules.deadJobs.window",
    ),
    monitor(
        "duration grammar",
        "for that does not parse",
        {"rules": {"noWorkersWithPending": {"for": "soon"}}},
        "spec.rules.noWorkersWithPending.for",
    ),
    monitor(
        "zero duration",
        "oldest pending threshold zero",
        {"rules": {"oldestPending": {"threshold": "0"}}},
        "spec.rules.oldestPending.threshold",
    ),
    monitor(
        "structure",
        "webhook without a Secret",
        {"alerts": {"webhook": {}}},
        "spec.alerts.webhook.secretRef",
    ),
    monitor(
        "structure",
        "webhook without a Secret name",
        {"alerts": {"webhook": {"secretRef": {"key": "url"}}}},
        "spec.alerts.webhook.secretRef.name",
    ),
    monitor(
        "bounds",
        "webhook timeout too long",
        {"alerts": {"webhook": {"secretRef": {"name": "w"}, "timeout": "2m"}}},
        "spec.alerts.webhook.timeout",
    ),
    monitor(
        "duration order",
        "repeat interval below the interval",
        {"interval": "1m", "alerts": {"repeatInterval": "59"}},
        "spec.alerts.repeatInterval",
    ),
    monitor(
        "duration order",
        "repeat interval below the interval, in parts",
        {"interval": "1h30m", "alerts": {"repeatInterval": "1h29m59s"}},
        "spec.alerts.repeatInterval",
    ),
]

GOOD: list[Case] = [
    pool(
        "durations",
        "days, fractions, bare seconds",
        worker(jobTimeout="1d", pollInterval="0.5", heartbeatInterval="2500ms", retryBase="1.5s"),
        "",
    ),
    pool(
        "durations",
        "lease just above the heartbeat",
        worker(heartbeatInterval="5s", leaseDuration="5001ms"),
        "",
    ),
    pool("durations", "retry base equal to its cap", worker(retryBase="1m", retryCap="60s"), ""),
    pool(
        "durations",
        "zero where zero works",
        {
            "worker": {"handlers": "acme.jobs", "shutdownGracePeriod": "0s", "retryBase": "0s"},
            "scaling": {"scaleDownDelay": "0s"},
        },
        "",
    ),
    pool(
        "resources",
        "memory request equal to the default limit",
        {"resources": {"requests": {"memory": "512Mi"}}},
        "",
    ),
    pool(
        "resources",
        "units compared by value",
        {
            "resources": {
                "requests": {"cpu": "1", "memory": "1G"},
                "limits": {"cpu": "1000m", "memory": "1Gi"},
            }
        },
        "",
    ),
    pool(
        "resources",
        "requests without limits",
        {"resources": {"requests": {"cpu": 2, "ephemeral-storage": "1Gi"}, "limits": {}}},
        "",
    ),
    pool(
        "resources",
        "a whole GPU and hugepages, each equal to its limit",
        {
            "resources": {
                "requests": {"nvidia.com/gpu": 1, "hugepages-2Mi": "4Mi"},
                "limits": {"nvidia.com/gpu": "1", "hugepages-2Mi": "4Mi", "memory": "512Mi"},
            }
        },
        "",
    ),
    monitor(
        "selector",
        "empty value and a prefixed key",
        {"selector": {"matchLabels": {"app.kubernetes.io/part-of": "mail", "canary": ""}}},
        "",
    ),
    monitor(
        "selector",
        "expressions",
        {
            "selector": {
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["mail", "web-1"]},
                    {"key": "example.com/tier", "operator": "DoesNotExist"},
                ]
            }
        },
        "",
    ),
    monitor("defaults", "everything defaulted", {}, ""),
    monitor(
        "durations",
        "zero where zero works",
        {
            "stuckJobAfter": "0s",
            "retention": {"succeeded": "0s"},
            "rules": {"noWorkersWithPending": {"for": "0s"}},
        },
        "",
    ),
]


def by_mistake() -> dict[str, int]:
    """How many bad specs each class holds."""
    counts: dict[str, int] = {}
    for case in BAD:
        counts[case.mistake] = counts.get(case.mistake, 0) + 1
    return counts
