"""The local Kubernetes cluster used by the tests and the demo.

Real components at one pinned release (etcd, kube-apiserver with TLS, RBAC,
Node authorization and its default admission plugins, kube-controller-manager,
kube-scheduler), the node agent (`localcluster.nodeagent`) that runs scheduled pods
as local processes, and a throwaway PostgreSQL. Everything lives in one state
directory; `up` is idempotent and `down` leaves no process behind.
`LocalCluster.from_environment()` is the cluster `make cluster-up`, the demo and the
tests share: `$WORKERFLEET_CLUSTER_DIR`, else `.cluster` in the checkout.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcluster import pki
from localcluster.loopback import free_port
from localcluster.nodeagent.process_groups import kill_leftover_pod_processes
from localcluster.postgres import PostgresServer
from localcluster.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-k8s.sh"
DEFAULT_STATE_DIR = REPO_ROOT / ".cluster"
STATE_DIR_VARIABLE = "WORKERFLEET_CLUSTER_DIR"
APISERVER_READY_TIMEOUT_SECONDS = 90.0
CLUSTER_READY_TIMEOUT_SECONDS = 90.0
# Room for a metrics Service per pool of `make bench-operator` (1,000 pools) and then some;
# a /24 ran out at 253 Services.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
# A state directory made with a smaller range keeps it in its default ServiceCIDR (the API
# server does not widen it); this extra ServiceCIDR adds the rest.
SERVICE_CIDR_NAME = "localcluster-services"
# Writes by service accounts (pods' in-cluster clients) are audited: the tests tell which
# pod wrote what from the bound token's pod name in each event. So is every request of the
# operator's own user (`make bench-operator` counts them).
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
    verbs: [create, update, patch, delete, deletecollection]
  - level: Metadata
    users: ["{pki.OPERATOR.user}"]
  - level: None
"""
AUDIT_LOG_MAX_MEGABYTES = 50
# Components in start order; `down` stops them in reverse.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "node-agent",
)


class ClusterError(RuntimeError):
    """The cluster could not be brought up; the message points at the log to read."""


def binaries_dir(quiet: bool = False) -> Path:
    """Build the pinned binaries if missing (cached by version) and return their directory.

    The build script reports progress on stderr; ``quiet`` keeps that out of the terminal
    and puts it in the error if the build fails."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        said = f": {result.stderr.strip()[-2000:]}" if quiet else ""
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}{said}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int

    @classmethod
    def load_or_pick(cls, path: Path) -> Ports:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        ports = cls(etcd_client=free_port(), etcd_peer=free_port(), apiserver=free_port())
        path.write_text(json.dumps(ports.__dict__))
        return ports


class LocalCluster:
    """The cluster whose state lives in ``state_dir``."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, quiet_build: bool = False) -> None:
        self.state_dir = state_dir
        self.quiet_build = quiet_build
        self.logs_dir = state_dir / "logs"
        self.pid_dir = state_dir / "pids"
        self.pki = pki.ClusterPKI(state_dir / "pki")
        self.kubeconfig = state_dir / "kubeconfig"
        self.operator_kubeconfig = state_dir / "operator.kubeconfig"
        """The operator's own identity (pki.OPERATOR): every request of it is audited."""
        self.postgres = PostgresServer(state_dir / "postgres")
        self._bin_dir: Path | None = None

    @classmethod
    def from_environment(cls, quiet_build: bool = False) -> LocalCluster:
        """The cluster in `$WORKERFLEET_CLUSTER_DIR` (the Makefile sets it), else `.cluster`."""
        return cls(Path(os.environ.get(STATE_DIR_VARIABLE, DEFAULT_STATE_DIR)), quiet_build)

    # -- queries -------------------------------------------------------------

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.pid_dir, self.logs_dir)

    def status(self) -> dict[str, int | None]:
        pids: dict[str, int | None] = {name: self.process(name).pid() for name in COMPONENTS}
        pids["postgres"] = self.postgres.pid() if self.postgres.is_running() else None
        return pids

    def is_up(self) -> bool:
        return all(pid is not None for pid in self.status().values()) and self._apiserver_ready()

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = binaries_dir(self.quiet_build)
        return self._bin_dir

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def postgres_dsn(self, database: str = "postgres") -> str:
        return self.postgres.dsn(database)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    # -- lifecycle -----------------------------------------------------------

    def up(self) -> None:
        """Start whatever is not running; quick when everything already is."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Several test sessions may share one cluster: one of them starts it.
        with (self.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._up_locked()

    def _up_locked(self) -> None:
        self.logs_dir.mkdir(exist_ok=True)
        self.pki.ensure()
        ports = Ports.load_or_pick(self.state_dir / "ports.json")
        self._write_kubeconfigs(ports)
        self.postgres.start()
        (self.state_dir / "postgres.dsn").write_text(self.postgres_dsn() + "\n")
        starters = {
            "etcd": lambda: self._start_etcd(ports),
            "kube-apiserver": lambda: self._start_apiserver(ports),
            "kube-controller-manager": self._start_controller_manager,
            "kube-scheduler": self._start_scheduler,
            "node-agent": self._start_node_agent,
        }
        for name in COMPONENTS:
            # An apiserver started by an older checkout lacks the aggregation layer.
            if name == "kube-apiserver" and not self._apiserver_current():
                self.process(name).stop()
            if not self.process(name).is_running():
                starters[name]()
            if name == "kube-apiserver":
                self._wait_apiserver_ready()
        self._wait_cluster_ready()
        self._ensure_service_range()

    def add_ons(self) -> list[str]:
        """Processes started beside the components under this state directory (KEDA's, by
        localcluster.keda): every pid file that is not a component's."""
        if not self.pid_dir.exists():
            return []
        names = sorted(path.stem for path in self.pid_dir.glob("*.pid"))
        return [name for name in names if name not in COMPONENTS]

    def down(self) -> None:
        # Add-ons first: they talk to the apiserver until they stop.
        for name in self.add_ons():
            self.process(name).stop()
        for name in reversed(COMPONENTS):
            self.process(name).stop()
        # Pod processes of an agent that died without cleaning up.
        kill_leftover_pod_processes(self.state_dir)
        self.postgres.stop()

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port and etcd data, as an
        upgrade or a crash does; returns once it is ready. Everything else keeps running
        and has to reconnect."""
        ports = Ports.load_or_pick(self.state_dir / "ports.json")
        self.process("kube-apiserver").stop()
        self._start_apiserver(ports)
        self._wait_apiserver_ready()

    def ensure_audit_policy(self) -> None:
        """Restart kube-apiserver if it runs with an older audit policy than AUDIT_POLICY."""
        policy = self.state_dir / "audit-policy.yaml"
        if not policy.exists() or policy.read_text() != AUDIT_POLICY:
            self.restart_apiserver()

    def purge(self) -> None:
        """Stop and forget everything, binaries aside."""
        self.down()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- components ----------------------------------------------------------

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.process(name).start(argv, marker=str(self.state_dir), env=env, cwd=REPO_ROOT)

    def _start_etcd(self, ports: Ports) -> None:
        client = f"http://127.0.0.1:{ports.etcd_client}"
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        self._start(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=workerfleet",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=workerfleet={peer}",
                # A test cluster: durability buys nothing and fsync costs seconds.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
        )

    @property
    def audit_log(self) -> Path:
        """Service accounts' writes, one JSON event per line (see AUDIT_POLICY)."""
        return self.logs_dir / "audit.log"

    def _start_apiserver(self, ports: Ports) -> None:
        p = self.pki.path
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        self._start(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                f"--client-ca-file={p('ca.crt')}",
                f"--tls-cert-file={p('apiserver.crt')}",
                f"--tls-private-key-file={p('apiserver.key')}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p('sa.pub')}",
                f"--service-account-signing-key-file={p('sa.key')}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # The `kubernetes` Service cannot point at a loopback address.
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                f"--audit-log-maxsize={AUDIT_LOG_MAX_MEGABYTES}",
                "--audit-log-maxbackup=1",
                *self._aggregation_layer_flags(),
                "--profiling=false",
                "--v=1",
            ],
        )

    def _aggregation_layer_flags(self) -> list[str]:
        """What a real cluster's apiserver has for extension apiservers (an APIService
        backed by a Service, such as KEDA's metrics adapter): it proxies to them with the
        front-proxy client certificate and names the user in X-Remote-* headers, and
        publishes the CA and header names in kube-system/extension-apiserver-authentication
        so the extension apiserver can trust those headers."""
        p = self.pki.path
        return [
            f"--requestheader-client-ca-file={self.pki.front_proxy_ca_cert}",
            f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p(pki.FRONT_PROXY_CLIENT + '.crt')}",
            f"--proxy-client-key-file={p(pki.FRONT_PROXY_CLIENT + '.key')}",
        ]

    def _apiserver_current(self) -> bool:
        return not self.process("kube-apiserver").is_running() or self.serves_aggregation_layer()

    def serves_aggregation_layer(self) -> bool:
        """Whether the running apiserver was started with the aggregation-layer flags (one
        started by an older checkout was not)."""
        pid = self.process("kube-apiserver").pid()
        if pid is None:
            return False
        return b"--proxy-client-cert-file=" in Path(f"/proc/{pid}/cmdline").read_bytes()

    def _control_loop_argv(self, binary: str, kubeconfig_file: str) -> list[str]:
        """What the controller-manager and the scheduler share: one kubeconfig for every
        purpose, no serving port, no leader election (each runs once)."""
        kubeconfig = str(self.state_dir / kubeconfig_file)
        return [
            str(self.bin_dir / binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
        ]

    def _start_controller_manager(self) -> None:
        self._start(
            "kube-controller-manager",
            [
                *self._control_loop_argv(
                    "kube-controller-manager", "controller-manager.kubeconfig"
                ),
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki.path('sa.key')}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--cluster-signing-cert-file={self.pki.ca_cert}",
                f"--cluster-signing-key-file={self.pki.path('ca.key')}",
                # Deployments on one small node: react quickly to pod changes.
                "--concurrent-deployment-syncs=10",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        self._start(
            "kube-scheduler",
            [*self._control_loop_argv("kube-scheduler", "scheduler.kubeconfig"), "--v=1"],
        )

    def _start_node_agent(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KUBECONFIG", None)
        self._start(
            "node-agent",
            [
                sys.executable,
                "-m",
                "localcluster.nodeagent",
                f"--kubeconfig={self.state_dir / 'node-agent.kubeconfig'}",
                f"--node-name={pki.NODE_NAME}",
                f"--state-dir={self.state_dir}",
                f"--log-dir={self.logs_dir}",
            ],
            env=env,
        )

    # -- readiness -----------------------------------------------------------

    def _apiserver_url(self) -> str:
        ports = Ports.load_or_pick(self.state_dir / "ports.json")
        return f"https://127.0.0.1:{ports.apiserver}"

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(self.pki.path("admin.crt"), self.pki.path("admin.key"))
        return context

    def _apiserver_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self._apiserver_url()}/readyz", context=self._ssl_context(), timeout=5
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _wait_apiserver_ready(self) -> None:
        deadline = time.monotonic() + APISERVER_READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._apiserver_ready():
                return
            for name in ("etcd", "kube-apiserver"):
                if self.process(name).exited_early():
                    raise ClusterError(f"{name} exited; see {self.process(name).log_file}")
            time.sleep(0.25)
        raise ClusterError(
            f"kube-apiserver not ready after {APISERVER_READY_TIMEOUT_SECONDS:.0f}s; "
            f"see {self.process('kube-apiserver').log_file}"
        )

    def _wait_cluster_ready(self) -> None:
        """The node is Ready and the default ServiceAccount exists (pods can be created)."""
        deadline = time.monotonic() + CLUSTER_READY_TIMEOUT_SECONDS
        last = ""
        while time.monotonic() < deadline:
            for name in COMPONENTS:
                if self.process(name).exited_early():
                    raise ClusterError(f"{name} exited; see {self.process(name).log_file}")
            node = self.kubectl(
                "get",
                "node",
                pki.NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            account = self.kubectl(
                "get", "serviceaccount", "default", "-n", "default", "-o", "name", check=False
            )
            last = (
                f"node Ready={node.stdout or node.stderr.strip()!r}, "
                f"default ServiceAccount={account.stdout.strip() or 'missing'}"
            )
            if node.stdout == "True" and account.returncode == 0:
                return
            time.sleep(0.5)
        raise ClusterError(f"cluster not ready after {CLUSTER_READY_TIMEOUT_SECONDS:.0f}s: {last}")

    def _ensure_service_range(self) -> None:
        """Services get addresses from SERVICE_CLUSTER_IP_RANGE, whatever range the state
        directory was first made with."""
        default = self.kubectl(
            "get", "servicecidr", "kubernetes", "-o", "jsonpath={.spec.cidrs}", check=False
        )
        if default.returncode != 0 or SERVICE_CLUSTER_IP_RANGE in default.stdout:
            return
        manifest = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": SERVICE_CIDR_NAME},
            "spec": {"cidrs": [SERVICE_CLUSTER_IP_RANGE]},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    # -- kubeconfigs ---------------------------------------------------------

    def _write_kubeconfigs(self, ports: Ports) -> None:
        server = f"https://127.0.0.1:{ports.apiserver}"
        files = {
            "kubeconfig": pki.ADMIN,
            "controller-manager.kubeconfig": pki.CONTROLLER_MANAGER,
            "scheduler.kubeconfig": pki.SCHEDULER,
            "node-agent.kubeconfig": pki.NODE_AGENT,
            "operator.kubeconfig": pki.OPERATOR,
        }
        for filename, identity in files.items():
            path = self.state_dir / filename
            path.write_text(self._kubeconfig(server, identity))
            path.chmod(0o600)

    def _kubeconfig(self, server: str, identity: pki.ClientIdentity) -> str:
        def b64(name: str) -> str:
            return base64.b64encode(self.pki.path(name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "workerfleet-local",
                    "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": identity.user,
                    "user": {
                        "client-certificate-data": b64(f"{identity.stem}.crt"),
                        "client-key-data": b64(f"{identity.stem}.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "workerfleet-local",
                    "context": {"cluster": "workerfleet-local", "user": identity.user},
                }
            ],
            "current-context": "workerfleet-local",
        }
        return json.dumps(config, indent=2) + "\n"
