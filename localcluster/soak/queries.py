"""The soak's named SQL blocks (``soak.sql``), split as the queue's own are."""

from __future__ import annotations

from pathlib import Path

from workerfleet.worker.queries import parse_queries

QUERIES = parse_queries((Path(__file__).parent / "soak.sql").read_text())
