"""The short chaos soak (`make soak SOAK_ARGS=--short`): 2,000 jobs while workers are
killed and hung and the operator, PostgreSQL and the API server restart. Nothing may be
lost and nothing completed twice; the timings are printed, not asserted."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.soak.plan import Plan
from localcluster.soak.report import Findings, format_report
from localcluster.soak.run import Soak

pytestmark = pytest.mark.cluster


def test_the_short_soak_loses_nothing_and_completes_nothing_twice(
    kube_cluster: LocalCluster, tmp_path: Path
) -> None:
    logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)
    plan = Plan.short()
    soak = Soak(plan, tmp_path, kube_cluster, print)
    findings: Findings | None = None
    try:
        soak.set_up()
        findings = asyncio.run(soak.run())
    finally:
        soak.tear_down()
    print(format_report(findings, soak.started))
    assert findings.total == plan.jobs
    assert findings.lost == 0, findings.states
    assert findings.completed_twice == 0
    # Every job ran at least once, and each run is on record.
    assert 0 not in findings.executions
    assert sum(findings.executions.values()) == plan.jobs
    assert len([k for k in findings.kills if k.signal == "SIGKILL"]) >= 3
