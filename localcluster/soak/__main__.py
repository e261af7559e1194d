"""`python -m localcluster.soak [--short]` (`make soak`): the chaos soak, then its report.

Exit 0 when no job was lost and none completed twice, 1 otherwise, 2 when the soak could
not run at all."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

from localcluster.control_plane import LocalCluster
from localcluster.soak.plan import Plan
from localcluster.soak.report import format_report
from localcluster.soak.run import Soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.soak", description=__doc__)
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--short", action="store_true", help="the CI form: 2,000 jobs in 60 s")
    form.add_argument(
        "--recovery",
        action="store_true",
        help="kills alone while workers have free slots: recovery times (10 minutes)",
    )
    parser.add_argument("--jobs", type=int, help="jobs to stream in over the window")
    parser.add_argument("--seconds", type=float, help="the chaos window")
    parser.add_argument("--workers", type=int, help="worker pods")
    args = parser.parse_args(argv)
    # The soak's own connections lose the database on purpose; their pool's complaints
    # about it are not findings.
    logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)
    plan = Plan.short() if args.short else Plan.recovery() if args.recovery else Plan()
    overrides = {k: v for k in ("jobs", "seconds", "workers") if (v := getattr(args, k))}
    plan = dataclasses.replace(plan, **overrides)
    with tempfile.TemporaryDirectory(prefix="workerfleet-soak-") as tmp:
        soak = Soak(plan, Path(tmp), LocalCluster.from_environment(quiet_build=True), print)
        try:
            print("setting up: local cluster, PostgreSQL, operator, pool, Monitor", flush=True)
            soak.set_up()
            findings = asyncio.run(soak.run())
        except Exception as error:
            print(f"soak could not run: {error}", file=sys.stderr)
            return 2
        finally:
            soak.tear_down()
        print(format_report(findings, soak.started), flush=True)
        return 0 if findings.ok else 1


if __name__ == "__main__":
    sys.exit(main())
