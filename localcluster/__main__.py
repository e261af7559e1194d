"""`python -m localcluster up|down|status|env`: the local cluster from a shell.

The state directory is $WORKERFLEET_CLUSTER_DIR, else .cluster in the checkout."""

from __future__ import annotations

import argparse
import sys
import time

from localcluster.control_plane import ClusterError, LocalCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "--purge",
        action="store_true",
        help="with down: also delete the state directory (etcd data, PKI, logs)",
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster.from_environment()
    if args.command == "up":
        started = time.monotonic()
        try:
            cluster.up()
        except ClusterError as error:
            print(f"cluster-up failed: {error}", file=sys.stderr)
            return 1
        print(f"cluster up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        print(f"PostgreSQL: {cluster.postgres_dsn()}", file=sys.stderr)
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"export PATH={cluster.bin_dir}:$PATH  # kubectl {cluster.bin_dir.name}")
        return 0
    if args.command == "down":
        if args.purge:
            cluster.purge()
        else:
            cluster.down()
        leftover = {name: pid for name, pid in cluster.status().items() if pid}
        if leftover:
            print(f"still running: {leftover}", file=sys.stderr)
            return 1
        print("cluster down: no process left", file=sys.stderr)
        return 0
    if args.command == "env":
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        return 0
    for name, pid in cluster.status().items():
        print(f"{name:<24} {'running pid ' + str(pid) if pid else 'stopped'}")
    for name in cluster.add_ons():
        pid = cluster.process(name).pid()
        print(f"{name:<24} {'running pid ' + str(pid) if pid else 'stopped'} (add-on)")
    print(f"{'kubeconfig':<24} {cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
