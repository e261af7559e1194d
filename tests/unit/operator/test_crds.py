from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workerfleet.operator import crds, models

REPO = Path(__file__).resolve().parents[3]


def test_committed_crds_match_the_models() -> None:
    for name, text in crds.rendered().items():
        path = REPO / "crds" / name
        assert path.exists(), f"crds/{name} missing: run `make crds`"
        assert path.read_text() == text, f"crds/{name} is stale: run `make crds`"


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    assert crds.main([str(tmp_path), "--check"]) == 1
    assert crds.main([str(tmp_path)]) == 0
    assert crds.main([str(tmp_path), "--check"]) == 0
    victim = next(tmp_path.iterdir())
    victim.write_text(victim.read_text() + "# edited\n")
    assert crds.main([str(tmp_path), "--check"]) == 1


def walk(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        found.append((path, schema))
        for key, child in schema.get("properties", {}).items():
            found += walk(child, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            found += walk(schema["items"], f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            found += walk(schema["additionalProperties"], f"{path}.*")
    return found


def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only  # type: ignore[no-any-return]


def test_schemas_are_structural() -> None:
    for crd in (crds.workerpool_crd(), crds.monitor_crd()):
        schema = version(crd)["schema"]["openAPIV3Schema"]
        for path, node in walk(schema):
            assert "$ref" not in node, path
            assert "title" not in node, path
            assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
            assert not ("properties" in node and "additionalProperties" in node), path
            if path and not node.get("x-kubernetes-int-or-string"):
                assert "type" in node, f"{path} has no type"


def test_preserve_unknown_fields_only_in_template_overrides_and_schedule_payloads() -> None:
    schema = version(crds.workerpool_crd())["schema"]["openAPIV3Schema"]
    open_paths = [p for p, n in walk(schema) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert sorted(open_paths) == [".spec.schedules[].payload", ".spec.template.spec"]


def test_nested_objects_default_to_their_complete_defaults() -> None:
    spec = version(crds.workerpool_crd())["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["replicas"]["default"] == {"min": 1, "max": 10}
    assert spec["properties"]["scaling"]["default"]["maxScaleUpStep"] == 10
    assert spec["properties"]["metrics"]["default"] == {"service": True}
    assert spec["properties"]["replicas"]["properties"]["min"]["default"] == 1


def test_cel_rules_are_present_with_field_paths() -> None:
    spec = version(crds.workerpool_crd())["schema"]["openAPIV3Schema"]["properties"]["spec"]
    replica_rules = spec["properties"]["replicas"]["x-kubernetes-validations"]
    assert {"rule": "self.min <= self.max", "fieldPath": ".min"}.items() <= replica_rules[0].items()
    assert spec["x-kubernetes-validations"][0]["fieldPath"] == ".scaling.fallbackReplicas"


def test_names_subresources_and_columns() -> None:
    pool = crds.workerpool_crd()
    names = pool["spec"]["names"]
    assert names["shortNames"] == ["wp"]
    assert names["categories"] == ["workerfleet"]
    pool_version = version(pool)
    assert pool_version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas.override"
    assert pool_version["subresources"]["status"] == {}
    columns = [c["name"] for c in pool_version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == ["Queue", "Desired", "Ready", "Pending", "Running", "Oldest", "Status", "Age"]
    monitor = crds.monitor_crd()
    assert monitor["spec"]["names"]["shortNames"] == ["wfmon"]
    assert monitor["spec"]["names"]["categories"] == ["workerfleet"]
    monitor_columns = [c["name"] for c in version(monitor)["additionalPrinterColumns"]]
    assert monitor_columns == ["Pools", "Firing", "Recovered", "Last Run", "Age"]
    assert "scale" not in version(monitor)["subresources"]


def test_every_printer_column_points_at_a_schema_field() -> None:
    for crd in (crds.workerpool_crd(), crds.monitor_crd()):
        schema = version(crd)["schema"]["openAPIV3Schema"]
        paths = {p for p, _ in walk(schema)}
        for column in version(crd)["additionalPrinterColumns"]:
            if column["jsonPath"].startswith(".metadata"):
                continue
            assert column["jsonPath"] in paths, column


def test_rendered_yaml_parses_back() -> None:
    for name, text in crds.rendered().items():
        crd = yaml.safe_load(text)
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{models.GROUP}"
        assert name.startswith(models.GROUP)
