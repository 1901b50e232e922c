"""The LMDB change journal, the merge in replace_zone_reference, and the transfer writer,
on real environments in tmp_path."""

from __future__ import annotations

import tempfile
import threading

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keyresolve.store.env as store_env
import keyresolve.store.journal as store_journal
from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import FormError, StoreError
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import Record
from keyresolve.protocol.serial import HALF
from keyresolve.store.diff import diff_sorted, suffix_batches
from keyresolve.store.env import JOURNAL_DB, NODES_DB, ZONES_DB, delete_prefix
from keyresolve.store.journal import journal_key
from keyresolve.store.keys import node_key, node_prefix, zone_prefix
from keyresolve.store.zones import Store
from keyresolve.zonedata.nodes import encode_node
from keyresolve.authority.xfr import (Inbound, MemorySource, MemoryWriter, OutboundTransfer, TransferKind,
                            diff_records)
from keyresolve.zonedata.model import RRset, Zone

from .test_xfr import (MAP_SIZE, ORIGIN, _apply, axfr_query, contents, ixfr_query, key_rdata,
                       round_trip, soa, users, versions, zone_v)

N = Name.from_text


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "db", map_size=MAP_SIZE) as s:
        yield s


def _records(store: Store, origin: Name = ORIGIN) -> list[Record]:
    with store.snapshot() as snap:
        return list(snap.iter_records(origin))


def _step_sets(step) -> tuple:
    return (step.old_soa, step.new_soa, set(step.iter_removed()), set(step.iter_added()))


def _expected(old: Zone, new: Zone) -> tuple:
    removed, added = diff_records(old.records(), new.records())
    return (old.soa, new.soa, set(removed) - {old.soa}, set(added) - {new.soa})


def _load(store: Store, zones: list[Zone]) -> None:
    for zone in zones:
        store.replace_zone_reference(zone)


# -- what replace_zone_reference journals ----------------------------------------------------------
def test_one_reload_writes_one_entry(store):
    v1, v2 = versions()[:2]
    store.replace_zone_reference(v1)
    assert store.journal_info(ORIGIN) is None  # a first load has no history
    store.replace_zone_reference(v2)
    info = store.journal_info(ORIGIN)
    assert (info.first, info.last, info.entries) == (10, 11, 1)
    (step,) = store.journal_steps(ORIGIN, 10)
    assert (step.serial_from, step.serial_to) == (10, 11)
    assert _step_sets(step) == _expected(v1, v2)
    assert step.removed_count == len(_expected(v1, v2)[2]) == 1
    assert step.added_count == 2  # new1@ and user5's second key
    assert info.records == 2 + step.removed_count + step.added_count
    assert _records(store) == list(v2.records())


def test_chain_across_three_reloads(store):
    vs = versions()
    _load(store, vs)
    info = store.journal_info(ORIGIN)
    assert (info.first, info.last, info.entries) == (10, 13, 3)
    for start in range(3):
        steps = store.journal_steps(ORIGIN, vs[start].serial)
        assert [(s.serial_from, s.serial_to) for s in steps] == [
            (vs[i].serial, vs[i + 1].serial) for i in range(start, 3)]
        assert [_step_sets(s) for s in steps] == [_expected(vs[i], vs[i + 1])
                                                 for i in range(start, 3)]
    assert store.journal_steps(ORIGIN, 13) == []
    assert store.journal_steps(ORIGIN, 9) is None
    assert store.journal_steps(N("example.org."), 10) is None


def test_journal_steps_applied_to_an_older_copy_reproduce_the_zone(store):
    vs = versions()
    _load(store, vs)
    for start in range(3):
        writer = MemoryWriter(vs[start])
        query = ixfr_query(vs[start].serial)
        with store.snapshot() as snap:
            transfer = OutboundTransfer(query, snap.get_zone(ORIGIN), max_size=256)
            assert transfer.kind == TransferKind.INCREMENTAL
            messages = round_trip(transfer)  # read while the snapshot is open
        inbound = Inbound(ORIGIN, RType.IXFR, vs[start].serial, writer, query_id=query.id)
        assert _apply(messages, inbound)
        assert contents(writer.zone) == contents(vs[3])


def test_unchanged_reload_keeps_the_journal(store):
    vs = versions()
    _load(store, vs[:3])
    store.replace_zone_reference(Zone(ORIGIN, dict(vs[2].nodes)))
    assert store.journal_info(ORIGIN).entries == 2


@pytest.mark.parametrize("case", ["backwards", "same serial", "half circle", "no journal"])
def test_reloads_that_cannot_be_steps_clear_the_journal(store, case):
    vs = versions()
    _load(store, vs[:3])
    assert store.journal_info(ORIGIN).entries == 2
    changed = zone_v(12, users(40, start=1))
    if case == "backwards":
        store.replace_zone_reference(zone_v(5, users(40)))
    elif case == "same serial":
        store.replace_zone_reference(changed)
    elif case == "half circle":
        store.replace_zone_reference(zone_v((12 + HALF) % 2**32, users(40)))
    else:
        store.replace_zone_reference(vs[3], journal=False)
    assert store.journal_info(ORIGIN) is None
    assert store.journal_steps(ORIGIN, 10) is None


@pytest.mark.parametrize("case", ["same serial", "backwards"])
def test_no_step_starts_at_a_serial_whose_contents_changed_in_place(store, case):
    """Issue #17: a key added at serial 1 without a bump, then a bump to 2:
    the step 1 -> 2 held only the SOA, and a secondary holding the first
    version of serial 1 missed the key. Such a serial starts no step."""
    store.replace_zone_reference(zone_v(5, users(40)))
    store.replace_zone_reference(zone_v(6, users(40)))
    # a second version of serial 6, or a step back to 5 with new contents
    again = 6 if case == "same serial" else 5
    store.replace_zone_reference(zone_v(again, users(41)))
    store.replace_zone_reference(zone_v(7, users(41)))
    assert store.journal_steps(ORIGIN, again) is None  # a full transfer, not just the SOA
    store.replace_zone_reference(zone_v(8, users(42)))
    (step,) = store.journal_steps(ORIGIN, 7)  # journaling resumes after it
    assert [r.name.to_text() for r in step.iter_added()] == ["user41@example.com."]


def test_delete_zone_clears_the_journal(store):
    other = zone_v(1, users(20), origin=N("example.org."))
    _load(store, versions() + [other, zone_v(2, users(20, start=1), origin=N("example.org."))])
    assert store.delete_zone(ORIGIN)
    assert store.journal_info(ORIGIN) is None
    with store._env.begin() as txn:  # no key of the zone is left behind
        cursor = txn.cursor(db=store._journal)
        keys = list(cursor.iternext(values=False))
    assert keys and all(k.startswith(b"org\0example\0\x01") for k in keys)
    assert store.journal_info(N("example.org.")).entries == 1
    store.replace_zone_reference(versions()[0])  # a new life starts without history
    assert store.journal_info(ORIGIN) is None


def test_eviction_by_count(store, monkeypatch):
    monkeypatch.setattr(store_journal, "MAX_JOURNAL_ENTRIES", 3)
    for serial in range(1, 7):
        store.replace_zone_reference(zone_v(serial, users(50, start=serial)))
    info = store.journal_info(ORIGIN)
    assert (info.first, info.last, info.entries) == (3, 6, 3)
    assert store.journal_steps(ORIGIN, 2) is None
    assert len(store.journal_steps(ORIGIN, 3)) == 3
    with store._env.begin() as txn:
        assert txn.get(journal_key(ORIGIN, 2), db=store._journal) is None


def test_eviction_by_bytes(store, monkeypatch):
    zones = [zone_v(serial, users(50, start=serial)) for serial in range(1, 6)]
    _load(store, zones[:2])
    entry = store.journal_info(ORIGIN).bytes
    monkeypatch.setattr(store_journal, "MAX_JOURNAL_BYTES", 2 * entry + entry // 2)
    _load(store, zones[2:])
    info = store.journal_info(ORIGIN)
    assert (info.first, info.last, info.entries) == (3, 5, 2)
    assert info.bytes <= store_journal.MAX_JOURNAL_BYTES
    # an entry larger than the bound is not kept at all
    monkeypatch.setattr(store_journal, "MAX_JOURNAL_BYTES", entry // 2)
    store.replace_zone_reference(zone_v(6, users(50, start=6)))
    assert store.journal_info(ORIGIN) is None


def test_eviction_when_the_journal_outgrows_the_zone(store):
    # each reload replaces 2 of 13 records (+2 SOAs): 4 records per step,
    # so at most 3 steps (12 records) fit a 13-record zone
    for serial in range(1, 7):
        store.replace_zone_reference(zone_v(serial, {"fixed" + str(i): [i] for i in range(9)}
                                  | {"moving": [100 + serial]}))
    info = store.journal_info(ORIGIN)
    assert store.get_zone_info(ORIGIN).records == 13
    assert (info.entries, info.records, info.last) == (3, 12, 6)
    # one change larger than the zone: not journaled, history cleared
    store.replace_zone_reference(zone_v(7, users(10, start=500)))
    assert store.journal_info(ORIGIN) is None


def test_journal_survives_a_cycle_of_serials(store):
    # 0 -> 2**31-1 -> 2**32-2 -> 0 are three RFC 1982 increases back to 0
    serials = [0, HALF - 1, 2 * HALF - 2, 0, 5]
    for index, serial in enumerate(serials):
        store.replace_zone_reference(zone_v(serial, users(30, start=index)))
    info = store.journal_info(ORIGIN)
    # appending 0 -> 5 met an old entry from 0: the chain starts over
    assert (info.first, info.last, info.entries) == (0, 5, 1)
    assert store.journal_steps(ORIGIN, HALF - 1) is None


def test_replace_zone_failure_keeps_the_journal(store):
    vs = versions()
    _load(store, vs[:2])

    class Exploding(Zone):
        def iter_nodes(self):
            for count, item in enumerate(super().iter_nodes()):
                if count == 5:
                    raise RuntimeError("boom")
                yield item

    with pytest.raises(RuntimeError):
        store.replace_zone_reference(Exploding(ORIGIN, vs[2].nodes))
    assert _records(store) == list(vs[1].records())
    assert store.journal_info(ORIGIN).entries == 1


_owner = st.sampled_from(["a", "b", "c", "d", "e", "x.a", "y", "b.c"])


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(_owner, st.lists(st.integers(0, 5), min_size=1, max_size=3), max_size=8),
       st.dictionaries(_owner, st.lists(st.integers(0, 5), min_size=1, max_size=3), max_size=8))
def test_merge_reload_equals_a_fresh_load(first, second):
    old, new = zone_v(1, first), zone_v(2, second)
    with tempfile.TemporaryDirectory() as tmp, Store(tmp, map_size=MAP_SIZE) as store:
        store.replace_zone_reference(zone_v(1, {}, origin=N("a.example.com.")))  # a child zone inside
        store.replace_zone_reference(old)
        store.replace_zone_reference(new)
        assert _records(store) == list(new.records())
        assert store.get_zone_info(ORIGIN).records == len(new)
        assert _records(store, N("a.example.com.")) == list(
            zone_v(1, {}, origin=N("a.example.com.")).records())
        expected = _expected(old, new)
        steps = store.journal_steps(ORIGIN, 1)
        if 2 + len(expected[2]) + len(expected[3]) > len(new):
            assert steps is None  # bigger than the zone: not worth keeping
        else:
            assert [_step_sets(s) for s in steps] == [expected]


# -- the secondary's writer ------------------------------------------------------------------
def test_secondary_journals_what_it_applies(tmp_path):
    """primary -> secondary by IXFR, then secondary -> tertiary by IXFR."""
    vs = versions()
    with Store(tmp_path / "p", map_size=MAP_SIZE) as primary, \
            Store(tmp_path / "s", map_size=MAP_SIZE) as secondary:
        primary.replace_zone_reference(vs[0])
        secondary.replace_zone_reference(vs[0])
        _load(primary, vs[1:])
        with primary.snapshot() as snap:
            messages = round_trip(OutboundTransfer(ixfr_query(10), snap.get_zone(ORIGIN)))
        inbound = Inbound(ORIGIN, RType.IXFR, 10, secondary.zone_writer(ORIGIN))
        assert _apply(messages, inbound) and inbound.kind == TransferKind.INCREMENTAL
        assert _records(secondary) == list(vs[3].records())
        assert secondary.journal_info(ORIGIN) == primary.journal_info(ORIGIN)
        tertiary = MemoryWriter(vs[1])
        with secondary.snapshot() as snap:
            transfer = OutboundTransfer(ixfr_query(11), snap.get_zone(ORIGIN))
            assert transfer.kind == TransferKind.INCREMENTAL
            messages = round_trip(transfer)
        assert _apply(messages, Inbound(ORIGIN, RType.IXFR, 11, tertiary))
        assert contents(tertiary.zone) == contents(vs[3])


def test_full_transfer_over_an_older_copy_is_journaled(store):
    vs = versions()
    store.replace_zone_reference(vs[0])
    source = Zone(ORIGIN, vs[1].nodes)
    inbound = Inbound(ORIGIN, RType.AXFR, None, store.zone_writer(ORIGIN))
    assert _apply(OutboundTransfer(axfr_query(), MemorySource(source)), inbound)
    (step,) = store.journal_steps(ORIGIN, 10)
    assert _step_sets(step) == _expected(vs[0], vs[1])
    # without journaling, or into an empty store, there is no history
    inbound = Inbound(ORIGIN, RType.AXFR, None, store.zone_writer(ORIGIN, journal=False))
    assert _apply(OutboundTransfer(axfr_query(), MemorySource(vs[2])), inbound)
    assert store.journal_info(ORIGIN) is None


def test_writer_merges_owners_that_come_back(store):
    """Records of one owner need not arrive together."""
    a, b = N("a@example.com."), N("b@example.com.")
    records = [Record(a, RType.KEY, 60, key_rdata(1)), Record(b, RType.KEY, 60, key_rdata(2)),
               Record(a, RType.KEY, 60, key_rdata(3)), Record(a, RType.KEY, 60, key_rdata(1))]
    writer = store.zone_writer(ORIGIN)
    writer.begin_full()
    for record in records:
        writer.add(record)
    writer.commit(soa(4))
    assert set(_records(store)) == {soa(4), *records}
    assert store.get_zone_info(ORIGIN).records == 4  # the repeated record counted once


def test_writer_delta_errors_keep_the_zone(store):
    vs = versions()
    store.replace_zone_reference(vs[0])
    writer = store.zone_writer(ORIGIN)
    with pytest.raises(FormError, match="serial"):
        writer.begin_delta(soa(9))
    writer = store.zone_writer(ORIGIN)
    writer.begin_delta(soa(10))
    writer.delete(Record(N("user1@example.com."), RType.KEY, 300, key_rdata(1)))
    with pytest.raises(FormError, match="do not have"):
        writer.delete(Record(N("user1@example.com."), RType.KEY, 300, key_rdata(1)))
    for misuse, match in [(lambda: writer.add(soa(11)), "SOA"),
                          (lambda: writer.add(Record(N("a@example.org."), RType.KEY, 300,
                                                     key_rdata(1))), "outside"),
                          (lambda: writer.commit(Record(N("user2@example.com."), RType.KEY, 300,
                                                       key_rdata(1))), "zone's SOA"),
                          (lambda: writer.commit(soa(11)), "without additions' SOA")]:
        # Our misuse (the transfer reader checks a peer's records first):
        # StoreError, our side, not a peer's FORMERR.
        with pytest.raises(StoreError, match=match) as info:
            misuse()
        assert not isinstance(info.value, FormError) and info.value.remote is False
    writer.abort()
    writer.abort()
    assert _records(store) == list(vs[0].records())
    with pytest.raises(StoreError, match="no zone"):
        store.zone_writer(N("example.org.")).begin_delta(soa(1, N("example.org.")))
    store.replace_zone_reference(vs[1])  # failed begins released the write lock


def test_writer_is_bound_to_its_thread(store):
    store.replace_zone_reference(versions()[0])
    writer = store.zone_writer(ORIGIN)
    begun, release = threading.Event(), threading.Event()
    outcome = []

    def owner():
        writer.begin_full()
        begun.set()
        release.wait()
        writer.abort()
        outcome.append("aborted")

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        assert begun.wait(10)
        with pytest.raises(StoreError, match="thread"):
            writer.add(Record(N("a@example.com."), RType.KEY, 60, key_rdata(1)))
        with pytest.raises(StoreError, match="thread"):
            writer.abort()
    finally:
        release.set()
        thread.join()
    assert outcome == ["aborted"]
    store.replace_zone_reference(versions()[1])  # the write lock is free again
    assert store.get_zone_info(ORIGIN).serial == 11


def test_readonly_store_without_a_journal_db(tmp_path):
    path = tmp_path / "db"
    env = lmdb.open(str(path), max_dbs=4, map_size=MAP_SIZE)  # written by an older version
    env.open_db(ZONES_DB)
    env.open_db(NODES_DB)
    env.close()
    with Store(path, map_size=MAP_SIZE, readonly=True) as reader:
        assert reader.journal_info(ORIGIN) is None
        assert reader.journal_steps(ORIGIN, 1) is None
    with Store(path, map_size=MAP_SIZE) as writer:  # a writable open creates it
        _load(writer, versions()[:2])
        assert writer.journal_info(ORIGIN).entries == 1


@pytest.mark.parametrize("value", [b"\xc1", b"\x93\x01\x02\x03",
                                   b"\x95\x0b\x01\x02\x90\x90"])
def test_corrupt_journal_entry_is_store_error(store, value):
    _load(store, versions()[:2])
    with store._env.begin(write=True) as txn:
        txn.put(journal_key(ORIGIN, 10), value, db=store._env.open_db(JOURNAL_DB, txn=txn))
    with pytest.raises(StoreError):
        store.journal_steps(ORIGIN, 10)


# -- full transfers in bounded transactions ------------------------------------------------
def _area_keys(store: Store, area: int) -> list[bytes]:
    prefix = node_prefix(ORIGIN, area)
    with store._env.begin() as txn:
        cursor = txn.cursor(db=store._nodes)
        return [key for key in cursor.iternext(values=False) if key.startswith(prefix)]


def _writer_feed(store: Store, zone: Zone, *, stop_after: int | None = None, **kwargs):
    """A full transfer of `zone` through a writer committing every 3 nodes;
    returns the writer, left uncommitted when `stop_after` records were added."""
    writer = store.zone_writer(ORIGIN, txn_nodes=3, **kwargs)
    writer.begin_full()
    body = [r for r in zone.records() if r.rtype != RType.SOA]
    for count, record in enumerate(body):
        if count == stop_after:
            return writer
        writer.add(record)
    writer.commit(zone.soa)
    return writer


def test_full_transfer_switches_area_and_deletes_the_old_one(store):
    vs = versions()
    store.replace_zone_reference(vs[0])
    assert store.get_zone_info(ORIGIN).area == 1
    writer = _writer_feed(store, vs[1], stop_after=30)  # several transactions committed
    assert _records(store) == list(vs[0].records())  # readers still see the old zone
    assert len(_area_keys(store, 2)) >= 27
    with store.snapshot() as before:
        body = [r for r in vs[1].records() if r.rtype != RType.SOA]
        for record in body[30:]:
            writer.add(record)
        writer.commit(vs[1].soa)
        # MVCC: a snapshot taken before the switch keeps the old version,
        # even after the old area's nodes were deleted
        assert list(before.iter_records(ORIGIN)) == list(vs[0].records())
    assert _records(store) == list(vs[1].records())
    assert store.get_zone_info(ORIGIN).area == 2
    assert _area_keys(store, 1) == []
    (step,) = store.journal_steps(ORIGIN, 10)  # the change is journaled as before
    assert _step_sets(step) == _expected(vs[0], vs[1])
    _writer_feed(store, vs[2])  # and the next full transfer goes back to area 1
    assert store.get_zone_info(ORIGIN).area == 1 and _area_keys(store, 2) == []
    assert _records(store) == list(vs[2].records())


def test_aborted_full_transfer_leaves_the_zone_and_nothing_else(store):
    vs = versions()
    store.replace_zone_reference(vs[0])
    writer = _writer_feed(store, vs[1], stop_after=30)
    writer.abort()
    writer.abort()
    assert _records(store) == list(vs[0].records())
    assert _area_keys(store, 2) == []
    assert store.journal_info(ORIGIN) is None


def test_leftovers_of_a_cut_transfer_are_never_served_and_then_cleared(store):
    """A crash mid-transfer leaves committed nodes in the unserved area."""
    vs = versions()
    store.replace_zone_reference(vs[0])
    ghost = N("ghost@example.com.")
    node = {RType.KEY: RRset(60, (key_rdata(4242),))}
    with store._env.begin(write=True) as txn:
        txn.put(node_key(ORIGIN, ghost, 2), encode_node(node),
                db=store._env.open_db(NODES_DB, txn=txn))
    assert _records(store) == list(vs[0].records())
    with store.snapshot() as snap:  # also through the fast path's lookup
        zone_key, prefix = snap.mailbox_route(ORIGIN.store_key())
        assert zone_key == ORIGIN.store_key() and snap.node_reader()(prefix + b"ghost") is None
        assert snap.node_reader()(prefix + b"user1") is not None
    _writer_feed(store, vs[1])
    assert _records(store) == list(vs[1].records())
    assert _area_keys(store, 1) == []


def test_delta_after_an_area_switch_applies_to_the_served_area(store):
    vs = versions()
    store.replace_zone_reference(vs[0])
    _writer_feed(store, vs[1])
    with Store(store.path.parent / "p", map_size=MAP_SIZE) as primary:
        _load(primary, vs[1:3])
        with primary.snapshot() as snap:
            messages = round_trip(OutboundTransfer(ixfr_query(11), snap.get_zone(ORIGIN)))
    inbound = Inbound(ORIGIN, RType.IXFR, 11, store.zone_writer(ORIGIN))
    assert _apply(messages, inbound) and inbound.kind == TransferKind.INCREMENTAL
    assert _records(store) == list(vs[2].records())
    assert store.get_zone_info(ORIGIN).area == 2 and _area_keys(store, 1) == []
    store.replace_zone_reference(vs[3])  # a compile over it keeps the area
    assert _records(store) == list(vs[3].records())
    assert store.get_zone_info(ORIGIN).area == 2 and _area_keys(store, 1) == []


@pytest.mark.parametrize("area", [0, 3, "1"])
def test_unknown_node_area_is_store_error(store, area):
    import msgpack

    store.replace_zone_reference(versions()[0])
    with store._env.begin(write=True) as txn:
        zones = store._env.open_db(ZONES_DB, txn=txn)
        meta = msgpack.unpackb(txn.get(zone_prefix(ORIGIN), db=zones))
        meta["area"] = area
        txn.put(zone_prefix(ORIGIN), msgpack.packb(meta), db=zones)
    with pytest.raises(StoreError):
        store.get_zone_info(ORIGIN)
    with store.snapshot() as snap, pytest.raises(StoreError):
        snap.mailbox_route(ORIGIN.store_key())


def test_full_transfer_from_the_store_is_byte_identical_to_one_from_memory(store):
    """The store splices stored bytes; the in-memory source packs records."""
    vs = versions()
    store.replace_zone_reference(vs[3])
    query = axfr_query()
    with store.snapshot() as snap:
        from_store = [m.to_wire() for m in OutboundTransfer(query, snap.get_zone(ORIGIN),
                                                            max_size=512)]
    from_memory = [m.to_wire() for m in OutboundTransfer(query, MemorySource(vs[3]),
                                                         max_size=512)]
    assert len(from_store) > 3 and from_store == from_memory


def test_full_transfer_below_another_zone_falls_back_from_appends(store):
    """Appends only work at the end of the DB: a zone sorting after this one
    turns them into ordinary puts, with the same result."""
    other = zone_v(5, users(3), origin=N("example.net."))
    store.replace_zone_reference(other)
    vs = versions()
    _writer_feed(store, vs[0])
    _writer_feed(store, vs[1])
    assert _records(store) == list(vs[1].records())
    assert _records(store, N("example.net.")) == list(other.records())


# -- the diff of two versions of a zone's nodes (for the journal) ---------------------
def _batched(items: list[tuple[bytes, bytes]], cuts: list[int]):
    """`items` as (keys, values) batches cut at `cuts`, as `_suffix_batches` gives them."""
    bounds = sorted({0, len(items), *(c % (len(items) + 1) for c in cuts)})
    for lo, hi in zip(bounds, bounds[1:]):
        yield [k for k, _ in items[lo:hi]], [v for _, v in items[lo:hi]]


_NODE_KEYS = st.text(alphabet="ab", max_size=3).map(str.encode)  # short: many shared keys
_NODE_VALUES = st.sampled_from([b"", b"1", b"2"])


@settings(max_examples=400, deadline=None)
@given(old=st.dictionaries(_NODE_KEYS, _NODE_VALUES, max_size=14),
       new=st.dictionaries(_NODE_KEYS, _NODE_VALUES, max_size=14),
       old_cuts=st.lists(st.integers(0, 20), max_size=5),
       new_cuts=st.lists(st.integers(0, 20), max_size=5))
def test_diff_sorted_yields_every_difference_in_key_order(old, new, old_cuts, new_cuts):
    expected = [(key, old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys())
                if old.get(key) != new.get(key)]
    got = diff_sorted(_batched(sorted(old.items()), old_cuts),
                                    _batched(sorted(new.items()), new_cuts))
    assert list(got) == expected


def test_diff_sorted_of_long_equal_runs_around_changes():
    keys = [b"%05d" % n for n in range(3000)]
    old = {key: b"v" for key in keys}
    new = dict(old)
    new[keys[0]] = b"w"  # first
    del new[keys[1700]]  # inside a batch
    new[b"01700x"] = b"v"  # added right after it
    new[keys[-1]] = b"w"  # last
    new[b"99999"] = b"v"  # after every old key
    expected = [(keys[0], b"v", b"w"), (keys[1700], b"v", None), (b"01700x", None, b"v"),
                (keys[-1], b"v", b"w"), (b"99999", None, b"v")]
    for old_size, new_size in ((256, 256), (100, 7), (1, 3000)):
        got = diff_sorted(
            _batched(sorted(old.items()), list(range(0, 4000, old_size))),
            _batched(sorted(new.items()), list(range(0, 4000, new_size))))
        assert list(got) == expected


def test_suffix_batches_stop_at_the_prefix(tmp_path):
    env = lmdb.open(str(tmp_path / "env"), max_dbs=1)
    items = [(b"a" + b"%03d" % n, b"x%d" % n) for n in range(10)]
    with env.begin(write=True) as txn:
        for key, value in [(b"0", b"before"), *items, (b"b", b"after"), (b"b1", b"after")]:
            txn.put(key, value)
    with env.begin() as txn:
        for size in (1, 3, 10, 11, 100):
            batches = list(suffix_batches(txn.cursor(), b"a", size))
            assert all(keys for keys, _ in batches) and all(len(keys) <= size
                                                            for keys, _ in batches)
            assert [(b"a" + k, v) for keys, values in batches
                    for k, v in zip(keys, values)] == items
        assert list(suffix_batches(txn.cursor(), b"c")) == []
        assert list(suffix_batches(txn.cursor(), b"a5")) == []
    env.close()


@pytest.mark.parametrize("batch", [1, 3, 5, 4096])
@pytest.mark.parametrize("under", [0, 1, 5, 6, 10])
def test_delete_prefix_deletes_exactly_the_prefix(tmp_path, monkeypatch, batch, under):
    monkeypatch.setattr(store_env, "DELETE_BATCH", batch)
    env = lmdb.open(str(tmp_path / "env"), max_dbs=1)
    others = [b"0", b"a", b"b", b"b0", b"b2", b"bz", b"c"]  # around the prefix b"b1"
    mine = [b"b1" + b"%02d" % n for n in range(under)]
    with env.begin(write=True) as txn:
        for key in others + mine:
            txn.put(key, b"v")
        assert delete_prefix(txn.cursor(), b"b1", limit=3) == min(3, under)
        assert list(txn.cursor().iternext(values=False)) == sorted(others + mine[3:])
        assert delete_prefix(txn.cursor(), b"b1") == max(0, under - 3)
        assert list(txn.cursor().iternext(values=False)) == others
        assert delete_prefix(txn.cursor(), b"d") == 0
        assert delete_prefix(txn.cursor(), b"c") == 1  # the last key
        assert list(txn.cursor().iternext(values=False)) == others[:-1]
    env.close()
