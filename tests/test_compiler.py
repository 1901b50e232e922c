"""daemons.compiler: zone compiles in a child process, on real stores in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyresolve.daemons.compiler import compile_in_child
from keyresolve.errors import StoreError, ZoneErrors
from keyresolve.names import Name
from keyresolve.store import Store
from keyresolve.zonefile import load_zone

from .test_store_compile import HEADER, KEY_A, MAP_SIZE

ORIGIN = Name.from_text("example.com.")


def test_the_child_compiles_into_the_store(tmp_path: Path) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(HEADER + f"alice@ KEY {KEY_A}\nbob@www KEY {KEY_A}\n")
    expected = load_zone(str(zone), ORIGIN)
    assert compile_in_child(tmp_path / "data", str(zone), ORIGIN) == (1, len(expected))
    with Store(tmp_path / "data", map_size=MAP_SIZE) as store, store.snapshot() as snap:
        assert set(snap.iter_records(ORIGIN)) == set(expected.records())
        assert store.get_zone_info(ORIGIN).sources[0][0] == str(zone)


def test_zone_errors_come_back_with_file_and_line(tmp_path: Path) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(HEADER + "www ADDR nonsense\nbad name! KEY x\n")
    with pytest.raises(ZoneErrors) as child:
        compile_in_child(tmp_path / "data", str(zone), ORIGIN)
    with pytest.raises(ZoneErrors) as here:
        load_zone(str(zone), ORIGIN)
    assert str(child.value) == str(here.value)
    assert [(e.filename, e.line) for e in child.value.errors] == [
        (str(zone), 6), (str(zone), 7)]


def test_a_store_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(HEADER)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError):
        compile_in_child(not_a_dir, str(zone), ORIGIN)


def test_a_child_that_dies_without_a_report_is_a_store_error(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setattr("sys.executable", "/bin/false")
    with pytest.raises(StoreError, match=r"compile process failed \(exit 1\): no output"):
        compile_in_child(tmp_path / "data", str(tmp_path / "z.zone"), ORIGIN)
