"""The installed package: the wheel carries the demo hierarchy and the license,
and a fresh virtualenv holding only the wheel (its dependencies taken from this
one) runs `keyresolve demo` and `demo --check` from an unrelated directory,
also with the package zipped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click
import cryptography
import lmdb
import msgpack
import pytest
import trio

from keyresolve.files.local import LOCAL_FILES
from keyresolve.daemons.demo import demo_root_hints, demo_zones_dir, load_demo
from keyresolve.zonedata.zonefile import load_hints

REPO = Path(__file__).resolve().parent.parent
#: What the wheel is built from (a copy: the build writes build/ and egg-info).
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "keyresolve"]
DEMO_FILES = ["demo.toml", "root.hints", "README.md", "root.zone", "com.zone", "org.zone",
              "example.com.zone", "eng.example.com.zone", "example.org.zone"]


@dataclass
class Installed:
    """A fresh virtualenv with the wheel installed."""

    wheel: Path
    venv: Path
    site_packages: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def keyresolve(self) -> Path:
        return self.venv / "bin" / "keyresolve"


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(REPO / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                          "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    [wheel] = (tmp / "dist").glob("keyresolve-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """The wheel built from this checkout, installed with pip (no dependencies)
    into a fresh virtualenv; the dependencies come from where this interpreter
    finds them, through a .pth file, so nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("package")
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    site_packages = Path(subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True, timeout=30).stdout.strip())
    deps = {str(Path(m.__file__).resolve().parents[1])
            for m in (trio, msgpack, lmdb, cryptography, click)}
    (site_packages / "keyresolve-test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                          "install", "--no-deps", "--no-index", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return Installed(wheel, venv, site_packages)


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """An empty directory far from the checkout, to run commands from."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def test_the_wheel_carries_the_demo_and_the_license(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {f"keyresolve/demo_zones/{f}" for f in DEMO_FILES} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_installed_demo_check_passes_from_an_unrelated_directory(installed, elsewhere):
    out = subprocess.run([installed.keyresolve, "demo", "--check", "--ports", "auto"],
                         cwd=elsewhere, env=_clean_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "all demo keys resolved"
    assert "PosixPath(" not in out.stdout + out.stderr
    probe = "import keyresolve; print(keyresolve.__file__)"
    where = subprocess.run([installed.python, "-c", probe], cwd=elsewhere, env=_clean_env(),
                           capture_output=True, text=True, check=True, timeout=30).stdout
    assert Path(where.strip()).is_relative_to(installed.site_packages)  # not the checkout's


def test_the_installed_demo_banner_names_paths_that_work_from_here(installed, elsewhere):
    """Every command the banner prints runs as printed, from where the demo was started."""
    banner = elsewhere.parent / "banner.txt"
    with open(banner, "w") as stdout:
        demo = subprocess.Popen([installed.keyresolve, "demo", "--ports", "auto"], cwd=elsewhere,
                                env=_clean_env(), stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.PIPE, text=True)
    try:
        log = []
        while not any(line.endswith("ready\n") for line in log):
            line = demo.stderr.readline()
            assert line, "demo exited before ready:\n" + "".join(log)
            log.append(line)
        text = banner.read_text()
        assert "PosixPath(" not in text
        zones = installed.site_packages / "keyresolve" / "demo_zones"
        assert text.splitlines()[0] == (f"keyresolve demo: serving the hierarchy from {zones} "
                                        "on loopback")
        commands = [line.split("#")[0].split()[1:] for line in text.splitlines()
                    if line.strip().startswith("keyresolve dig ")]
        assert any("--root-hints" in args for args in commands)
        for args in commands:
            out = subprocess.run([installed.keyresolve, *args], cwd=elsewhere, env=_clean_env(),
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and "NOERROR" in out.stdout, (args, out.stdout, out.stderr)
    finally:
        demo.send_signal(signal.SIGTERM)
        rest = demo.communicate(timeout=30)[1]
    assert demo.returncode == 0
    assert "Traceback" not in rest and "PosixPath(" not in "".join(log) + rest


def test_the_demo_runs_from_a_zipped_package(installed, elsewhere):
    """With the package imported from a zip, the demo files are extracted to a
    temporary directory, served from there, and removed at exit."""
    env = _clean_env(PYTHONPATH=str(installed.wheel))
    probe = ("import keyresolve; from keyresolve.daemons.demo import demo_zones_dir, "
             "demo_root_hints\nprint(keyresolve.__file__); print(demo_zones_dir()); "
             "print(demo_root_hints().read_text().count('root-servers.'))")
    out = subprocess.run([installed.python, "-c", probe], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    module, copy, mentions = out.stdout.splitlines()
    assert module.startswith(str(installed.wheel) + os.sep)
    assert int(mentions) > 0
    assert not Path(copy).exists()  # removed at exit
    out = subprocess.run([installed.python, "-m", "keyresolve", "demo", "--check", "--ports",
                          "auto"], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "all demo keys resolved"


def test_demo_zones_dir_and_root_hints_are_the_package_files():
    zones = demo_zones_dir()
    assert zones == REPO / "keyresolve" / "demo_zones"
    assert sorted(p.name for p in zones.iterdir()) == sorted(DEMO_FILES)
    hints = demo_root_hints()
    assert isinstance(hints, Path) and hints == zones / "root.hints"
    servers, resolver = load_demo(zones, Path("unused"))
    assert resolver.root_hints == hints
    assert {a for _, a in load_hints(hints, files=LOCAL_FILES)} and len(servers) == 8


def test_the_readme_quick_start_makes_a_virtualenv_and_ci_runs_its_second_command():
    """Two commands: the first creates and uses a virtualenv (stock Debian and
    Ubuntu refuse pip outside one) and runs the demo; .ci/run runs the second."""
    section = (REPO / "README.md").read_text().split("## Quick start", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    first, second = block.strip().splitlines()
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install ")
    assert first.endswith("&& keyresolve demo")
    assert second in (REPO / ".ci" / "run").read_text().splitlines()
