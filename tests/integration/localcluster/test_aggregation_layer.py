"""The local cluster's apiserver has the aggregation layer a real cluster has: an
APIService backed by a local process is served, the apiserver proxies to it with the
front-proxy client certificate, and it names the caller in the X-Remote-* headers that
kube-system/extension-apiserver-authentication tells extension apiservers to trust."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from localcluster import aggregation, pki
from localcluster.control_plane import LocalCluster
from localcluster.loopback import LOOPBACK

VERSION = "v1"
RESOURCE = "whoami"


class _ExtensionApiserver(BaseHTTPRequestHandler):
    """Answers discovery for its group version and ``<group version>/whoami`` with who
    the apiserver said the caller is and which certificate the apiserver presented."""

    group_version = ""

    def do_GET(self) -> None:
        base = f"/apis/{self.group_version}"
        path = self.path.split("?", 1)[0]
        if path == base:
            self._json(
                200,
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": self.group_version,
                    "resources": [
                        {
                            "name": RESOURCE,
                            "singularName": RESOURCE,
                            "namespaced": False,
                            "kind": "WhoAmI",
                            "verbs": ["get"],
                        }
                    ],
                },
            )
        elif path == f"{base}/{RESOURCE}":
            certificate: Any = self.connection.getpeercert()
            subject = dict(pair[0] for pair in certificate["subject"])
            self._json(
                200,
                {
                    "user": self.headers.get("X-Remote-User"),
                    "groups": self.headers.get_all("X-Remote-Group") or [],
                    "proxy": subject.get("commonName"),
                },
            )
        else:
            self._json(404, {"kind": "Status", "apiVersion": "v1", "code": 404})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _front_proxy_ca(cluster: LocalCluster) -> str:
    """The CA extension apiservers must check proxied requests against, where the
    apiserver publishes it (kubeadm and managed clusters alike)."""
    configmap = json.loads(
        cluster.kubectl(
            "get",
            "configmap",
            "extension-apiserver-authentication",
            "-n",
            "kube-system",
            "-o",
            "json",
        ).stdout
    )
    return str(configmap["data"]["requestheader-client-ca-file"])


@pytest.fixture
def extension_apiserver(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> Iterator[aggregation.LocalAPIService]:
    """A local HTTPS server registered as ``v1.<unique group>``, unregistered afterwards."""
    group = f"t{uuid.uuid4().hex[:8]}.aggregation.workerfleet.dev"
    service = aggregation.LocalAPIService(
        group, VERSION, "extension", namespace, port=0, ca_bundle=b""
    )
    pki.write_ca(tmp_path, "ca", "extension-test-ca")
    pki.write_leaf(
        tmp_path,
        "serving",
        pki.load_ca(tmp_path, "ca"),
        "extension",
        pki.SERVER_AUTH,
        service.serving_names(),
        (LOOPBACK,),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "serving.crt", tmp_path / "serving.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=_front_proxy_ca(kube_cluster))
    handler = type("Handler", (_ExtensionApiserver,), {"group_version": f"{group}/{VERSION}"})
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    registered = aggregation.LocalAPIService(
        group,
        VERSION,
        service.service,
        namespace,
        port=server.server_address[1],
        ca_bundle=(tmp_path / "ca.crt").read_bytes(),
    )
    try:
        aggregation.register(kube_cluster, registered)
        yield registered
    finally:
        aggregation.unregister(kube_cluster, registered)
        server.shutdown()
        thread.join()


def test_an_api_service_backed_by_a_local_process_is_served(
    kube_cluster: LocalCluster, extension_apiserver: aggregation.LocalAPIService
) -> None:
    aggregation.wait_available(kube_cluster, extension_apiserver)

    answer = json.loads(
        kube_cluster.kubectl("get", "--raw", f"{extension_apiserver.path}/{RESOURCE}").stdout
    )

    assert answer == {
        "user": pki.ADMIN.user,
        "groups": [*pki.ADMIN.groups, "system:authenticated"],
        "proxy": pki.FRONT_PROXY_CLIENT,
    }
    resources = kube_cluster.kubectl("api-resources", f"--api-group={extension_apiserver.group}")
    assert RESOURCE in resources.stdout
