"""Every value of the Helm chart carries a `# --` description (on itself or on
the object it belongs to), as helm-docs and users expect."""

from __future__ import annotations

from pathlib import Path

VALUES = Path(__file__).resolve().parents[2] / "charts" / "workerfleet" / "values.yaml"


def undocumented_values(text: str) -> list[str]:
    """Dotted paths of leaf values with no `# --` on them or on any parent."""
    missing: list[str] = []
    # (indent, key, documented) of the enclosing objects.
    parents: list[tuple[int, str, bool]] = []
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")):
            previous = stripped or previous
            continue
        indent = len(line) - len(line.lstrip())
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key, _, value = stripped.partition(":")
        documented = previous.startswith("# --") or any(doc for _, _, doc in parents)
        if value.strip():
            if not documented:
                missing.append(".".join([*(k for _, k, _ in parents), key]))
        else:
            parents.append((indent, key, previous.startswith("# --")))
        previous = stripped
    return missing


def test_every_chart_value_is_documented() -> None:
    assert undocumented_values(VALUES.read_text()) == []


def test_the_check_finds_an_undocumented_value() -> None:
    text = "image:\n  # -- documented\n  tag: x\n  pullPolicy: Always\n"
    assert undocumented_values(text) == ["image.pullPolicy"]
