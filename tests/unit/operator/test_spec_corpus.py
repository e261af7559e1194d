"""The operator's Python twin refuses every bad spec of the corpus, naming its field, and
accepts every good one (tests/spec_corpus.py; the API server is held to the same corpus in
tests/integration/operator/test_spec_corpus.py)."""

from __future__ import annotations

import pydantic
import pytest

from tests import spec_corpus
from tests.spec_corpus import Case
from workerfleet.operator import models, validation


def problem(case: Case) -> str | None:
    if case.kind == "WorkerPool":
        return validation.parse_pool(case.name, case.full_spec()).problem
    try:
        models.MonitorSpec.model_validate(case.full_spec())
    except pydantic.ValidationError as error:
        return validation.describe_validation_error(error)
    return None


@pytest.mark.parametrize("case", spec_corpus.BAD, ids=[c.id for c in spec_corpus.BAD])
def test_every_bad_spec_is_refused_naming_its_field(case: Case) -> None:
    found = problem(case)
    assert found is not None, f"{case.id}: accepted"
    assert case.field.removeprefix("spec.") in found, f"{case.id}: {found}"


@pytest.mark.parametrize("case", spec_corpus.GOOD, ids=[c.id for c in spec_corpus.GOOD])
def test_every_good_spec_is_accepted(case: Case) -> None:
    assert problem(case) is None


def test_every_class_of_mistake_has_cases() -> None:
    counts = spec_corpus.by_mistake()
    assert set(counts) == set(spec_corpus.MISTAKES)
    assert all(count >= 3 for count in counts.values()), counts
