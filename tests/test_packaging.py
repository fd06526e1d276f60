"""A non-editable install ships the library, the built-in rewards and the package data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_rewards_templates_and_the_console_script(tmp_path):
    # build from a copy: setuptools leaves build/ and egg-info folders next to the sources
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("wise_rl", "rewards"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("wise_rl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    builtin = {p.name for p in (ROOT / "rewards").glob("*.py")}
    assert {f"rewards/{name}" for name in builtin} <= names
    assert "wise_rl/templates/qwen2_5_vl.jinja" in names
    assert not any(n.startswith(("tests/", "recipes/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "wise-rl = wise_rl.cli:entry" in zipfile.ZipFile(wheel).read(entry_points).decode()
