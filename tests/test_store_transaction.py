"""The zone transaction (`Store.begin`), its commit with the journal, and the
update log, on real LMDB environments in tmp_path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keyresolve.store.journal as store_journal
import keyresolve.store.transaction as store_transaction
from keyresolve.authority.xfr import Inbound, MemorySource, MemoryWriter, OutboundTransfer
from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import FormError, StoreError
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import Record
from keyresolve.store.transaction import ChangeSet
from keyresolve.store.zones import Store
from keyresolve.zonedata.model import Zone

from .test_xfr import (MAP_SIZE, ORIGIN, _apply, axfr_query, contents, ixfr_query, key_rdata,
                       round_trip, soa, users, zone_v)

N = Name.from_text
NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "db", map_size=MAP_SIZE) as s:
        s.replace_zone_reference(zone_v(10, users(5)))
        yield s


def key(local: str, seed: int, ttl: int = 300) -> Record:
    return Record(N(f"{local}@example.com."), RType.KEY, ttl, key_rdata(seed))


def _records(store: Store) -> list[Record]:
    with store.snapshot() as snap:
        return list(snap.iter_records(ORIGIN))


def _zone_text(zone: Zone) -> str:
    return "".join(record.to_text() + "\n" for record in zone.records())


def _state(store: Store) -> tuple:
    return (_records(store), store.get_zone_info(ORIGIN).records,
            store.journal_info(ORIGIN), store.update_log(ORIGIN))


# -- the operations ------------------------------------------------------------------
def test_add_delete_replace_and_commit(store):
    with store.begin(ORIGIN) as txn:
        txn.add(key("new", 100))
        txn.add(key("user1", 101))  # a second key in the RRset
        txn.delete(key("user2", 2))  # the node goes
        txn.replace_node(N("user3@example.com."), [key("user3", 103), key("user3", 104)])
        txn.replace_node(N("user4@example.com."), [])
        change = txn.commit(now=NOW)
    expected = zone_v(11, {"user0": [0], "user1": [1, 101], "user3": [103, 104], "new": [100]})
    assert _records(store) == list(expected.records())
    info = store.get_zone_info(ORIGIN)
    assert (info.serial, info.records) == (11, len(expected))
    assert change.serial == 11 and change.old_serial == 10


def test_reads_see_the_transactions_own_writes_and_readers_do_not(store):
    owner = N("new@example.com.")
    with store.begin(ORIGIN) as txn:
        assert txn.get_node(owner) is None
        assert txn.get_node(N("a@example.org.")) is None  # outside the zone
        txn.add(key("new", 100))
        txn.add(key("other", 7))  # another owner: the first is written back
        assert txn.get_node(owner)[RType.KEY].rdatas == (key_rdata(100),)
        txn.add(key("new", 101))
        assert txn.get_node(owner)[RType.KEY].rdatas == (key_rdata(100), key_rdata(101))
        txn.delete(key("user1", 1))
        assert txn.get_node(N("user1@example.com.")) is None
        with store.snapshot() as snap:  # another reader sees the zone as stored
            assert snap.get_zone(ORIGIN).get_node(owner) is None
        txn.commit(now=NOW)
    with store.snapshot() as snap:
        assert snap.get_zone(ORIGIN).get_node(owner)[RType.KEY].rdatas == (
            key_rdata(100), key_rdata(101))


def test_abort_and_leaving_without_commit_change_nothing(store):
    before = _state(store)
    txn = store.begin(ORIGIN)
    txn.add(key("new", 100))
    txn.log_update(b"entry")
    txn.abort()
    txn.abort()  # idempotent
    with pytest.raises(StoreError, match="ended"):
        txn.add(key("new", 101))
    with store.begin(ORIGIN) as txn:
        txn.delete(key("user1", 1))
    with pytest.raises(RuntimeError), store.begin(ORIGIN) as txn:
        txn.delete(key("user1", 1))
        raise RuntimeError
    assert _state(store) == before


def test_refused_changes(store):
    before = _state(store)
    with store.begin(ORIGIN) as txn:
        with pytest.raises(FormError):
            txn.add(key("user1", 1))  # held already
        with pytest.raises(FormError):
            txn.delete(key("user1", 99))  # not held
        with pytest.raises(StoreError, match="SOA"):
            txn.add(soa(12))
        with pytest.raises(StoreError, match="outside"):
            txn.add(Record(N("a@example.org."), RType.KEY, 300, key_rdata(1)))
        with pytest.raises(StoreError, match="owner"):
            txn.replace_node(N("user1@example.com."), [key("user2", 5)])
        with pytest.raises(StoreError, match="bytes"):
            txn.log_update("text")  # type: ignore[arg-type]
        txn.add(key("new", 100))
        with pytest.raises(StoreError, match="not higher"):
            txn.commit(soa(10))  # the serial must increase
    assert _state(store) == before
    with pytest.raises(StoreError, match="no zone"):
        store.begin(N("example.org."))


def test_commit_with_an_explicit_soa_and_serial_policies(store):
    with store.begin(ORIGIN) as txn:
        txn.add(key("new", 100))
        txn.commit(soa(40, ttl=900))
    with store.snapshot() as snap:
        assert snap.get_zone(ORIGIN).soa == soa(40, ttl=900)
    with store.begin(ORIGIN) as txn:
        txn.delete(key("new", 100))
        assert txn.commit(serial_policy="unixtime", now=NOW).serial == int(NOW)
    with store.begin(ORIGIN) as txn:  # only the serial changes
        change = txn.commit(now=NOW)
    assert change.serial == int(NOW) + 1
    assert [(s.removed, s.added) for s in change.steps] == [((), ())]
    assert store.journal_steps(ORIGIN, 40)[-1].serial_to == int(NOW) + 1


# -- the journal, atomically --------------------------------------------------------------
def test_the_journal_entry_is_exactly_the_change_and_ixfr_serves_it(store):
    old = zone_v(10, users(5))
    with store.begin(ORIGIN) as txn:
        txn.add(key("new", 100))
        txn.replace_node(N("user3@example.com."), [key("user3", 103, ttl=60)])
        txn.delete(key("user4", 4))
        txn.add(key("user4", 4))  # back as it was: no change
        txn.add(key("gone", 7))
        txn.delete(key("gone", 7))  # added and removed: no change
        txn.commit(now=NOW)
    [step] = store.journal_steps(ORIGIN, 10)
    assert (step.serial_from, step.serial_to) == (10, 11)
    assert list(step.iter_removed()) == [key("user3", 3)]
    assert set(step.iter_added()) == {key("new", 100), key("user3", 103, ttl=60)}
    writer = MemoryWriter(old)
    with store.snapshot() as snap:
        messages = round_trip(OutboundTransfer(ixfr_query(10), snap.get_zone(ORIGIN)))
    assert _apply(messages, Inbound(ORIGIN, RType.IXFR, 10, writer))
    assert writer.steps and contents(writer.zone) == set(_records(store))


def test_an_error_mid_commit_leaves_neither_change_nor_journal(store, monkeypatch):
    before = _state(store)

    def failing(*args, **kwargs):
        raise OSError("disk gone")

    for module, name in ((store_transaction, "update_log_append"),
                         (store_transaction, "journal_steps_append")):
        with monkeypatch.context() as patch:
            patch.setattr(module, name, failing)
            with store.begin(ORIGIN) as txn:
                txn.add(key("new", 100))
                txn.log_update(b"entry")
                with pytest.raises(OSError):
                    txn.commit(now=NOW)
        assert _state(store) == before

    def hook(change: ChangeSet) -> None:
        raise RuntimeError("the signer failed")

    store.commit_hooks.append(hook)
    with store.begin(ORIGIN) as txn:
        txn.add(key("new", 100))
        with pytest.raises(RuntimeError):
            txn.commit(now=NOW)
    assert _state(store) == before


def test_commit_hooks_see_every_change(store, tmp_path):
    seen: list[ChangeSet] = []
    store.commit_hooks.append(seen.append)
    with store.begin(ORIGIN, hooks=[seen.append]) as txn:
        txn.add(key("new", 100))
        txn.log_update(b"registered new")
        txn.commit(now=NOW)
    assert len(seen) == 2 and seen[0] is seen[1]
    [step] = seen[0].steps
    assert step.added == (key("new", 100),) and seen[0].update_log == (b"registered new",)
    store.load_zone_file("z.zone", ORIGIN, text=_zone_text(zone_v(12, users(5))))
    assert seen[-1].serial == 12 and seen[-1].old_serial == 11 and len(seen[-1].steps) == 1


# -- the update log ---------------------------------------------------------------------
def _register(store: Store, local: str, seed: int) -> None:
    with store.begin(ORIGIN) as txn:
        txn.add(key(local, seed))
        txn.log_update(f"{local}:{seed}".encode())
        txn.commit(now=NOW)


def test_the_update_log_survives_reopen_reload_transfer_and_eviction(tmp_path, monkeypatch):
    monkeypatch.setattr(store_journal, "MAX_JOURNAL_ENTRIES", 2)
    path = tmp_path / "db"
    with Store(path, map_size=MAP_SIZE) as store:
        store.replace_zone_reference(zone_v(10, users(5)))
        for seed in range(5):
            _register(store, f"r{seed}", seed)
        assert store.journal_info(ORIGIN).entries == 2  # evicted, the log is not
    entries = [f"r{seed}:{seed}".encode() for seed in range(5)]
    with Store(path, map_size=MAP_SIZE) as store:
        assert store.update_log(ORIGIN) == entries
        assert store.update_log(ORIGIN, 3) == entries[3:]
        store.load_zone_file("z.zone", ORIGIN, text=_zone_text(zone_v(20, users(5))))
        store.replace_zone_reference(zone_v(21, users(6)), journal=False)
        writer = store.zone_writer(ORIGIN)
        assert _apply(OutboundTransfer(axfr_query(), MemorySource(zone_v(22, users(3)))),
                      Inbound(ORIGIN, RType.AXFR, None, writer))
        store.clear_journal(ORIGIN)
        assert store.update_log(ORIGIN) == entries
        assert store.update_log(N("example.org.")) == []
    with Store(path, readonly=True) as store:
        assert store.update_log(ORIGIN) == entries


def test_update_logs_of_nested_zones_stay_apart(store):
    child = N("eng.example.com.")
    store.replace_zone_reference(zone_v(1, users(1), origin=child))
    _register(store, "a", 1)
    with store.begin(child) as txn:
        txn.log_update(b"child")
        txn.commit(now=NOW)
    assert store.update_log(ORIGIN) == [b"a:1"] and store.update_log(child) == [b"child"]


# -- the transaction against the reference ---------------------------------------------------
LOCALS = ["user0", "user1", "user2", "a", "b"]
_op = st.tuples(st.sampled_from(["add", "delete", "replace"]), st.sampled_from(LOCALS),
                st.lists(st.integers(0, 6), max_size=3, unique=True))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_op, max_size=6), min_size=1, max_size=5))
def test_transactions_equal_the_reference_and_the_journal_replays(transactions):
    model: dict[str, list[int]] = {"user0": [0], "user1": [1], "user2": [2]}
    start = zone_v(10, model)
    serial = 10
    with tempfile.TemporaryDirectory() as tmp, \
            Store(Path(tmp) / "t", map_size=MAP_SIZE) as store, \
            Store(Path(tmp) / "ref", map_size=MAP_SIZE) as reference:
        store.replace_zone_reference(start)
        reference.replace_zone_reference(start)
        for ops in transactions:
            with store.begin(ORIGIN) as txn:
                for kind, local, seeds in ops:
                    held = model.get(local, [])
                    if kind == "add" and seeds and seeds[0] not in held:
                        txn.add(key(local, seeds[0]))
                        model[local] = held + [seeds[0]]
                    elif kind == "delete" and held and seeds:
                        gone = held[seeds[0] % len(held)]
                        txn.delete(key(local, gone))
                        model[local] = [s for s in held if s != gone]
                    elif kind == "replace":
                        txn.replace_node(N(f"{local}@example.com."),
                                         [key(local, s) for s in seeds])
                        model[local] = list(seeds)
                    if not model.get(local):
                        model.pop(local, None)
                txn.commit(now=NOW)
            serial += 1
            reference.replace_zone_reference(zone_v(serial, model))
        assert _records(store) == _records(reference)
        assert store.get_zone_info(ORIGIN).records == reference.get_zone_info(ORIGIN).records
        writer = MemoryWriter(start)
        with store.snapshot() as snap:
            messages = round_trip(OutboundTransfer(ixfr_query(10), snap.get_zone(ORIGIN)))
        assert _apply(messages, Inbound(ORIGIN, RType.IXFR, 10, writer))
        assert contents(writer.zone) == contents(zone_v(serial, model))


def test_misuse_of_a_transaction_is_our_error_not_a_peers(store):
    """An SOA added, a name outside the zone, a record of another owner, a
    commit without the zone's SOA: our own misuse, StoreError (our side),
    never the FORMERR of a peer's malformed message."""
    misuses = [lambda txn: txn.add(soa(12)), lambda txn: txn.delete(soa(10)),
               lambda txn: txn.add(Record(N("a@example.org."), RType.KEY, 300, key_rdata(1))),
               lambda txn: txn.replace_node(N("user1@example.com."), [key("user2", 5)]),
               lambda txn: txn.commit(key("user1", 1)),
               lambda txn: txn.commit(soa(12, N("example.org.")))]
    for misuse in misuses:
        with store.begin(ORIGIN) as txn:
            with pytest.raises(StoreError) as info:
                misuse(txn)
            assert not isinstance(info.value, FormError) and info.value.remote is False
