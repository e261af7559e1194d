"""How `make demo` is told what to do: DEMO_INSTALL picks how the operator runs."""

from __future__ import annotations

import pytest

from localcluster import demo


@pytest.mark.parametrize(
    ("value", "mode"), [("", "process"), ("process", "process"), ("helm", "helm")]
)
def test_install_modes(monkeypatch: pytest.MonkeyPatch, value: str, mode: str) -> None:
    monkeypatch.setenv("DEMO_INSTALL", value)
    assert demo.install_mode() == mode


def test_an_unknown_install_mode_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_INSTALL", "kind")
    with pytest.raises(ValueError, match="DEMO_INSTALL must be one of process, helm, got 'kind'"):
        demo.install_mode()
