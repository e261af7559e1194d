"""The local node agent: a small kubelet stand-in that runs pods as local processes.

One concept a module; the pure ones are unit-tested without a cluster:

- `agent`: the NodeAgent (pod watch, one PodWorker per pod, shutdown) and its command line
  (`python -m localcluster.nodeagent`)
- `api`: a JSON client for the kube-apiserver
- `node`: the Node's registration and heartbeat (Lease, Ready); `node_status`: the Node and
  Lease objects it publishes (pure)
- `pod`: one pod from acceptance to deletion; `status`: the pod status it reports (pure)
- `container`: one container as a supervised process; `restart`: restartPolicy, crash-loop
  back-off and exit codes (pure)
- `env`: the container environment, resolved as the kubelet does (pure)
- `probes`: probe specs and verdicts (pure); `prober`: running httpGet, tcpSocket and exec
  probes
- `ips`: the loopback pod addresses (pure bookkeeping); `address_claims`: their
  machine-wide claims, shared by every agent on the machine
- `process_groups`: starting, recording, stopping and cleaning up pod process groups

Importing the package imports none of them, so `localcluster.control_plane` can use
`process_groups` without loading the Kubernetes client.
"""
