"""KEDA's operator and metrics adapter as local processes against the local cluster.

What a Helm install of KEDA sets up, done by hand for two processes on loopback:

- KEDA's CRDs from the module's ``config/crd/bases`` (cached beside the binaries by
  ``build-tools.sh keda``), applied server-side: the ScaledJob CRD is too large for the
  last-applied annotation of a client-side apply.
- One CA of KEDA's own and one certificate for both ends of the operator <-> adapter gRPC
  (mutual TLS) and for the adapter's HTTPS, named for the in-cluster Services and for
  loopback. Certificate rotation is off: the files are written once per cluster.
- The adapter behind ``v1beta1.external.metrics.k8s.io`` (``localcluster.aggregation``:
  an ExternalName Service to localhost and an APIService with the CA as caBundle), so
  the controller-manager's HPA controller reads KEDA's metrics as in a real cluster.
- Both run with the admin kubeconfig (KEDA's chart would give them ServiceAccounts and
  ClusterRoles; what they may do is not what this cluster is for), in their own
  sessions with pid files in the cluster's state directory, so ``make cluster-down``
  stops them too.

The adapter exits with status 0 on fatal errors, so readiness is the APIService's
Available condition, and an exited process ends the wait with its log.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcluster import aggregation, pki, tools
from localcluster.control_plane import LocalCluster
from localcluster.loopback import LOOPBACK, free_port, loopback_no_proxy
from localcluster.processes import ManagedProcess
from localcluster.waiting import wait_for

NAMESPACE = "keda"
OPERATOR = "keda-operator"
ADAPTER = "keda-metrics-apiserver"
EXTERNAL_METRICS_GROUP = "external.metrics.k8s.io"
EXTERNAL_METRICS_VERSION = "v1beta1"
CRD_ESTABLISHED_TIMEOUT_SECONDS = 60.0
CRDS_USED = ("scaledobjects.keda.sh", "triggerauthentications.keda.sh")
OPERATOR_READY_TIMEOUT_SECONDS = 90.0
LOG_TAIL_CHARACTERS = 3000
HTTP_TIMEOUT_SECONDS = 5.0


class KedaError(RuntimeError):
    """KEDA could not be started here; the message says what stands in the way."""


@dataclass
class KedaPorts:
    adapter_https: int
    adapter_metrics: int
    operator_grpc: int
    operator_metrics: int
    operator_health: int

    @classmethod
    def load_or_pick(cls, path: Path) -> KedaPorts:
        """The same ports across restarts (the APIService names the adapter's)."""
        if path.exists():
            return cls(**json.loads(path.read_text()))
        ports = cls(*(free_port() for _ in range(5)))
        path.write_text(json.dumps(ports.__dict__))
        return ports


def certificate_names() -> tuple[list[str], list[str]]:
    """DNS names and addresses of KEDA's one certificate: the in-cluster Services (the
    aggregator checks ``keda-metrics-apiserver.keda.svc``) and loopback (the gRPC)."""
    dns = ["localhost"]
    for service in (OPERATOR, ADAPTER):
        dns += [f"{service}.{NAMESPACE}.svc", f"{service}.{NAMESPACE}.svc.cluster.local"]
    return dns, [LOOPBACK]


class Keda:
    """KEDA on ``cluster``, its files under ``<state dir>/keda``."""

    def __init__(self, cluster: LocalCluster, bin_dir: Path) -> None:
        self.cluster = cluster
        self.bin_dir = bin_dir
        self.directory = cluster.state_dir / "keda"
        self.cert_dir = self.directory / "certs"

    @classmethod
    def built(cls, cluster: LocalCluster, build: bool = True, quiet: bool = True) -> Keda:
        """KEDA from the cache, built first when ``build`` (about 11 minutes cold);
        tools.ToolError (ToolNotBuilt without ``build``) says why not."""
        return cls(cluster, tools.tool_dir("keda", build=build, quiet=quiet))

    # -- the parts -----------------------------------------------------------------------------

    def process(self, name: str) -> ManagedProcess:
        return self.cluster.process(name)

    @property
    def ports(self) -> KedaPorts:
        self.directory.mkdir(parents=True, exist_ok=True)
        return KedaPorts.load_or_pick(self.directory / "ports.json")

    @property
    def api_service(self) -> aggregation.LocalAPIService:
        return aggregation.LocalAPIService(
            EXTERNAL_METRICS_GROUP,
            EXTERNAL_METRICS_VERSION,
            ADAPTER,
            NAMESPACE,
            self.ports.adapter_https,
            (self.cert_dir / "ca.crt").read_bytes(),
        )

    def ensure_certificates(self) -> None:
        """ca.crt, tls.crt and tls.key in the layout KEDA's --cert-dir expects."""
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        if not (self.cert_dir / "ca.crt").exists():
            pki.write_ca(self.cert_dir, "ca", "workerfleet-local-keda-ca")
            (self.cert_dir / "tls.crt").unlink(missing_ok=True)
        if not (self.cert_dir / "tls.crt").exists():
            dns, ips = certificate_names()
            pki.write_leaf(
                self.cert_dir,
                "tls",
                pki.load_ca(self.cert_dir, "ca"),
                "keda",
                (*pki.SERVER_AUTH, *pki.CLIENT_AUTH),
                dns,
                ips,
            )

    def install_crds(self) -> None:
        crd_dir = self.bin_dir / "crd"
        applied = self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(crd_dir), check=False
        )
        if applied.returncode != 0:
            raise KedaError(f"applying KEDA's CRDs from {crd_dir}: {applied.stderr.strip()}")

        def established() -> bool:
            return all(
                self.cluster.kubectl(
                    "get",
                    "crd",
                    name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                    check=False,
                ).stdout
                == "True"
                for name in CRDS_USED
            )

        wait_for("KEDA's CRDs to be Established", established, CRD_ESTABLISHED_TIMEOUT_SECONDS)

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            # Empty: every namespace. KEDA refuses to start when it is unset.
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
            "NO_PROXY": loopback_no_proxy(os.environ.get("NO_PROXY")),
        }
        env.pop("KUBECONFIG", None)
        return env

    def _start_operator(self) -> None:
        ports = self.ports
        kubeconfig = self.cluster.kubeconfig
        self.process(OPERATOR).start(
            [
                str(self.bin_dir / "keda"),
                f"--kubeconfig={kubeconfig}",
                f"--cert-dir={self.cert_dir}",
                f"--metrics-service-bind-address={LOOPBACK}:{ports.operator_grpc}",
                f"--metrics-bind-address={LOOPBACK}:{ports.operator_metrics}",
                f"--health-probe-bind-address={LOOPBACK}:{ports.operator_health}",
                # The APIService is registered here, with this CA; no rotation to follow.
                "--enable-cert-rotation=false",
                "--enable-apiservice-patching=false",
                "--enable-webhook-patching=false",
                "--leader-elect=false",
                "--zap-encoder=console",
            ],
            marker=str(self.cluster.state_dir),
            env=self._env(),
        )

    def _start_adapter(self) -> None:
        ports = self.ports
        kubeconfig = self.cluster.kubeconfig
        self.process(ADAPTER).start(
            [
                str(self.bin_dir / "keda-adapter"),
                f"--kubeconfig={kubeconfig}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={ports.adapter_https}",
                f"--port={ports.adapter_metrics}",
                f"--tls-cert-file={self.cert_dir / 'tls.crt'}",
                f"--tls-private-key-file={self.cert_dir / 'tls.key'}",
                f"--cert-dir={self.cert_dir}",
                f"--metrics-service-address={LOOPBACK}:{ports.operator_grpc}",
                "--profiling=false",
                "--zap-encoder=console",
            ],
            marker=str(self.cluster.state_dir),
            env=self._env(),
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def is_up(self) -> bool:
        if not (self.process(OPERATOR).is_running() and self.process(ADAPTER).is_running()):
            return False
        return aggregation.availability(self.cluster, self.api_service.name)[0]

    def up(self) -> None:
        """Start whatever is not running and return once the HPA controller can read
        KEDA's metrics (the APIService is Available)."""
        if not self.cluster.serves_aggregation_layer():
            raise KedaError(
                "kube-apiserver runs without the aggregation layer (started by an older "
                "checkout): `make cluster-down cluster-up` restarts it with the front-proxy flags"
            )
        self.ensure_certificates()
        self.install_crds()
        self.cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            ),
        )
        if not self.process(OPERATOR).is_running():
            self._start_operator()
        self._wait_operator_ready()
        if not self.process(ADAPTER).is_running():
            self._start_adapter()
        aggregation.register(self.cluster, self.api_service)
        try:
            aggregation.wait_available(self.cluster, self.api_service, self._still_serving)
        except AssertionError as error:
            raise KedaError(str(error)) from error

    def down(self) -> None:
        """Unregister the APIService first (discovery must not keep a dead backend),
        then stop both processes. The CRDs stay."""
        if (self.cert_dir / "ca.crt").exists():
            aggregation.unregister(self.cluster, self.api_service)
        for name in (ADAPTER, OPERATOR):
            self.process(name).stop()

    def log_tail(self, name: str) -> str:
        try:
            return self.process(name).log_file.read_text(errors="replace")[-LOG_TAIL_CHARACTERS:]
        except FileNotFoundError:
            return "(no log)"

    def _still_serving(self, names: tuple[str, ...] = (OPERATOR, ADAPTER)) -> None:
        for name in names:
            if self.process(name).exited_early():
                raise AssertionError(f"{name} exited; the end of its log:\n{self.log_tail(name)}")

    def _wait_operator_ready(self) -> None:
        url = f"http://{LOOPBACK}:{self.ports.operator_health}/readyz"

        def ready() -> bool:
            # The operator only: the adapter starts after it, and a pid file left by an
            # adapter that died earlier (it exits 0 on fatal errors) is not this start's.
            self._still_serving((OPERATOR,))
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
                return bool(response.status == 200)

        try:
            wait_for(
                f"{OPERATOR}'s /readyz",
                ready,
                timeout=OPERATOR_READY_TIMEOUT_SECONDS,
                describe=lambda: self.log_tail(OPERATOR),
            )
        except AssertionError as error:
            raise KedaError(str(error)) from error
