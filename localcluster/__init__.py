"""The local cluster: real Kubernetes components, a node agent and PostgreSQL on this machine.

A development tool, not part of the installed distribution: it is imported as
`localcluster` from the root of a checkout, by `make demo`, `make cluster-up` and the
tests (through the pytest plugin `tests/cluster_fixtures.py`).

- `python -m localcluster up|down|status|env` (`__main__`): the cluster from a shell
- `control_plane`: `LocalCluster`, which starts, checks and stops every component
- `nodeagent/`: the node agent that runs pods as local processes
- `demo`: `make demo`, the whole product on this machine
- `operator_process`: the operator as a local process (the demo and the tests)
- `postgres`: a throwaway PostgreSQL server; `pki`: the cluster's certificates
- `processes`: background processes that outlive the Python process that started them
- `loopback`: free ports on 127.0.0.1, and no proxy for it
- `waiting`: waiting for a condition, failing with what was seen
- `build-k8s.sh`: builds the pinned Kubernetes binaries once, cached by version
- `fixtures/`: programs the node agent's tests run as pods
"""
