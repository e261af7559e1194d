"""The manifests that put a local process behind an APIService."""

from __future__ import annotations

import base64

from localcluster.aggregation import LocalAPIService

SERVICE = LocalAPIService(
    "external.metrics.k8s.io", "v1beta1", "keda-metrics-apiserver", "keda", 7443, b"PEM"
)


def test_the_service_resolves_to_localhost_on_the_process_port() -> None:
    service, _ = SERVICE.manifests()

    assert service["kind"] == "Service"
    assert service["metadata"] == {"name": "keda-metrics-apiserver", "namespace": "keda"}
    assert service["spec"]["type"] == "ExternalName"
    assert service["spec"]["externalName"] == "localhost"
    assert [port["port"] for port in service["spec"]["ports"]] == [7443]


def test_the_api_service_names_the_service_and_trusts_the_ca_bundle() -> None:
    _, api_service = SERVICE.manifests()

    assert api_service["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    assert api_service["spec"]["service"] == {
        "name": "keda-metrics-apiserver",
        "namespace": "keda",
        "port": 7443,
    }
    assert (api_service["spec"]["group"], api_service["spec"]["version"]) == (
        "external.metrics.k8s.io",
        "v1beta1",
    )
    assert base64.b64decode(api_service["spec"]["caBundle"]) == b"PEM"


def test_the_serving_certificate_names_start_with_the_one_the_aggregator_checks() -> None:
    assert SERVICE.serving_names()[0] == "keda-metrics-apiserver.keda.svc"
    assert SERVICE.path == "/apis/external.metrics.k8s.io/v1beta1"
