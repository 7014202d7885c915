"""Installs repeat: every dependency the project declares is pinned in requirements.lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_declared_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[_name(name)] = version
    missing = sorted(declared - set(pins))
    assert not missing, f"not pinned in requirements.lock (run `make lock`): {missing}"
    assert {"chdb", "clickhouse-connect", "faust-streaming", "aiokafka"} <= set(pins)


def test_the_install_uses_the_lock() -> None:
    assert "-c requirements.lock" in (ROOT / "Makefile").read_text()
    assert "-c requirements.lock" in (ROOT / "Dockerfile").read_text()
