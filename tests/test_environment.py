"""The conda environment.yml and pyproject.toml pin the same packages at the same versions."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    pins = {}
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+?)\s*==\s*([^\s;]+)\s*", line)
        if match and not match.group(1).startswith("zhang-interpretability"):
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [dep for extra in project["optional-dependencies"].values() for dep in extra]
    pyproject_pins = _pins(wanted)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict) and "pip" in item)
    env_pins = _pins(pip_section)
    assert pyproject_pins, "no pins found in pyproject.toml"
    assert env_pins == pyproject_pins
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python"))
    assert python.replace(" ", "") == "python=3.11"


def test_every_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        assert "==" in dep, f"{dep} is not pinned"
