"""ruff over the project's Python (the rules in pyproject.toml's [tool.ruff]):
unused imports, names shadowing imports, undefined names fail the suite.
mypy --strict over the pure packages ([tool.mypy]): a type error fails it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from .test_architecture import PACKAGE, PURE_PACKAGES

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                          "keyresolve", "tests", "fuzz", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_finds_nothing_in_the_pure_packages():
    out = subprocess.run([sys.executable, "-m", "mypy"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_checks_every_pure_package():
    """A new pure package is type-checked as soon as it exists."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert config["packages"] == [f"keyresolve.{name}" for name in PURE_PACKAGES
                                  if (PACKAGE / name).is_dir()]
