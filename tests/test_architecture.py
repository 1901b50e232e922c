"""The sans-IO core never imports I/O libraries; trio.run only at entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keyresolve"
#: Modules that must stay pure: bytes and messages in, messages and decisions out.
SANS_IO = ["codes", "errors", "names", "records", "message", "zone", "zonefile", "bulkcompile",
           "authority", "nodes", "grammar",
           "xfr", "serial", "refresh", "fastpath",
           "tsig", "resolution", "cache", "answercache", "dig", "ratelimit", "control",
           "policy", "client.seal"]
FORBIDDEN = {"trio", "socket", "lmdb", "asyncio", "selectors"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _path(module: str) -> Path:
    return PACKAGE / f"{module.replace('.', '/')}.py"


@pytest.mark.parametrize("module", [m for m in SANS_IO if _path(m).exists()])
def test_core_module_imports_no_io(module):
    assert not _imports(_path(module)) & FORBIDDEN


def test_core_modules_pull_in_no_io_transitively():
    present = [m for m in SANS_IO if _path(m).exists()]
    code = ("import sys\n" + "".join(f"import keyresolve.{m}\n" for m in present)
            + f"bad = sorted(set(sys.modules) & {FORBIDDEN!r})\nprint(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_trio_run_only_in_entry_points():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in {"cli.py", "__main__.py"}:
            continue
        if "trio.run(" in path.read_text():
            offenders.append(path.name)
    assert offenders == []


def test_lmdb_only_in_store():
    users = sorted(p.name for p in PACKAGE.rglob("*.py") if "lmdb" in _imports(p))
    assert users in ([], ["store.py"])


def _private(name: str) -> bool:
    """`_name` is private; a dunder (``__version__``) is public by convention."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_another_modules_private_names():
    """Each format and helper has one owner that exports it: a module never
    reaches into another's private names (``from .x import _name``)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                     .startswith("keyresolve")):
                offenders += [f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}"
                              for alias in node.names if _private(alias.name)]
    assert offenders == []
