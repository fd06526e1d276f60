"""requirements/cpu.lock: the tested CPU environment, every package pinned and hashed, inside pyproject's ranges.

pyproject.toml keeps version ranges for people who install wise_rl into their own environment; `make test`,
`make demo` and CI install the lock instead, so two fresh machines get the same versions. `make lock`
rewrites the lock from the ranges.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="the lock is compiled for Python 3.11")

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "cpu.lock"
MAKEFILE = ROOT / "Makefile"
# never next to the CPU torch: PyPI's torchvision does not import beside it
FORBIDDEN = ("torchvision",)

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def parse_lock(text: str) -> dict[str, tuple[Version, int]]:
    """Map each pinned package (canonical name) to its version and the number of its sha256 hashes."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            assert current not in pins, f"{current} is pinned twice in the lock"
            pins[current] = (Version(match.group(2)), len(_HASH.findall(line)))
        elif line.startswith((" ", "\t")) and current is not None:
            version, hashes = pins[current]
            pins[current] = (version, hashes + len(_HASH.findall(line)))
        elif line.strip() and not line.startswith("#"):
            current = None
    return pins


def ranged_requirements(pyproject_text: str) -> list[Requirement]:
    """[project].dependencies and the dev extra, the ranges that `make lock` resolves."""
    project = tomllib.loads(pyproject_text)["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(line) for line in lines]


def lock_violations(pins: dict[str, tuple[Version, int]], requirements: list[Requirement]) -> list[str]:
    """What is wrong with a lock for these ranges: empty when every range holds and every pin is hashed."""
    problems = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name}: not in the lock (wants {req.specifier or 'any version'})")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}=={pins[name][0]}: outside pyproject's range {req.specifier}")
    for name in FORBIDDEN:
        if name in pins:
            problems.append(f"{name}=={pins[name][0]}: must not be installed next to the CPU torch")
    problems += [f"{name}=={version}: no --hash" for name, (version, hashes) in pins.items() if not hashes]
    return problems


def makefile_variable(text: str, name: str) -> str:
    match = re.search(rf"^{name}\s*[:?]?=\s*(\S+)", text, re.MULTILINE)
    assert match, f"Makefile sets no {name}"
    return match.group(1)


def recipe(text: str, target: str) -> list[str]:
    """The recipe lines of a Makefile rule, continuation lines joined."""
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.MULTILINE)
    assert match, f"Makefile has no recipe for {target}"
    return [line.strip() for line in match.group(1).replace("\\\n", " ").splitlines()]


def test_the_lock_satisfies_every_range_in_pyproject():
    pins = parse_lock(LOCK.read_text(encoding="utf-8"))
    requirements = ranged_requirements((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert len(requirements) >= 20
    assert lock_violations(pins, requirements) == [], "run `make lock` to resolve the lock from the ranges again"


def test_the_check_catches_a_lock_that_breaks_the_ranges(tmp_path):
    text = LOCK.read_text(encoding="utf-8")
    text = re.sub(r"^transformers==\S+", "transformers==5.30.0", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^peft==[^\n]*\n(?:[ \t][^\n]*\n)*", "", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^(trl==\S+) \\\n(?:    --hash=\S+ \\\n)*    --hash=\S+\n", r"\1\n", text, count=1,
                  flags=re.MULTILINE)
    text += "torchvision==0.28.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    broken = tmp_path / "cpu.lock"
    broken.write_text(text, encoding="utf-8")
    requirements = ranged_requirements((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    problems = lock_violations(parse_lock(broken.read_text(encoding="utf-8")), requirements)
    assert len(problems) == 4, problems
    expected = ("transformers==5.30.0: outside", "peft: not in the lock", "trl==", "torchvision==0.28.0: must not")
    for start in expected:
        assert any(problem.startswith(start) for problem in problems), (start, problems)
    assert any(problem.startswith("trl==") and problem.endswith("no --hash") for problem in problems)


def test_torch_is_the_makefile_pin_as_the_cpu_build():
    pins = parse_lock(LOCK.read_text(encoding="utf-8"))
    pin = Requirement(makefile_variable(MAKEFILE.read_text(encoding="utf-8"), "TORCH_PIN"))
    version = pins["torch"][0]
    assert pin.name == "torch" and pin.specifier.contains(version)
    assert version.local == "cpu", f"torch=={version} in the lock is not the CPU build"


def test_make_installs_the_lock_hash_checked_and_make_lock_rewrites_it():
    text = MAKEFILE.read_text(encoding="utf-8")
    assert makefile_variable(text, "LOCK") == LOCK.relative_to(ROOT).as_posix()
    stamp = makefile_variable(text, "STAMP").replace("$(VENV)", makefile_variable(text, "VENV"))
    assert stamp == ".venv/.installed"
    assert re.search(r"^\$\(STAMP\):.*\$\(LOCK\)", text, re.MULTILINE), "the venv must be rebuilt when the lock changes"
    for target in ("test", "demo"):
        assert re.search(rf"^{target}:.*\$\(STAMP\)", text, re.MULTILINE), f"make {target} must install first"
    installs = [line for line in recipe(text, "$(STAMP)") if "$(PIP) install" in line]
    assert any("--require-hashes -r $(LOCK)" in line for line in installs)
    # nothing resolved afresh: every install is hash-checked from the lock or adds no dependencies
    for line in installs:
        assert "--require-hashes" in line or "--no-deps" in line, line
    assert any("--no-deps" in line and "-e ." in line for line in installs), "wise_rl itself stays editable"
    lock = " ".join(recipe(text, "lock"))
    for flag in ("pip-compile", "--generate-hashes", "--upgrade", "--extra dev", "--output-file $(LOCK)",
                 "pyproject.toml", "$(TORCH_PIN)", "$(MAKE) test"):
        assert flag in lock, f"make lock lacks {flag}"


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="only the Makefile's .venv is installed from the lock")
def test_the_venv_holds_exactly_the_lock():
    pins = parse_lock(LOCK.read_text(encoding="utf-8"))
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    installed.pop("wise-rl", None)
    drift = sorted(
        f"{name}: lock {pins[name][0] if name in pins else '-'}, installed {installed.get(name, '-')}"
        for name in set(pins) | set(installed)
        if pins.get(name, (None,))[0] != installed.get(name)
    )
    assert drift == [], "the .venv is not the lock: `make clean test` rebuilds it"
