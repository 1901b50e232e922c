"""The layers, as the import rules the code must keep (docs/architecture.md).

Forbid by default, by directory: every module of a pure package is checked
without being listed, and a package may import only the packages its row of
`MAY_IMPORT` names.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keyresolve"
#: Packages that must stay pure: bytes, messages and a clock in; messages,
#: decisions and bytes out. `registry`, `client` and `mail` are the pure cores
#: of the features to come (their shells go in store, net, daemons and cli).
PURE_PACKAGES = ["protocol", "zonedata", "authority", "resolver", "registry", "client", "mail"]
#: What a pure module never imports: I/O, threads, the clock, the collector.
FORBIDDEN = {"trio", "socket", "lmdb", "asyncio", "threading", "os", "gc", "time", "selectors",
             "subprocess", "signal", "smtplib", "shutil", "tempfile"}
#: What a pure package's modules never import beyond FORBIDDEN: the registry's
#: core takes its randomness from the caller too (BRIEF: clock and randomness
#: passed in), so its tests draw fixed bytes and its decisions replay.
ALSO_FORBIDDEN = {"registry": {"random", "secrets"}}
#: The keyresolve packages each package may import (besides itself). Anything
#: not listed is refused: a new package gets a row before it gets imports.
MAY_IMPORT = {
    "protocol": set(),
    "zonedata": {"protocol"},
    "authority": {"protocol", "zonedata"},
    "resolver": {"protocol"},
    "registry": {"protocol", "zonedata", "client"},
    "client": {"protocol"},
    "mail": {"protocol", "client"},
    "store": {"protocol", "zonedata", "authority", "registry", "client", "files"},
    "net": {"protocol", "zonedata", "authority", "resolver", "registry", "store", "files"},
    "daemons": {"protocol", "zonedata", "authority", "resolver", "registry", "client", "mail",
                "store", "net", "cli", "files", "(top)"},
    "cli": {"protocol", "zonedata", "authority", "resolver", "registry", "client", "mail",
            "store", "net", "daemons", "files", "(top)"},
    "(top)": {"cli"},
    "demo_zones": set(),
    #: The local disk behind the pure readers' `zonefile.Files`, the
    #: collector pause, and owner-only secret files: used by every shell
    #: that reads zone files or secrets.
    "files": {"protocol"},
}
#: Modules of a package that may not import a package its neighbours may:
#: the configuration is read by the daemons, so it must not pull in sockets.
MODULE_MAY_NOT = {"cli/config.py": {"net", "daemons", "store"}}


DOC = PACKAGE.parent / "docs" / "architecture.md"


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (PACKAGE / package).rglob("*.py") if "__pycache__" not in p.parts)


def _package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "(top)"


def _import_nodes(path: Path):
    return [n for n in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(n, (ast.Import, ast.ImportFrom))]


def _imports(path: Path) -> set[str]:
    """The top-level names of the libraries `path` imports (not its own package)."""
    found = set()
    for node in _import_nodes(path):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _internal_packages(path: Path, root: Path = PACKAGE) -> set[str]:
    """The keyresolve packages `path` imports from, relative or absolute."""
    here = list(path.relative_to(root).parts[:-1])
    found = set()
    for node in _import_nodes(path):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
            module = base + (node.module.split(".") if node.module else [])
            targets = [module + [a.name] for a in node.names] if not node.module else [module]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keyresolve"):
            targets = [node.module.split(".")[1:]]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[1:] for a in node.names if a.name.startswith("keyresolve")]
        for target in targets:
            if not target:
                found.add("(top)")
            elif (root / target[0]).is_dir():
                found.add(target[0])
            else:
                found.add("(top)")
    return found


PURE_MODULES = [p for package in PURE_PACKAGES if (PACKAGE / package).is_dir()
                for p in _modules(package)]


def test_every_package_has_a_row():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages - set(MAY_IMPORT) == set()


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_imports_no_io(path):
    forbidden = FORBIDDEN | ALSO_FORBIDDEN.get(_package_of(path), set())
    assert sorted(_imports(path) & forbidden) == []


#: Standard-library packages a pure module may use although they import I/O
#: modules themselves (`email.utils` imports socket for `make_msgid`'s host
#: name, which we never call): what they load is not counted against us.
TOLERATED_STDLIB = ["email.message", "email.parser", "email.policy", "email.utils",
                    "email.headerregistry", "email.generator"]


def test_pure_packages_pull_in_no_io_transitively():
    """Importing every pure module loads no I/O library beyond what the
    interpreter and the tolerated standard-library packages load anyway (os,
    time and gc are always loaded, so the direct check above covers them)."""
    names = [".".join(("keyresolve", *p.relative_to(PACKAGE).with_suffix("").parts))
             .removesuffix(".__init__") for p in PURE_MODULES]
    watched = sorted(FORBIDDEN - {"os", "time", "gc"})
    code = ("import sys\n" + "".join(f"import {m}\n" for m in TOLERATED_STDLIB)
            + "before = set(sys.modules)\n" + "".join(f"import {m}\n" for m in names)
            + f"bad = sorted((set(sys.modules) - before) & set({watched!r}))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_each_package_imports_only_the_layers_below_it():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        package = _package_of(path)
        rel = str(path.relative_to(PACKAGE))
        allowed = MAY_IMPORT[package] - MODULE_MAY_NOT.get(rel, set())
        offenders += [f"{rel} imports {other}"
                      for other in sorted(_internal_packages(path) - {package} - allowed)]
    assert offenders == []


def test_the_checker_finds_every_form_of_import(tmp_path):
    """The checker itself, on a planted module: relative, absolute and
    package-level imports of other layers, and I/O imports, are all found."""
    root = tmp_path / "keyresolve"
    for package in ("protocol", "net", "store"):
        (root / package).mkdir(parents=True)
    planted = root / "protocol" / "planted.py"
    planted.write_text("import os\nfrom ..net import server\nfrom ..store.zones import Store\n"
                       "import keyresolve.zonedata.nodes\nfrom .. import __version__\n"
                       "from .codes import Rcode\n")
    (root / "zonedata").mkdir()
    assert _internal_packages(planted, root) == {"net", "store", "zonedata", "(top)", "protocol"}
    assert _imports(planted) & FORBIDDEN == {"os"}


def test_trio_run_only_in_entry_points():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py" or path.relative_to(PACKAGE).as_posix() == "cli/commands.py":
            continue
        if "trio.run(" in path.read_text():
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_lmdb_only_in_store():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if "lmdb" in _imports(p))
    assert [u for u in users if not u.startswith("store/")] == []


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


def test_the_documented_table_is_the_enforced_one():
    """docs/architecture.md's table of what each package may import says
    what `MAY_IMPORT` enforces, row for row."""
    text = DOC.read_text()
    table = text[text.index("| Package | What it is | May import"):].split("\n\n")[0]
    documented = {}
    for row in table.splitlines()[2:]:
        package, _, allowed = (cell.strip() for cell in row.strip("|").split("|"))
        package = package.strip("`")
        named = set(re.findall(r"`([a-z_]+)`", allowed)) | ({"(top)"} if "the top" in allowed
                                                              else set())
        if allowed.startswith("every package but"):
            named = set(MAY_IMPORT) - {package} - named | {"(top)"}
        documented[package] = named
    assert documented == MAY_IMPORT
