from __future__ import annotations

from tests.unit.operator.conftest import spec_dict
from workerfleet.operator import models, reasons, replicas


def inputs(**overrides: object) -> replicas.ReplicaInputs:
    spec = models.WorkerPoolSpec.model_validate(spec_dict(**overrides))
    return replicas.ReplicaInputs(spec=spec, current=None, queue=None, workers=None, now=0.0)


def test_minimum_until_the_autoscaler_takes_over() -> None:
    decision = replicas.decide(inputs(replicas={"min": 3, "max": 5}))
    assert decision == replicas.ReplicaDecision(3, reasons.REPLICAS_MINIMUM)


def test_kubectl_scale_override_wins() -> None:
    decision = replicas.decide(inputs(replicas={"min": 3, "max": 5, "override": 0}))
    assert decision == replicas.ReplicaDecision(0, reasons.REPLICAS_OVERRIDE)
