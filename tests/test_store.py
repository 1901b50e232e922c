"""The LMDB zone store, on a real environment in tmp_path."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import lmdb
import msgpack
import pytest
from .test_authority import CASES, ZONES, _id, find_zone_in, summary

from keyresolve.authority.answer import answer
from keyresolve.protocol.codes import RType, rtype_from_text
from keyresolve.protocol.errors import StoreError
from keyresolve.protocol.message import make_query
from keyresolve.protocol.names import ROOT, Name
from keyresolve.protocol.records import ADDR, KEY, NS, SOA, KeyAlgorithm, KeyUsage, Record
from keyresolve.store.env import NODES_DB
from keyresolve.store.keys import node_key
from keyresolve.store.zones import Store
from keyresolve.zonedata.model import Zone

N = Name.from_text
MAP_SIZE = 1 << 26  # small: tests write kilobytes


def _soa(origin: Name, serial: int = 1) -> Record:
    mname = Name(("ns1",) + origin.labels)
    return Record(origin, RType.SOA, 600,
                  SOA(mname, Name(origin.labels, "hostmaster"), serial, 7200, 3600, 1209600, 300))


def _key(fill: int) -> KEY:
    return KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([fill]) * 32)


def _zone(origin: str, serial: int, *owners: str) -> Zone:
    """A zone with an SOA and a KEY at each owner (relative to origin)."""
    o = N(origin)
    records = [_soa(o, serial)]
    records += [Record(N(owner, o), RType.KEY, 300, _key(i)) for i, owner in enumerate(owners)]
    return Zone.from_records(o, records)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "db", map_size=MAP_SIZE) as s:
        yield s


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The authority test zones in one store."""
    with Store(tmp_path_factory.mktemp("store") / "db", map_size=MAP_SIZE) as s:
        for zone in ZONES.values():
            s.replace_zone_reference(zone)
        yield s


def _records(store: Store, origin: Name) -> list[Record]:
    with store.snapshot() as snap:
        return list(snap.iter_records(origin))


# -- round trip and parity with the in-memory zone ------------------------------
def test_round_trip(loaded):
    with loaded.snapshot() as snap:
        for origin, zone in ZONES.items():
            view = snap.get_zone(origin)
            assert view.origin == origin and view.serial == zone.serial
            assert view.soa == zone.soa
            for name, node in zone.nodes.items():
                assert view.get_node(name) == node
            assert list(snap.iter_records(origin)) == list(zone.records())
            info = loaded.get_zone_info(origin)
            assert (info.origin, info.serial, info.records) == (origin, zone.serial, len(zone))
        assert snap.get_zone(N("example.net.")) is None
        assert snap.find_zone(N("a@x.y.example.org.")).origin == N("example.org.")
        assert snap.find_zone(N("example.net.")) is None
        assert snap.get_zone(N("example.com.")).get_node(N("nope.example.com.")) is None
        assert snap.get_zone(N("example.com.")).get_node(N("dave@example.org.")) is None


def test_packed_records_are_the_records_but_the_apex_soa_packed(loaded):
    """What a full transfer sends, spliced from stored bytes, is what
    packing the decoded records gives."""
    with loaded.snapshot() as snap:
        for origin, zone in ZONES.items():
            view = snap.get_zone(origin)
            expected = [msgpack.packb(r.to_wire()) for r in view.records()
                        if not (r.rtype == RType.SOA and r.name == origin)]
            assert list(view.packed_records()) == expected
            assert len(expected) == len(zone) - 1


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_answers_match_memory(loaded, case):
    qname, qtype, *expected = case
    query = make_query(N(qname), rtype_from_text(qtype), msg_id=1)
    with loaded.snapshot() as snap:
        from_store = answer(query, snap.find_zone)
    assert summary(from_store) == tuple(expected)
    assert from_store == answer(query, find_zone_in(ZONES))


def test_root_zone(store):
    zone = Zone.from_records(ROOT, [_soa(ROOT), Record(N("x@com."), RType.KEY, 60, _key(3))])
    store.replace_zone_reference(zone)
    assert store.zone_names() == [ROOT]
    with store.snapshot() as snap:
        assert snap.find_zone(N("a@b.example.com.")).origin == ROOT
        assert list(snap.iter_records(ROOT)) == list(zone.records())


def test_loaded_at_and_sources(store):
    sources = [("zones/example.com.zone", b"\x01" * 32), ("zones/inc.zone", b"\x02" * 32)]
    store.replace_zone_reference(_zone("example.com.", 5, "a@"), sources, loaded_at=1234.5)
    info = store.get_zone_info(N("example.com."))
    assert (info.loaded_at, info.sources, info.records) == (1234.5, tuple(sources), 2)


# -- replacing -----------------------------------------------------------------
def test_replace_keeps_only_new_data(store):
    old = _zone("example.com.", 1, "a@", "b@", "x.y")
    new = _zone("example.com.", 2, "b@", "c@")
    store.replace_zone_reference(old)
    store.replace_zone_reference(new)
    assert _records(store, new.origin) == list(new.records())
    assert store.get_zone_info(new.origin).serial == 2
    with store.snapshot() as snap:
        view = snap.get_zone(new.origin)
        assert view.get_node(N("a@example.com.")) is None
        assert not view.has_descendants(N("y.example.com."))


class _ExplodingZone(Zone):
    """Yields a few nodes, then fails: a compile error found mid-stream."""

    def iter_nodes(self):
        for count, item in enumerate(super().iter_nodes()):
            if count == 3:
                raise RuntimeError("boom")
            yield item


def test_failed_replace_keeps_old_zone(store):
    old = _zone("example.com.", 1, "a@", "b@", "c@", "d@")
    store.replace_zone_reference(old, [("old.zone", b"\x00" * 32)])
    bad = _ExplodingZone(old.origin, _zone("example.com.", 2, "e@", "f@", "g@", "h@").nodes)
    with pytest.raises(RuntimeError, match="boom"):
        store.replace_zone_reference(bad)
    # a zone without SOA fails after all nodes are written: still aborted
    no_soa = Zone.from_records(old.origin, [Record(N("z@example.com."), RType.KEY, 1, _key(0))])
    with pytest.raises(StoreError, match="no SOA"):
        store.replace_zone_reference(no_soa)
    assert _records(store, old.origin) == list(old.records())
    assert store.get_zone_info(old.origin).sources == (("old.zone", b"\x00" * 32),)


def test_replace_rejects_names_outside_zone(store):
    zone = Zone.from_records(N("example.com."), [_soa(N("example.com.")),
                                                  Record(N("a@example.org."), RType.KEY, 1,
                                                         _key(0))])
    with pytest.raises(StoreError, match="outside"):
        store.replace_zone_reference(zone)
    assert store.zone_names() == []


def test_snapshot_isolation(store):
    old = _zone("example.com.", 1, "a@", "b@", "x.y")
    new = _zone("example.com.", 2, "c@")
    store.replace_zone_reference(old)
    with store.snapshot() as before:
        writer = threading.Thread(target=store.replace_zone_reference, args=(new,))
        writer.start()
        writer.join()
        with store.snapshot() as after:
            assert list(before.iter_records(old.origin)) == list(old.records())
            assert before.find_zone(N("a@example.com.")).serial == 1
            assert list(after.iter_records(old.origin)) == list(new.records())
            assert after.find_zone(N("a@example.com.")).serial == 2
        store.delete_zone(old.origin)
        assert list(before.iter_records(old.origin)) == list(old.records())


# -- zones side by side ------------------------------------------------------------
def test_parent_and_child_zones_do_not_mix(store):
    com, eng = N("example.com."), N("eng.example.com.")
    parent = Zone.from_records(com, [
        _soa(com),
        Record(N("alice@example.com."), RType.KEY, 60, _key(1)),
        Record(eng, RType.NS, 60, NS(N("ns.eng.example.com."))),
        Record(N("ns.eng.example.com."), RType.ADDR, 60, ADDR.parse("192.0.2.9:53")),
        Record(N("engx.example.com."), RType.KEY, 60, _key(2)),
    ])
    child = Zone.from_records(eng, [
        _soa(eng, 7),
        Record(eng, RType.NS, 60, NS(N("ns.eng.example.com."))),
        Record(N("bob@eng.example.com."), RType.KEY, 60, _key(3)),
    ])
    store.replace_zone_reference(child)
    store.replace_zone_reference(parent)  # not append-only: the child's keys sort inside
    store.replace_zone_reference(child)
    assert store.zone_names() == [com, eng]
    assert _records(store, com) == list(parent.records())
    assert _records(store, eng) == list(child.records())
    with store.snapshot() as snap:
        assert snap.find_zone(N("bob@eng.example.com.")).origin == eng
        assert snap.find_zone(N("alice@example.com.")).origin == com
        response = answer(make_query(N("bob@eng.example.com."), RType.KEY), snap.find_zone)
        assert response.aa and [r.rtype for r in response.answer] == [RType.KEY]
    assert store.delete_zone(com) is True
    assert store.delete_zone(com) is False
    assert store.zone_names() == [eng]
    assert _records(store, eng) == list(child.records())
    with store.snapshot() as snap:
        assert snap.find_zone(N("alice@example.com.")) is None
        with pytest.raises(StoreError):
            list(snap.iter_records(com))


def test_has_descendants(store):
    zone = _zone("example.com.", 1, "alice@", "alice.b@", "a.b.c", "cc", "x@d")
    store.replace_zone_reference(zone)
    expected = {
        "example.com.": True,
        "c.example.com.": True,
        "b.c.example.com.": True,
        "a.b.c.example.com.": False,
        "cc.example.com.": False,
        "d.example.com.": True,  # a mailbox at d is below it
        "x@d.example.com.": False,
        "alice@example.com.": False,  # alice.b@ is a sibling, not a child
        "alic@example.com.": False,
        "nope.example.com.": False,
        "example.org.": False,
        "com.": True,  # above the apex: the whole zone is below it
    }
    with store.snapshot() as snap:
        view = snap.get_zone(zone.origin)
        got = {name: view.has_descendants(N(name)) for name in expected}
    assert got == expected
    for name, value in expected.items():
        if not N(name).is_mailbox:
            assert zone.has_descendants(N(name)) == value, name


def test_iter_records_streams_in_key_order(store):
    zone = _zone("example.com.", 1, "z@", "a@", "m.q", "b@m.q", "q")
    store.replace_zone_reference(zone)
    with store.snapshot() as snap:
        stream = snap.iter_records(zone.origin)
        assert next(stream) == zone.soa  # lazily produced: the apex sorts first
        records = [zone.soa, *stream]
    names = [r.name for r in records]
    keys = [n.store_key() for n in dict.fromkeys(names)]
    assert keys == sorted(keys)
    assert records == list(zone.records())


# -- metadata helpers ---------------------------------------------------------------
def test_zone_names_and_delete(store):
    for origin in ("example.org.", "example.com.", "a.example.com."):
        store.replace_zone_reference(_zone(origin, 1, "k@"))
    assert store.zone_names() == [N("example.com."), N("a.example.com."), N("example.org.")]
    assert store.delete_zone(N("a.example.com."))
    assert store.zone_names() == [N("example.com."), N("example.org.")]
    assert store.get_zone_info(N("a.example.com.")) is None
    assert not store.delete_zone(N("nothere.net."))


def test_sources_unchanged(store):
    origin = N("example.com.")
    sources = [("a.zone", b"\x01" * 32), ("b.zone", b"\x02" * 32)]
    assert not store.sources_unchanged(origin, sources)
    store.replace_zone_reference(_zone("example.com.", 1), sources)
    assert store.sources_unchanged(origin, sources)
    assert store.sources_unchanged(origin, [(p, bytearray(d)) for p, d in sources])
    assert not store.sources_unchanged(origin, [sources[0], ("b.zone", b"\x03" * 32)])
    assert not store.sources_unchanged(origin, sources[:1])
    assert not store.sources_unchanged(origin, [])
    assert not store.sources_unchanged(N("example.org."), sources)


# -- errors and read-only use --------------------------------------------------------
@pytest.mark.parametrize("value", [
    b"\xc1",  # not msgpack
    msgpack.packb(5),
    msgpack.packb([]),
    msgpack.packb([[25, 300]]),
    msgpack.packb([[25, "300", [[1, 1, 0, b"k" * 32]]]]),
    msgpack.packb([[25, 300, [[1, 1, 0, b"short"]]]]),  # invalid KEY rdata
    msgpack.packb([[0, 300, [[1]]]]),  # reserved type 0
])
def test_corrupt_node_is_store_error(tmp_path, value):
    path = tmp_path / "db"
    zone = _zone("example.com.", 1, "alice@")
    with Store(path, map_size=MAP_SIZE) as s:
        s.replace_zone_reference(zone)
    env = lmdb.open(str(path), max_dbs=4, map_size=MAP_SIZE)
    with env.begin(write=True) as txn:
        nodes = env.open_db(NODES_DB, txn=txn)
        txn.put(node_key(zone.origin, N("alice@example.com.")), value, db=nodes)
    env.close()
    with Store(path, map_size=MAP_SIZE) as s, s.snapshot() as snap:
        view = snap.get_zone(zone.origin)
        with pytest.raises(StoreError):
            view.get_node(N("alice@example.com."))
        with pytest.raises(StoreError):
            list(snap.iter_records(zone.origin))
        with pytest.raises(StoreError):
            answer(make_query(N("alice@example.com."), RType.KEY), snap.find_zone)


@pytest.mark.parametrize("value", [
    b"\xc1",
    msgpack.packb("node"),
    msgpack.packb([]),
    msgpack.packb([[25, "300", [[1, 1, 0, b"k" * 32]]]]),
    msgpack.packb([[25, 300, [1, 1, 0, b"k" * 32], 0]]),
    msgpack.packb([[25, 300, b"rdatas"]]),
])
def test_structurally_corrupt_node_is_store_error_when_packed(tmp_path, value):
    path = tmp_path / "db"
    zone = _zone("example.com.", 1, "alice@")
    with Store(path, map_size=MAP_SIZE) as s:
        s.replace_zone_reference(zone)
        with s._env.begin(write=True) as txn:
            txn.put(node_key(zone.origin, N("alice@example.com.")), value,
                    db=s._env.open_db(NODES_DB, txn=txn))
        with s.snapshot() as snap, pytest.raises(StoreError):
            list(snap.get_zone(zone.origin).packed_records())


_WRITER = """
import sys
from keyresolve.store.zones import Store
from tests.test_store import _zone
with Store(sys.argv[1], map_size=int(sys.argv[2])) as s:
    s.replace_zone_reference(_zone("example.com.", 4, "b@"))
"""


def test_readonly(tmp_path):
    path = tmp_path / "db"
    with pytest.raises(StoreError):
        Store(path, readonly=True)  # nothing there yet
    zone = _zone("example.com.", 3, "a@")
    with Store(path, map_size=MAP_SIZE) as writer:
        writer.replace_zone_reference(zone)
    # LMDB allows one open per environment and process: the writer runs apart
    with Store(path, map_size=MAP_SIZE, readonly=True) as reader:
        assert reader.zone_names() == [zone.origin]
        with reader.snapshot() as old:
            subprocess.run([sys.executable, "-c", _WRITER, str(path), str(MAP_SIZE)],
                           check=True, cwd=Path(__file__).parent.parent)
            assert reader.get_zone_info(zone.origin).serial == 4  # sees the commit
            assert list(old.iter_records(zone.origin)) == list(zone.records())
        with pytest.raises(StoreError, match="read-only"):
            reader.replace_zone_reference(zone)
        with pytest.raises(StoreError, match="read-only"):
            reader.delete_zone(zone.origin)


def test_closed_store_raises_store_error(tmp_path):
    store = Store(tmp_path / "db", map_size=MAP_SIZE)
    store.close()
    with pytest.raises(StoreError):
        store.zone_names()
    with pytest.raises(StoreError):
        with store.snapshot():
            pass


_HOLD_ENV = """import lmdb, sys
env = lmdb.open(sys.argv[1], max_dbs=8, map_size=1 << 30)
print("open", flush=True)
sys.stdin.read()  # until the test closes it
"""
_DIE_READING = """import lmdb, os, signal, sys
env = lmdb.open(sys.argv[1], max_dbs=8, map_size=1 << 30)
txn = env.begin()
txn.get(b"x")
os.kill(os.getpid(), signal.SIGKILL)
"""


def _reader_pids(readers: str) -> set[int]:
    """The pids of LMDB's reader table (`Environment.readers()` text)."""
    return {int(line.split()[0]) for line in readers.splitlines()[1:] if line.strip()}


def test_opening_a_store_frees_the_reader_slots_of_dead_processes(tmp_path):
    path = tmp_path / "db"
    Store(path).close()
    # another process keeps the environment open, so LMDB does not start afresh
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_ENV, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        dead = subprocess.Popen([sys.executable, "-c", _DIE_READING, str(path)])
        assert dead.wait(timeout=60) == -9
        with Store(path, readonly=True) as store:  # read-only: leaves the table as it is
            assert dead.pid in _reader_pids(store._env.readers())
        with Store(path) as store:
            assert dead.pid not in _reader_pids(store._env.readers())
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
