"""The full transfer's fast path: `xfr.KeyPacker` and `ZoneWriter.add_packed_keys`.

The reference is the record path it stands in for: `Record.from_wire` then
`ZoneWriter.add`. Messages decoded with ``raw_answer`` must leave the store
byte for byte as the same messages decoded into records, whatever the
order of the records, and reject what the strict decoder rejects.
"""

from __future__ import annotations

import lmdb
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import FormError
from keyresolve.protocol.message import Message
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ALIAS, KEY, MAX_TTL, KeyAlgorithm, KeyUsage, Record
from keyresolve.store.zones import Store
from keyresolve.authority.xfr import Inbound, KeyPacker, MemorySource, MemoryWriter, OutboundTransfer

from .test_xfr import MAP_SIZE, ORIGIN, axfr_query, soa, zone_v

N = Name.from_text
KEY_TYPE = int(RType.KEY)
X25519 = (int(KeyAlgorithm.X25519), int(KeyUsage.ENCRYPT))
ED25519 = (int(KeyAlgorithm.ED25519), int(KeyUsage.SIGN))


def packed_key(fields):
    """What `Record.from_wire` makes of `fields`, as `KeyPacker` would give it,
    or None where it raises or is not a mailbox KEY record in the zone."""
    try:
        record = Record.from_wire(fields, Name.from_wire_uncached)
    except FormError:
        return None
    key = record.name.store_key()
    if (record.rtype != RType.KEY or not record.name.is_mailbox
            or not record.name.is_subdomain(ORIGIN)):
        return None
    return key[len(ORIGIN.store_key()):], record.ttl, msgpack.packb(record.rdata.to_wire())


# -- KeyPacker against Record.from_wire ---------------------------------------------
TAKEN = [
    ("alice@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("a.b+c@sub.example.com.", KEY_TYPE, 0, (*ED25519, 0, b"\x01" * 32)),
    ("x@deep.er.example.com.", KEY_TYPE, MAX_TTL, (*X25519, 0, bytes(32))),
    ("x" * 64 + "@example.com.", KEY_TYPE, 1, (*X25519, 0, bytes(32))),
    ("x@example.com.", KEY_TYPE, 1, (int(KeyAlgorithm.X448), int(KeyUsage.ENCRYPT), 0,
                                     bytes(56))),
]
LEFT = [  # to Record.from_wire: rejected, or taken but not on the fast path
    ("Alice@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),  # not canonical
    ("alice@example.com.", KEY_TYPE, 300, (*X25519, 1, bytes(32))),  # flags
    ("alice@example.org.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),  # outside
    ("alice@com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),  # above the zone
    ("alice@example.com", KEY_TYPE, 300, (*X25519, 0, bytes(32))),  # not absolute
    ("alice@.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),  # not a mailbox
    ("@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("a@b@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("a..b@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("x" * 65 + "@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("alice@ex..ample.com.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("alice@example.com.", True, 300, (*X25519, 0, bytes(32))),
    ("alice@example.com.", int(RType.ALIAS), 300, ("bob@example.com.",)),
    ("alice@example.com.", KEY_TYPE, MAX_TTL + 1, (*X25519, 0, bytes(32))),
    ("alice@example.com.", KEY_TYPE, -1, (*X25519, 0, bytes(32))),
    ("alice@example.com.", KEY_TYPE, True, (*X25519, 0, bytes(32))),
    ("alice@example.com.", KEY_TYPE, 300, (True, 1, 0, bytes(32))),
    ("alice@example.com.", KEY_TYPE, 300, (*X25519, False, bytes(32))),
    ("alice@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(31))),
    ("alice@example.com.", KEY_TYPE, 300, (*X25519, 0, "x" * 32)),
    ("alice@example.com.", KEY_TYPE, 300, (X25519[0], ED25519[1], 0, bytes(32))),
    ("alice@example.com.", KEY_TYPE, 300, (*X25519, 0)),
    ("alice@example.com.", KEY_TYPE, 300, "abcd"),
    ("alice@example.com.", KEY_TYPE, 300),
    "abcd",
    7,
    None,
]


@pytest.mark.parametrize("fields", TAKEN)
def test_packer_takes_these_as_the_record_path(fields) -> None:
    got = KeyPacker(ORIGIN)(fields)
    assert got is not None and got == packed_key(fields)


@pytest.mark.parametrize("fields", LEFT)
def test_packer_leaves_these_to_the_record_path(fields) -> None:
    assert KeyPacker(ORIGIN)(fields) is None


_NAMES = st.sampled_from(["alice@example.com.", "Bob@example.com.", "c@x.example.com.",
                          "d@example.net.", "e@", "example.com.", "f@x..example.com.",
                          "g@example.com", "é@example.com.", "h@-x.example.com."])
_SCALARS = st.one_of(st.integers(-2, 2**32 + 1), st.booleans(), st.none(),
                     st.floats(allow_nan=False), st.binary(max_size=3))
_RDATA = st.one_of(
    st.tuples(st.sampled_from([1, 2, 3, 4, 0, True]), st.sampled_from([1, 2, 0, True]),
              st.sampled_from([0, 1, False, 0.0]), st.binary(min_size=30, max_size=58)),
    st.tuples(_SCALARS), st.tuples(_SCALARS, _SCALARS, _SCALARS, _SCALARS))


@settings(max_examples=600, deadline=None)
@given(fields=st.one_of(
    st.tuples(_NAMES, st.sampled_from([KEY_TYPE, KEY_TYPE, 1, True, float(KEY_TYPE)]),
              st.one_of(st.sampled_from([0, 300, MAX_TTL, MAX_TTL + 1, -1]), _SCALARS),
              _RDATA),
    st.tuples(_NAMES, _SCALARS, _SCALARS), _SCALARS))
def test_packer_agrees_with_the_record_path(fields) -> None:
    got = KeyPacker(ORIGIN)(fields)
    if got is not None:
        assert got == packed_key(fields)


# -- a full transfer: raw messages against decoded ones ---------------------------------
def _wire_messages(records: list[Record], query: Message, per_message: int = 3) -> list[bytes]:
    """A full transfer of `records` in this order, `per_message` a message."""
    body = [soa(5), *records, soa(5)]
    out = []
    for i in range(0, len(body), per_message):
        out.append(Message(id=query.id, opcode=query.opcode, qr=True, aa=True,
                           question=query.question if i == 0 else None,
                           answer=body[i:i + per_message]).to_wire())
    return out


def _transfer(path, wires: list[bytes], raw: bool, query: Message, txn_nodes: int = 2):
    with Store(path, map_size=MAP_SIZE) as store:
        writer = store.zone_writer(ORIGIN)
        writer.txn_nodes = txn_nodes  # many transactions, many appends
        inbound = Inbound(ORIGIN, query.question.rtype, None, writer, query_id=query.id)
        done = False
        for wire in wires:
            done = inbound.process_message(Message.from_wire(wire, cache_names=False,
                                                             raw_answer=raw))
        assert done
        return inbound.records


def _dump(path) -> list:
    env = lmdb.open(str(path), max_dbs=6, readonly=True)
    try:
        with env.begin() as txn:
            return [(name, list(txn.cursor(db=env.open_db(name, txn=txn))))
                    for name in (b"nodes",)]
    finally:
        env.close()


def _key(local: str, seed: int, ttl: int = 300, flags: int = 0) -> Record:
    return Record(N(local, ORIGIN), RType.KEY, ttl,
                  KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, seed.to_bytes(32, "big"), flags))


ORDERS = {
    "store order": [_key("a@", 1), _key("a@", 2), _key("b@", 1), _key("c@x", 1)],
    "owner comes back": [_key("b@", 1), _key("a@", 1), _key("b@", 2), _key("a@", 3)],
    "duplicate with a new TTL": [_key("a@", 1), _key("a@", 1, ttl=60), _key("b@", 1),
                                 _key("b@", 2, ttl=60), _key("b@", 2)],
    "flags and canonical forms mixed": [
        _key("a@", 1), _key("a@", 2, flags=1), _key("b@", 1), _key("b@", 2, flags=1),
        _key("b@", 3)],
    "other types at the same owner": [
        Record(N("al@", ORIGIN), RType.ALIAS, 300, ALIAS(N("a@", ORIGIN))), _key("al@", 1),
        _key("b@", 1), Record(N("b@", ORIGIN), RType.ALIAS, 300, ALIAS(N("a@", ORIGIN))),
        _key("c@", 1)],
}


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_raw_transfer_stores_what_the_record_path_stores(tmp_path, name) -> None:
    base = zone_v(5, {}).records()
    records = [r for r in base if r.rtype != RType.SOA] + ORDERS[name]
    query = axfr_query()
    wires = _wire_messages(records, query)
    counts = [_transfer(tmp_path / kind, wires, raw, query)
              for kind, raw in (("records", False), ("raw", True))]
    assert counts[0] == counts[1]
    assert _dump(tmp_path / "raw") == _dump(tmp_path / "records")
    with Store(tmp_path / "raw", map_size=MAP_SIZE) as a, \
            Store(tmp_path / "records", map_size=MAP_SIZE) as b:
        assert a.get_zone_info(ORIGIN).records == b.get_zone_info(ORIGIN).records


def test_raw_transfer_of_a_zone_over_an_older_copy(tmp_path) -> None:
    """Ours: store order, 1024-byte messages; the second full transfer goes to
    the other node area and is journaled as with records."""
    first = zone_v(7, {f"u{i}": [i, i + 1000] for i in range(300)})
    second = zone_v(8, {f"u{i}": [i] for i in range(0, 400, 2)})
    for kind, raw in (("records", False), ("raw", True)):
        for zone in (first, second):
            query = axfr_query()
            wires = [m.to_wire() for m in OutboundTransfer(query, MemorySource(zone),
                                                           max_size=1024)]
            _transfer(tmp_path / kind, wires, raw, query, txn_nodes=50)
    raw_env = lmdb.open(str(tmp_path / "raw"), max_dbs=6, readonly=True)
    rec_env = lmdb.open(str(tmp_path / "records"), max_dbs=6, readonly=True)
    try:
        for name in (b"nodes", b"journal"):
            with raw_env.begin() as a, rec_env.begin() as b:
                assert list(a.cursor(db=raw_env.open_db(name, txn=a))) == \
                    list(b.cursor(db=rec_env.open_db(name, txn=b)))
    finally:
        raw_env.close()
        rec_env.close()
    writer = MemoryWriter()  # no packed path: the reference zone
    query = axfr_query()
    inbound = Inbound(ORIGIN, query.question.rtype, None, writer, query_id=query.id)
    for message in OutboundTransfer(query, MemorySource(second), max_size=1024):
        inbound.process_message(Message.from_wire(message.to_wire(), raw_answer=True))
    with Store(tmp_path / "raw", map_size=MAP_SIZE) as store, store.snapshot() as snap:
        assert set(snap.iter_records(ORIGIN)) == set(writer.zone.records())


@pytest.mark.parametrize("bad", [
    ("bob@example.com.", KEY_TYPE, 300, (*X25519, 0, bytes(31))),
    ("bob@example.com.", KEY_TYPE, MAX_TTL + 1, (*X25519, 0, bytes(32))),
    ("bob@example.org.", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
    ("Bob@", KEY_TYPE, 300, (*X25519, 0, bytes(32))),
])
def test_a_bad_record_in_a_raw_message_fails_the_transfer(tmp_path, bad) -> None:
    """Strict as before: the transfer fails, nothing is committed."""
    query = axfr_query()
    records = [r for r in zone_v(5, {"a": [1]}).records() if r.rtype != RType.SOA]
    body = [msgpack.unpackb(msgpack.packb(r.to_wire()), use_list=False)
            for r in [soa(5), *records]] + [bad, msgpack.unpackb(msgpack.packb(
                soa(5).to_wire()), use_list=False)]
    wire = Message(id=query.id, opcode=query.opcode, qr=True, aa=True,
                   question=query.question).encode_unsigned()
    wire = wire[:7 + len(msgpack.packb(query.question.to_wire()))] + msgpack.packb(body) + \
        msgpack.packb([]) * 2 + msgpack.packb(1232)
    message = Message.from_wire(wire, raw_answer=True)
    assert len(message.raw_answer) == len(body)
    with Store(tmp_path, map_size=MAP_SIZE) as store:
        inbound = Inbound(ORIGIN, query.question.rtype, None, store.zone_writer(ORIGIN),
                          query_id=query.id)
        with pytest.raises(FormError):
            inbound.process_message(message)
        assert store.get_zone_info(ORIGIN) is None
