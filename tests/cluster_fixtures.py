"""Fixtures for the local Kubernetes cluster (filled in by the foundation work)."""

from __future__ import annotations
