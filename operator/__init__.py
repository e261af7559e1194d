"""The kopf operator: WorkerPool and Monitor reconcilers, pure builders, scaling policy."""
