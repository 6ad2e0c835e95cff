"""The conda environments of the rules (envs/*.yaml) pin what requirements.txt pins, version for version."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalised(name)] = version
    return pins


def pip_section(env: dict) -> list[str]:
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def test_there_are_envs():
    assert {p.name for p in ENVS} >= {"torch.yaml", "report.yaml"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_agree_with_requirements(path):
    env = yaml.safe_load(path.read_text())
    pins = requirement_pins()
    for entry in pip_section(env):
        name, sep, version = entry.partition("==")
        assert sep, f"{path.name}: '{entry}' is not pinned with =="
        assert normalised(name) in pins, f"{path.name}: {name} is not in requirements.txt"
        assert version == pins[normalised(name)], \
            f"{path.name}: {name}=={version} but requirements.txt pins {pins[normalised(name)]}"
    conda_names = {re.split(r"[=<> ]", d)[0] for d in env["dependencies"] if isinstance(d, str)}
    assert conda_names == {"python", "pip"}, f"{path.name}: install pinned packages with pip, not conda"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_python_meets_requires_python(path):
    env = yaml.safe_load(path.read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (REPO / "pyproject.toml").read_text())
    assert tuple(map(int, python.split("=")[1].split(".")[:2])) >= tuple(map(int, minimum.groups()))


def test_rules_name_existing_envs():
    for rules in (REPO / "rules").glob("*.smk"):
        for env in re.findall(r'^\s*conda:\s*\n?\s*"([^"]+)"', rules.read_text(), re.M):
            assert (rules.parent / env).resolve().exists(), f"{rules.name}: conda env {env} does not exist"
