"""Fixtures shared by every test tier: a real PostgreSQL server per session, a
fresh database per test, and (in the plugin tests/cluster_fixtures.py) the local
Kubernetes cluster with the CRDs and the operator."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.loopback import loopback_no_proxy
from localcluster.postgres import PostgresServer

pytest_plugins = ["tests.cluster_fixtures"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, stopped at the end."""
    base_dir = Path(tempfile.mkdtemp(prefix="workerfleet-pg-")) / "pg"
    server = PostgresServer(base_dir)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a fresh, empty database of its own for this test."""
    return postgres_server.create_database()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback() -> Iterator[None]:
    # Test traffic stays on loopback; an inherited proxy must never see it.
    saved = os.environ.get("NO_PROXY")
    os.environ["NO_PROXY"] = loopback_no_proxy(saved)
    yield
    if saved is None:
        os.environ.pop("NO_PROXY", None)
    else:
        os.environ["NO_PROXY"] = saved
