"""workerfleet: Kubernetes-managed fleets of PostgreSQL job-queue workers."""

from __future__ import annotations

__version__ = "0.1.0"
