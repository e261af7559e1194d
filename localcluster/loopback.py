"""The loopback network every local server listens on: free ports, and no proxy.

The cluster, the demo and the tests start servers on 127.0.0.1 (PostgreSQL, etcd, the
apiserver, the operator's health server, workers); an inherited HTTP proxy must never
see that traffic.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the kernel's pick; free until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def loopback_no_proxy(inherited: str | None) -> str:
    """NO_PROXY with loopback first, then whatever was inherited."""
    return "127.0.0.1,localhost" + (f",{inherited}" if inherited else "")
