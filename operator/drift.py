"""Whether the live Deployment needs an apply, and why: a pure decision.

The spec hash answers "did the spec change"; the replica count answers "did
the decision change"; the generation the operator last wrote answers "did
someone edit it by hand" (any spec edit bumps ``metadata.generation``, and
the operator remembers the generation its own apply produced).
"""

from __future__ import annotations

from typing import Literal

from workerfleet.operator.views import DeploymentView

ApplyCause = Literal["missing", "spec", "replicas", "edited"]


def apply_cause(
    desired_hash: str,
    desired_replicas: int,
    live: DeploymentView | None,
    written_generation: int | None,
) -> ApplyCause | None:
    if live is None:
        return "missing"
    if live.spec_hash != desired_hash:
        return "spec"
    if live.replicas != desired_replicas:
        return "replicas"
    if written_generation is not None and live.generation > written_generation:
        return "edited"
    return None
