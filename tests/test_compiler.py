"""daemons.compiler: zone compiles in a child process, on real stores in tmp_path."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import trio

from keyresolve.files.local import LOCAL_FILES
from keyresolve.daemons import compiler
from keyresolve.protocol.errors import StoreError, ZoneErrors
from keyresolve.protocol.names import Name
from keyresolve.store.zones import Store
from keyresolve.zonedata.zonefile import load_zone

from .conftest import compiler_pids, waiting_for_lmdb_lock
from .test_store_compile import HEADER, KEY_A, MAP_SIZE

ORIGIN = Name.from_text("example.com.")


def compile_child(data_dir: Path, path: str, origin: Name) -> tuple[int, int]:
    return trio.run(compiler.compile_in_child, data_dir, path, origin)


def test_the_child_compiles_into_the_store(tmp_path: Path) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(HEADER + f"alice@ KEY {KEY_A}\nbob@www KEY {KEY_A}\n")
    expected = load_zone(str(zone), ORIGIN, files=LOCAL_FILES)
    assert compile_child(tmp_path / "data", str(zone), ORIGIN) == (1, len(expected))
    with Store(tmp_path / "data", map_size=MAP_SIZE) as store, store.snapshot() as snap:
        assert set(snap.iter_records(ORIGIN)) == set(expected.records())
        assert store.get_zone_info(ORIGIN).sources[0][0] == str(zone)


def test_zone_errors_come_back_with_file_and_line(tmp_path: Path) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(HEADER + "www ADDR nonsense\nbad name! KEY x\n")
    with pytest.raises(ZoneErrors) as child:
        compile_child(tmp_path / "data", str(zone), ORIGIN)
    with pytest.raises(ZoneErrors) as here:
        load_zone(str(zone), ORIGIN, files=LOCAL_FILES)
    assert str(child.value) == str(here.value)
    assert [(e.filename, e.line) for e in child.value.errors] == [
        (str(zone), 6), (str(zone), 7)]


def test_a_store_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(HEADER)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError):
        compile_child(not_a_dir, str(zone), ORIGIN)


def test_a_child_that_dies_without_a_report_is_a_store_error(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setattr("sys.executable", "/bin/false")
    with pytest.raises(StoreError, match=r"compile process failed \(exit 1\): no output"):
        compile_child(tmp_path / "data", str(tmp_path / "z.zone"), ORIGIN)


async def _cancel_once_running(data_dir: Path, path: str) -> tuple[list[int], float]:
    """Start a compile, cancel it once its child waits for the write lock:
    (the child's pids, seconds from the cancel to compile_in_child's return)."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(compiler.compile_in_child, data_dir, path, ORIGIN)
            while not (pids := compiler_pids(data_dir)) or not all(
                    waiting_for_lmdb_lock(pid) for pid in pids):
                await trio.sleep(0.01)
            start = time.monotonic()
            nursery.cancel_scope.cancel()
    return pids, time.monotonic() - start


#: Seconds from the SIGTERM of a cancelled run_process to its SIGKILL in the
#: test below: trio's 5 s is too close to a loaded machine's slack; this keeps
#: "SIGTERM ended it" (well under a second unloaded) and "only the SIGKILL did" apart.
SLOW_KILL = 40.0


def _record_cancel_delivery(monkeypatch) -> list:
    """Make the compile child's start record its process, and a cancelled
    compile wait SLOW_KILL seconds after the SIGTERM (not KILL_GRACE) before
    it SIGKILLs."""
    procs: list = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            procs.append(self)

    class Subprocess:  # the compiler's view of the subprocess module
        Popen = Recording

        def __getattr__(self, name: str):
            return getattr(subprocess, name)

    monkeypatch.setattr(compiler, "subprocess", Subprocess())
    monkeypatch.setattr(compiler, "KILL_GRACE", SLOW_KILL)
    return procs


def test_cancelling_kills_the_child_and_keeps_the_served_zone(tmp_path: Path,
                                                              monkeypatch) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(HEADER + f"alice@ KEY {KEY_A}\n")
    data = tmp_path / "data"
    assert compile_child(data, str(zone), ORIGIN)[0] == 1
    zone.write_text(HEADER.replace(" 1 3600 ", " 2 3600 ") + f"bob@ KEY {KEY_A}\n")
    with Store(data, map_size=MAP_SIZE) as store:
        txn = store._env.begin(write=True)  # the child waits for LMDB's write lock
        procs = _record_cancel_delivery(monkeypatch)
        try:
            pids, seconds = trio.run(_cancel_once_running, data, str(zone))
        finally:
            txn.abort()
        # the SIGTERM ended it, not the SIGKILL SLOW_KILL seconds later
        assert [p.returncode for p in procs] == [-signal.SIGTERM]
        assert pids and seconds < SLOW_KILL / 2
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        assert store.get_zone_info(ORIGIN).serial == 1
        with store.snapshot() as snap:
            owners = {record.name.to_text() for record in snap.iter_records(ORIGIN)}
        assert "alice@example.com." in owners and "bob@example.com." not in owners
    assert compile_child(data, str(zone), ORIGIN)[0] == 2  # a later compile still works
