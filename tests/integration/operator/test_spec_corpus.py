"""The API server refuses every bad spec of the corpus at admission, naming its field, and
admits every good one (tests/spec_corpus.py; the operator's Python twin is held to the same
corpus in tests/unit/operator/test_spec_corpus.py)."""

from __future__ import annotations

import json

import pytest

from localcluster.control_plane import LocalCluster
from tests import spec_corpus
from tests.spec_corpus import Case

pytestmark = pytest.mark.cluster


def create(cluster: LocalCluster, case: Case, namespace: str) -> tuple[int, str]:
    """Server-side dry-run create with strict field validation (kubectl's default)."""
    result = cluster.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=json.dumps(case.manifest(namespace)),
        check=False,
    )
    return result.returncode, result.stderr + result.stdout


@pytest.mark.parametrize("case", spec_corpus.BAD, ids=[c.id for c in spec_corpus.BAD])
def test_every_bad_spec_is_refused_at_admission_naming_its_field(
    crds: LocalCluster, namespace: str, case: Case
) -> None:
    code, output = create(crds, case, namespace)
    assert code != 0, f"{case.id}: admitted"
    assert case.field in output, f"{case.id}: {output}"


@pytest.mark.parametrize("case", spec_corpus.GOOD, ids=[c.id for c in spec_corpus.GOOD])
def test_every_good_spec_is_admitted(crds: LocalCluster, namespace: str, case: Case) -> None:
    code, output = create(crds, case, namespace)
    assert code == 0, f"{case.id}: {output}"


def test_a_label_written_without_a_value_is_refused_not_dropped(
    crds: LocalCluster, namespace: str
) -> None:
    """`matchLabels: {team: }` in YAML: the null reaches the rule instead of vanishing."""
    manifest = (
        "apiVersion: workerfleet.dev/v1alpha1\n"
        "kind: Monitor\n"
        f"metadata: {{name: mail, namespace: {namespace}}}\n"
        "spec:\n"
        "  selector:\n"
        "    matchLabels:\n"
        "      team:\n"
    )
    result = crds.kubectl("create", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert "spec.selector.matchLabels: Invalid value" in result.stderr
    assert "selector.matchLabels.team has no value" in result.stderr
    assert crds.kubectl("get", "monitor", "mail", "-n", namespace, check=False).returncode != 0
