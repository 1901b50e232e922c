"""Zone transfers and NOTIFY (keyresolve.authority.xfr), sans-IO and through the LMDB writer.

`soa`, `zone_v`, `delta`, `round_trip`, `contents` are reused by
tests/test_store_journal.py.
"""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.errors import FormError, KeyresolveError, PeerError, ServerFailure
from keyresolve.protocol.message import Message, Question, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, KEY, NS, SOA, KeyAlgorithm, KeyUsage, Record
from keyresolve.protocol.serial import HALF
from keyresolve.store.zones import Store
from keyresolve.authority.xfr import (MAX_XFR_MESSAGE, Delta, Inbound, MemorySource, MemoryWriter,
                            OutboundTransfer, TransferKind, check_notify_response, diff_records,
                            make_notify, make_transfer_query, notify_response, outbound_axfr,
                            outbound_ixfr, parse_request, validate_notify)
from keyresolve.zonedata.model import Zone

N = Name.from_text
ORIGIN = N("example.com.")
MAP_SIZE = 1 << 26


# -- zones ------------------------------------------------------------------------
def soa(serial: int, origin: Name = ORIGIN, ttl: int = 600) -> Record:
    return Record(origin, RType.SOA, ttl,
                  SOA(N("ns1", origin), N("hostmaster@", origin), serial, 7200, 3600,
                      1209600, 300))


def key_rdata(seed: int) -> KEY:
    return KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, seed.to_bytes(32, "big"))


def zone_v(serial: int, keys: dict[str, list[int]], *, ttl: int = 300,
           origin: Name = ORIGIN) -> Zone:
    """A zone: SOA, NS with glue, and at each mailbox local part its keys."""
    records = [soa(serial, origin),
               Record(origin, RType.NS, 3600, NS(N("ns1", origin))),
               Record(N("ns1", origin), RType.ADDR, 3600, ADDR.parse("192.0.2.1:53"))]
    for local, seeds in keys.items():
        records += [Record(N(f"{local}@", origin), RType.KEY, ttl, key_rdata(s)) for s in seeds]
    return Zone.from_records(origin, records)


def users(count: int, start: int = 0) -> dict[str, list[int]]:
    return {f"user{i}": [i] for i in range(start, start + count)}


def contents(zone: Zone) -> set[Record]:
    return set(zone.records())


def delta(old: Zone, new: Zone) -> Delta:
    """The journal step from `old` to `new`, as a primary would record it."""
    removed, added = diff_records(old.records(), new.records())
    return Delta(old.soa, new.soa, tuple(r for r in removed if r.rtype != RType.SOA),
                 tuple(r for r in added if r.rtype != RType.SOA))


def versions() -> list[Zone]:
    """Four versions of one zone, serials 10..13, each a few changes apart."""
    base = users(40)
    v1 = zone_v(10, base)
    k2 = dict(base)
    del k2["user3"]
    k2["new1"] = [1001]
    k2["user5"] = [5, 1005]  # a second key in an RRset
    v2 = zone_v(11, k2)
    k3 = dict(k2)
    k3["user5"] = [1005]
    k3["user7"] = [1007]  # key replaced
    del k3["user8"]
    v3 = zone_v(12, k3)
    v4 = zone_v(13, k3, ttl=300)
    v4.nodes[N("user9@example.com.")] = zone_v(13, {"user9": [9]}, ttl=60).nodes[
        N("user9@example.com.")]  # TTL change only
    return [v1, v2, v3, v4]


def round_trip(messages) -> list[Message]:
    """Through the codec, as a peer would receive them."""
    return [Message.from_wire(m.to_wire()) for m in messages]


def answers(messages) -> list[Record]:
    return [r for m in messages
            for r in (m.answer if m.packed_answer is None else round_trip([m])[0].answer)]


def axfr_query(msg_id: int = 0x0A0A) -> Message:
    return make_transfer_query(ORIGIN, RType.AXFR, msg_id=msg_id)


def ixfr_query(serial: int, msg_id: int = 0x0B0B) -> Message:
    return make_transfer_query(ORIGIN, RType.IXFR, soa(serial), msg_id=msg_id)


# -- requests ------------------------------------------------------------------------
def test_parse_requests():
    assert parse_request(round_trip([axfr_query()])[0]) == (
        parse_request(axfr_query()))
    request = parse_request(round_trip([ixfr_query(77)])[0])
    assert (request.origin, request.rtype, request.serial) == (ORIGIN, RType.IXFR, 77)
    request = parse_request(axfr_query())
    assert (request.origin, request.rtype, request.serial) == (ORIGIN, RType.AXFR, None)


def _bad_requests():
    def q(**changes):
        msg = ixfr_query(5)
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    key_record = Record(N("a@example.com."), RType.KEY, 60, key_rdata(1))
    return {
        "query opcode": q(opcode=Opcode.QUERY),
        "response": q(qr=True),
        "no question": q(question=None),
        "AXFR type in QUERY": make_query(ORIGIN, RType.AXFR),
        "type KEY": q(question=Question(ORIGIN, RType.KEY)),
        "mailbox zone": Message(opcode=Opcode.TRANSFER,
                                question=Question(N("a@example.com."), RType.AXFR)),
        "IXFR without SOA": q(authority=[]),
        "IXFR two SOAs": q(authority=[soa(5), soa(6)]),
        "IXFR not SOA": q(authority=[key_record]),
        "IXFR other zone's SOA": q(authority=[soa(5, N("example.org."))]),
        "answer records": q(answer=[soa(5)]),
        "additional records": q(additional=[key_record]),
        "AXFR with authority": Message(opcode=Opcode.TRANSFER,
                                       question=Question(ORIGIN, RType.AXFR),
                                       authority=[soa(1)]),
    }


@pytest.mark.parametrize("name", list(_bad_requests()))
def test_malformed_requests_are_formerr(name):
    with pytest.raises(FormError):
        parse_request(_bad_requests()[name])


def test_make_transfer_query_checks_its_arguments():
    with pytest.raises(ValueError):
        make_transfer_query(ORIGIN, RType.IXFR)
    with pytest.raises(ValueError):
        make_transfer_query(ORIGIN, RType.AXFR, soa(1))
    with pytest.raises(ValueError):
        make_transfer_query(ORIGIN, RType.KEY)


# -- outbound AXFR ----------------------------------------------------------------------
def test_axfr_packs_greedily_within_max_size():
    zone = zone_v(7, users(600))
    query = axfr_query()
    max_size = 2048
    messages = list(OutboundTransfer(query, MemorySource(zone), max_size=max_size))
    assert len(messages) > 5
    pack = msgpack.Packer().pack
    for index, msg in enumerate(messages):
        size = len(msg.to_wire())
        assert size <= max_size
        if index + 1 < len(messages):  # greedy: the next record would not have fit
            first_next = answers([messages[index + 1]])[0]
            assert size + len(pack(first_next.to_wire())) > max_size - 2
        assert (msg.id, msg.opcode, msg.qr, msg.aa, msg.rcode) == (
            query.id, Opcode.TRANSFER, True, True, Rcode.NOERROR)
        assert msg.question == query.question
        assert not msg.authority and not msg.additional
    records = answers(round_trip(messages))
    assert records[0] == zone.soa and records[-1] == zone.soa
    body = records[1:-1]
    assert len(body) == len(set(body)) == len(zone) - 1  # every record exactly once
    assert set(body) == contents(zone) - {zone.soa}
    assert body == [r for r in zone.records() if r.rtype != RType.SOA]  # store order


def test_axfr_default_size_and_soa_only_zone():
    zone = zone_v(1, users(3000))
    messages = list(OutboundTransfer(axfr_query(), MemorySource(zone)))
    assert all(len(m.to_wire()) <= MAX_XFR_MESSAGE for m in messages)
    assert len(messages) >= 2
    only_soa = Zone.from_records(ORIGIN, [soa(3)])
    messages = list(OutboundTransfer(axfr_query(), MemorySource(only_soa)))
    assert answers(messages) == [soa(3), soa(3)]


def test_axfr_is_lazy():
    pulled = []

    def records():
        for record in zone_v(1, users(2000)).records():
            pulled.append(record)
            yield record

    stream = outbound_axfr(axfr_query(), soa(1), records(), max_size=1024)
    first = next(stream)
    assert len(pulled) < 40 and first.answer_count < 40


def test_axfr_record_too_large_is_servfail():
    with pytest.raises(ServerFailure):
        list(outbound_axfr(axfr_query(), soa(1), [soa(1)], max_size=80))
    with pytest.raises(ValueError):
        list(outbound_axfr(axfr_query(), soa(1), [soa(1)], max_size=20))


# -- outbound IXFR -------------------------------------------------------------------------
def _source(count: int = 4) -> MemorySource:
    vs = versions()[:count]
    return MemorySource(vs[-1], [delta(a, b) for a, b in zip(vs, vs[1:])])


@pytest.mark.parametrize("client_serial", [13, 14, 13 + HALF - 1])
def test_ixfr_up_to_date_is_one_soa(client_serial):
    query = ixfr_query(client_serial)
    transfer = OutboundTransfer(query, _source())
    assert transfer.kind == TransferKind.UP_TO_DATE
    messages = round_trip(transfer)
    assert len(messages) == 1 and answers(messages) == [soa(13)]
    assert messages[0].id == query.id and messages[0].question == query.question


def _expected_ixfr(steps: list[Delta], new_soa: Record) -> list[Record]:
    out = [new_soa]
    for step in steps:
        out += [step.old_soa, *step.removed, step.new_soa, *step.added]
    return out + [new_soa]


@pytest.mark.parametrize(("client_serial", "steps"), [(12, 1), (10, 3)])
def test_ixfr_sends_the_journal_steps(client_serial, steps):
    source = _source()
    transfer = OutboundTransfer(ixfr_query(client_serial), source, max_size=512)
    assert transfer.kind == TransferKind.INCREMENTAL
    assert len(transfer.steps) == steps
    messages = round_trip(transfer)
    assert all(len(m.to_wire()) <= 512 for m in messages)
    assert answers(messages) == _expected_ixfr(list(source.steps[-steps:]), soa(13))
    assert all(m.question == Question(ORIGIN, RType.IXFR) for m in messages)


def test_ixfr_falls_back_to_axfr():
    source = _source()
    # journal does not reach back to 9, or to a serial 2**31 away
    for serial in (9, (13 + HALF) % 2**32):
        transfer = OutboundTransfer(ixfr_query(serial), source)
        assert transfer.kind == TransferKind.FULL
        records = answers(round_trip(transfer))
        assert records[0] == records[-1] == soa(13)
        assert set(records[1:-1]) == contents(source.zone) - {soa(13)}
    # a chain with more records than the zone: the zone is cheaper
    small_old = zone_v(1, users(10))
    small_new = zone_v(2, users(10, start=100))
    source = MemorySource(small_new, [delta(small_old, small_new)])
    assert OutboundTransfer(ixfr_query(1), source).kind == TransferKind.FULL
    # and a gap in the chain
    vs = versions()
    gapped = MemorySource(vs[3], [delta(vs[0], vs[1]), delta(vs[2], vs[3])])
    assert OutboundTransfer(ixfr_query(10), gapped).kind == TransferKind.FULL
    assert OutboundTransfer(ixfr_query(12), gapped).kind == TransferKind.INCREMENTAL


def test_outbound_transfer_needs_the_asked_zone():
    with pytest.raises(ValueError):
        OutboundTransfer(make_transfer_query(N("example.org."), RType.AXFR), _source())
    with pytest.raises(FormError):
        OutboundTransfer(make_query(ORIGIN, RType.KEY), _source())
    empty = outbound_ixfr(ixfr_query(13), soa(13), [])
    assert answers(empty) == [soa(13)]


# -- inbound ---------------------------------------------------------------------------
def _apply(messages, inbound: Inbound) -> bool:
    done = False
    for msg in round_trip(messages):
        done = inbound.process_message(msg)
    return done


def test_inbound_axfr_into_memory():
    zone = zone_v(7, users(500))
    query = axfr_query()
    writer = MemoryWriter()
    inbound = Inbound(ORIGIN, RType.AXFR, None, writer, query_id=query.id)
    assert _apply(OutboundTransfer(query, MemorySource(zone), max_size=1024), inbound)
    assert inbound.kind == TransferKind.FULL and inbound.serial == 7
    assert inbound.messages > 1 and inbound.records == len(zone) + 1
    assert contents(writer.zone) == contents(zone) and writer.commits == 1


@pytest.mark.parametrize("start", [0, 1, 2])
def test_inbound_ixfr_into_memory(start):
    vs = versions()
    source = _source()
    writer = MemoryWriter(vs[start])
    query = ixfr_query(vs[start].serial)
    inbound = Inbound(ORIGIN, RType.IXFR, vs[start].serial, writer, query_id=query.id)
    assert _apply(OutboundTransfer(query, source, max_size=400), inbound)
    assert inbound.kind == TransferKind.INCREMENTAL and inbound.serial == 13
    assert contents(writer.zone) == contents(vs[3])
    assert [(s.old_soa, s.new_soa, set(s.removed), set(s.added)) for s in writer.steps] == [
        (s.old_soa, s.new_soa, set(s.removed), set(s.added)) for s in source.steps[start:]]
    assert contents(vs[start]) != contents(vs[3])  # the writer did not modify its input


def test_inbound_ixfr_answered_with_axfr_format():
    vs = versions()
    writer = MemoryWriter(vs[0])
    source = MemorySource(vs[3])  # no journal
    inbound = Inbound(ORIGIN, RType.IXFR, 10, writer)
    assert _apply(OutboundTransfer(ixfr_query(10), source), inbound)
    assert inbound.kind == TransferKind.FULL
    assert contents(writer.zone) == contents(vs[3])


@pytest.mark.parametrize("ours", [13, 14])
def test_inbound_up_to_date(ours):
    writer = MemoryWriter(zone_v(ours, {}))
    inbound = Inbound(ORIGIN, RType.IXFR, ours, writer)
    assert _apply(OutboundTransfer(ixfr_query(ours), _source()), inbound)
    assert inbound.kind == TransferKind.UP_TO_DATE and inbound.serial == ours
    assert writer.commits == 0


def test_inbound_first_soa_alone_is_not_up_to_date_when_newer():
    # RFC 1995: the first message may hold only the new SOA; more follows.
    vs = versions()
    messages = round_trip(OutboundTransfer(ixfr_query(10), _source()))
    records = answers(messages)
    split = [Message(id=m.id, opcode=m.opcode, qr=True, aa=True, question=m.question,
                     answer=[r]) for m, r in zip([messages[0]] * len(records), records)]
    writer = MemoryWriter(vs[0])
    inbound = Inbound(ORIGIN, RType.IXFR, 10, writer)
    results = [inbound.process_message(m) for m in round_trip(split)]
    assert results == [False] * (len(split) - 1) + [True]
    assert contents(writer.zone) == contents(vs[3])


def test_inbound_later_messages_may_omit_the_question():
    zone = zone_v(7, users(300))
    messages = round_trip(OutboundTransfer(axfr_query(), MemorySource(zone), max_size=1024))
    for msg in messages[1:]:
        msg.question = None
    writer = MemoryWriter()
    assert _apply(messages, Inbound(ORIGIN, RType.AXFR, None, writer))
    assert contents(writer.zone) == contents(zone)


def test_message_after_completion_is_an_error():
    writer = MemoryWriter()
    inbound = Inbound(ORIGIN, RType.AXFR, None, writer)
    assert inbound.process_message(_response([soa(2), KEYREC, soa(2)]))
    with pytest.raises(FormError):
        inbound.process_message(_response([KEYREC]))
    inbound.abort()  # no effect once complete
    assert writer.commits == 1 and contents(writer.zone) == {soa(2), KEYREC}


def test_inbound_arguments():
    with pytest.raises(ValueError):
        Inbound(ORIGIN, RType.IXFR, None, MemoryWriter())
    with pytest.raises(ValueError):
        Inbound(ORIGIN, RType.AXFR, 5, MemoryWriter())
    with pytest.raises(ValueError):
        Inbound(ORIGIN, RType.KEY, None, MemoryWriter())


# -- inbound errors: nothing applied ------------------------------------------------------
OTHER = Record(N("x@example.org."), RType.KEY, 60, key_rdata(5))
KEYREC = Record(N("k@example.com."), RType.KEY, 60, key_rdata(6))


def _response(records, **flags) -> Message:
    msg = Message(id=1, opcode=Opcode.TRANSFER, qr=True, aa=True,
                  question=Question(ORIGIN, flags.pop("rtype", RType.AXFR)), answer=list(records))
    for key, value in flags.items():
        setattr(msg, key, value)
    return msg


def _ixfr_stream() -> list[Record]:
    return answers(OutboundTransfer(ixfr_query(10), _source()))


def _replace(records: list[Record], index: int, record: Record) -> list[Record]:
    out = list(records)
    out[index] = record
    return out


#: name -> (rtype, serial_from, messages, error)
BAD_STREAMS = {
    "first record not SOA": (RType.AXFR, None, [_response([KEYREC, soa(2)])], FormError),
    "first SOA of another zone": (RType.AXFR, None,
                                  [_response([soa(2, N("example.org.")), KEYREC])], FormError),
    "record outside zone": (RType.AXFR, None, [_response([soa(2), OTHER, soa(2)])], FormError),
    "final SOA differs": (RType.AXFR, None, [_response([soa(2), KEYREC, soa(3)])], FormError),
    "SOA below the apex": (RType.AXFR, None,
                           [_response([soa(2), soa(2, N("sub.example.com.")), soa(2)])],
                           FormError),
    "peer REFUSED": (RType.AXFR, None, [_response([], rcode=Rcode.REFUSED)], PeerError),
    "peer NOTAUTH later": (RType.AXFR, None, [_response([soa(2), KEYREC]),
                                              _response([], rcode=Rcode.NOTAUTH)], PeerError),
    "wrong question": (RType.AXFR, None,
                       [_response([soa(2), KEYREC, soa(2)], rtype=RType.IXFR)], FormError),
    "wrong question name": (RType.AXFR, None,
                            [_response([soa(2), KEYREC, soa(2)],
                                       question=Question(N("example.org."), RType.AXFR))],
                            FormError),
    "wrong id": (RType.AXFR, None, [_response([soa(2), KEYREC, soa(2)], id=2)], FormError),
    "not a response": (RType.AXFR, None, [_response([soa(2), KEYREC, soa(2)], qr=False)],
                       FormError),
    "QUERY opcode": (RType.AXFR, None,
                     [_response([soa(2), KEYREC, soa(2)], opcode=Opcode.QUERY)], FormError),
    "truncated flag": (RType.AXFR, None, [_response([soa(2), KEYREC, soa(2)], tc=True)],
                       FormError),
    "records in authority": (RType.AXFR, None,
                             [_response([soa(2), soa(2)], authority=[KEYREC])], FormError),
    "records after final SOA": (RType.AXFR, None, [_response([soa(2), KEYREC, soa(2), KEYREC])],
                                FormError),
    "AXFR with a different second SOA": (RType.AXFR, None,
                                         [_response([soa(2), soa(1), KEYREC, soa(2)])],
                                         FormError),
    "records after up-to-date SOA": (RType.IXFR, 13,
                                     [_response([soa(13), KEYREC], rtype=RType.IXFR)],
                                     FormError),
    "IXFR not from our serial": (RType.IXFR, 9, [_response(_ixfr_stream(), rtype=RType.IXFR)],
                                 FormError),
    "IXFR step gap": (RType.IXFR, 10,
                      [_response(_replace(_ixfr_stream(), -10, soa(11)), rtype=RType.IXFR)],
                      FormError),
    "IXFR step backwards": (RType.IXFR, 10,
                            [_response([soa(13), soa(10), soa(9), soa(9), soa(13)],
                                       rtype=RType.IXFR)], FormError),
    "IXFR final SOA differs": (RType.IXFR, 10,
                               [_response([soa(13), soa(10), soa(13), soa(13, ttl=5),
                                           soa(13, ttl=5)], rtype=RType.IXFR)], FormError),
    "IXFR deletes a record we lack": (RType.IXFR, 10,
                                      [_response([soa(13), soa(10), KEYREC, soa(13), soa(13)],
                                                 rtype=RType.IXFR)], FormError),
    "IXFR adds a record we have": (RType.IXFR, 10,
                                   [_response([soa(13), soa(10), soa(13),
                                               Record(N("user1@example.com."), RType.KEY, 300,
                                                      key_rdata(1)), soa(13)],
                                              rtype=RType.IXFR)], FormError),
}


class RecordingWriter(MemoryWriter):
    """A MemoryWriter that records the calls it gets."""

    def __init__(self, zone=None):
        super().__init__(zone)
        self.calls: list[str] = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in ("begin_full", "begin_delta", "begin_additions", "delete", "add", "commit",
                    "abort"):
            super().__getattribute__("calls").append(name)
        return attr


@pytest.mark.parametrize("name", list(BAD_STREAMS))
def test_bad_streams_apply_nothing(name):
    rtype, serial_from, messages, error = BAD_STREAMS[name]
    before = versions()[0]
    writer = RecordingWriter(before)
    inbound = Inbound(ORIGIN, rtype, serial_from, writer, query_id=1)
    with pytest.raises(error):
        for msg in round_trip(messages):
            inbound.process_message(msg)
    assert "commit" not in writer.calls or writer.calls[-1] == "abort"
    assert writer.zone is before and writer.commits == 0
    began = any(c.startswith("begin") for c in writer.calls)
    assert (writer.calls[-1:] == ["abort"]) == began
    with pytest.raises(FormError):  # a failed transfer stays failed
        inbound.process_message(messages[0])


def test_bad_streams_leave_the_store_untouched(tmp_path):
    vs = versions()
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(vs[0])
        for name, (rtype, serial_from, messages, error) in BAD_STREAMS.items():
            inbound = Inbound(ORIGIN, rtype, serial_from, store.zone_writer(ORIGIN), query_id=1)
            with pytest.raises(error):
                for msg in round_trip(messages):
                    inbound.process_message(msg)
            with store.snapshot() as snap:
                assert set(snap.iter_records(ORIGIN)) == contents(vs[0]), name
            assert store.get_zone_info(ORIGIN).serial == 10


# -- inbound through the LMDB writer -------------------------------------------------------
def test_axfr_into_store(tmp_path):
    zone = zone_v(7, users(800))
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        inbound = Inbound(ORIGIN, RType.AXFR, None, store.zone_writer(ORIGIN, primary="p:53"))
        assert _apply(OutboundTransfer(axfr_query(), MemorySource(zone), max_size=2048), inbound)
        with store.snapshot() as snap:
            assert set(snap.iter_records(ORIGIN)) == contents(zone)
            assert snap.get_zone(ORIGIN).soa == zone.soa
        info = store.get_zone_info(ORIGIN)
        assert (info.serial, info.records, info.sources, info.primary) == (7, len(zone), (),
                                                                            "p:53")
        assert info.transferred_at is not None


def test_ixfr_into_store(tmp_path):
    vs = versions()
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(vs[0])
        inbound = Inbound(ORIGIN, RType.IXFR, 10, store.zone_writer(ORIGIN))
        assert _apply(OutboundTransfer(ixfr_query(10), _source(), max_size=300), inbound)
        with store.snapshot() as snap:
            assert list(snap.iter_records(ORIGIN)) == list(vs[3].records())
        assert store.get_zone_info(ORIGIN).records == len(vs[3])


@pytest.mark.parametrize("rtype", [RType.AXFR, RType.IXFR])
def test_truncated_stream_keeps_the_old_zone(tmp_path, rtype):
    vs = versions()
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(vs[0])
        query = axfr_query() if rtype == RType.AXFR else ixfr_query(10)
        messages = round_trip(OutboundTransfer(query, _source(), max_size=300))
        assert len(messages) > 2
        inbound = Inbound(ORIGIN, rtype, None if rtype == RType.AXFR else 10,
                          store.zone_writer(ORIGIN))
        for msg in messages[:-1]:
            assert not inbound.process_message(msg)
        inbound.abort()  # the TCP stream broke
        inbound.abort()
        with store.snapshot() as snap:
            assert list(snap.iter_records(ORIGIN)) == list(vs[0].records())
        assert store.get_zone_info(ORIGIN).serial == 10
        store.replace_zone_reference(vs[1])  # the write lock was released
        assert store.get_zone_info(ORIGIN).serial == 11


# -- random streams ---------------------------------------------------------------------
_POOL = [soa(1), soa(2), soa(2, ttl=9), soa(3), KEYREC,
         Record(N("k@example.com."), RType.KEY, 60, key_rdata(7)),
         Record(N("user1@example.com."), RType.KEY, 300, key_rdata(1)),
         Record(ORIGIN, RType.NS, 3600, NS(N("ns1.example.com."))), OTHER,
         soa(2, N("sub.example.com."))]

_messages = st.lists(
    st.builds(lambda recs, rcode, qr, rtype, msg_id: _response(
        recs, rcode=rcode, qr=qr, rtype=rtype, id=msg_id),
        st.lists(st.sampled_from(_POOL), max_size=6),
        st.sampled_from([0, 0, 0, 0, 5]), st.sampled_from([True, True, True, False]),
        st.sampled_from([RType.IXFR, RType.IXFR, RType.AXFR]), st.sampled_from([1, 1, 1, 2])),
    min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(_messages, st.sampled_from([1, 2, 3]))
def test_random_streams_fail_cleanly(messages, serial_from):
    start = Zone.from_records(ORIGIN, [soa(serial_from), Record(
        N("user1@example.com."), RType.KEY, 300, key_rdata(1))])
    writer = RecordingWriter(start)
    inbound = Inbound(ORIGIN, RType.IXFR, serial_from, writer, query_id=1)
    try:
        done = False
        for msg in messages:
            done = inbound.process_message(msg)
            if done:  # the shell stops reading here
                break
    except KeyresolveError:
        assert writer.commits == 0 and writer.zone is start
        assert inbound.kind is None or "abort" in writer.calls or not any(
            c.startswith("begin") for c in writer.calls)
        return
    if done:
        assert inbound.done
        assert writer.commits == (0 if inbound.kind == TransferKind.UP_TO_DATE else 1)
        if writer.commits:
            assert writer.zone.serial == inbound.serial
        committed = writer.zone
        with pytest.raises(FormError):
            inbound.process_message(messages[0])
        assert writer.zone is committed
    else:
        assert writer.commits == 0
        inbound.abort()
        assert writer.zone is start


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3), st.lists(st.integers(1, 40), max_size=12), st.booleans())
def test_any_message_boundaries_give_the_same_zone(start, cuts, incremental):
    vs = versions()
    query = ixfr_query(vs[start].serial) if incremental else axfr_query()
    records = answers(OutboundTransfer(query, _source()))
    bounds = sorted({min(c, len(records)) for c in cuts} | {0, len(records)})
    messages = [_response(records[a:b], rtype=query.question.rtype, id=query.id)
                for a, b in zip(bounds, bounds[1:])]
    writer = MemoryWriter(vs[start])
    inbound = Inbound(ORIGIN, query.question.rtype, vs[start].serial if incremental else None,
                      writer, query_id=query.id)
    results = [inbound.process_message(m) for m in round_trip(messages)]
    assert results[-1] and not any(results[:-1])
    assert contents(writer.zone) == contents(vs[3])
    assert writer.commits == (0 if inbound.kind == TransferKind.UP_TO_DATE else 1)


# -- diffs ------------------------------------------------------------------------------
_NAMES = [N("example.com."), N("a@example.com."), N("b@example.com."), N("x.example.com."),
          N("a@x.example.com.")]
_RDATAS = {RType.KEY: [key_rdata(i) for i in range(3)],
           RType.NS: [NS(N("ns1.example.com.")), NS(N("ns2.example.com."))],
           RType.ADDR: [ADDR.parse("192.0.2.1:53")]}
_records = st.builds(
    lambda name, rtype, ttl, index: Record(name, rtype, ttl,
                                           _RDATAS[rtype][index % len(_RDATAS[rtype])]),
    st.sampled_from(_NAMES), st.sampled_from(list(_RDATAS)), st.sampled_from([60, 300]),
    st.integers(0, 2))


def _store_order(records: set[Record], seed: int) -> list[Record]:
    """Sorted by (owner key, type), records of one RRset shuffled."""
    out = sorted(records, key=lambda r: (r.name.store_key(), r.rtype, random.Random(
        hash((seed, r))).random()))
    return out


@settings(max_examples=200, deadline=None)
@given(st.sets(_records, max_size=20), st.sets(_records, max_size=20), st.integers())
def test_diff_records_is_set_difference(old, new, seed):
    removed, added = diff_records(iter(_store_order(old, seed)),
                                  iter(_store_order(new, seed + 1)))
    assert len(removed) == len(set(removed)) and len(added) == len(set(added))
    assert set(removed) == old - new
    assert set(added) == new - old


def test_diff_records_examples_and_order_check():
    vs = versions()
    removed, added = diff_records(vs[2].records(), vs[3].records())
    assert {(str(r.name), r.ttl) for r in removed if r.rtype == RType.KEY} == {
        ("user9@example.com.", 300)}
    assert {(str(r.name), r.ttl) for r in added if r.rtype == RType.KEY} == {
        ("user9@example.com.", 60)}
    assert diff_records([], []) == ([], [])
    with pytest.raises(ValueError):
        diff_records(list(vs[0].records())[::-1], [])


# -- NOTIFY ---------------------------------------------------------------------------------
def test_notify_round_trip():
    query = Message.from_wire(make_notify(ORIGIN, soa(42), msg_id=9).to_wire())
    assert (query.opcode, query.aa, query.qr) == (Opcode.NOTIFY, True, False)
    notify = validate_notify(query)
    assert (notify.origin, notify.serial) == (ORIGIN, 42)
    assert validate_notify(make_notify(ORIGIN)).serial is None
    response = Message.from_wire(notify_response(query).to_wire())
    assert (response.id, response.qr, response.aa, response.question) == (
        9, True, True, Question(ORIGIN, RType.SOA))
    check_notify_response(response, query)
    refused = notify_response(query)
    refused.rcode = Rcode.REFUSED
    with pytest.raises(PeerError) as info:
        check_notify_response(refused, query)
    assert info.value.rcode == Rcode.REFUSED
    other = notify_response(query)
    other.id = 10
    with pytest.raises(FormError):
        check_notify_response(other, query)


@pytest.mark.parametrize("changes", [
    {"opcode": Opcode.QUERY},
    {"qr": True},
    {"question": None},
    {"question": Question(ORIGIN, RType.KEY)},
    {"question": Question(N("a@example.com."), RType.SOA)},
    {"answer": [KEYREC]},
    {"answer": [soa(1, N("example.org."))]},
    {"answer": [soa(1), soa(2)]},
    {"authority": [soa(1)]},
])
def test_bad_notify_is_formerr(changes):
    msg = make_notify(ORIGIN, soa(1))
    for key, value in changes.items():
        setattr(msg, key, value)
    with pytest.raises(FormError):
        validate_notify(msg)


def test_make_notify_checks_the_hint():
    with pytest.raises(ValueError):
        make_notify(ORIGIN, soa(1, N("example.org.")))


# -- IXFR when the serials are exactly 2**31 apart (docs/protocol.md 8C.3) ------------
@pytest.mark.parametrize("soa_only", [False, True])
def test_inbound_accepts_the_full_zone_when_serials_are_2_31_apart(soa_only):
    # RFC 1982 leaves the comparison undefined: the sender answers with the
    # whole zone in AXFR form, and the receiver must take it.
    ours = (13 + HALF) % 2**32
    source = MemorySource(zone_v(13, {})) if soa_only else _source()
    transfer = OutboundTransfer(ixfr_query(ours), source)
    assert transfer.kind == TransferKind.FULL
    writer = MemoryWriter(zone_v(ours, users(3)))
    inbound = Inbound(ORIGIN, RType.IXFR, ours, writer)
    assert _apply(transfer, inbound)
    assert inbound.kind == TransferKind.FULL and inbound.serial == 13
    assert contents(writer.zone) == contents(source.zone) and writer.commits == 1


def test_inbound_accepts_a_full_zone_from_an_older_serial():
    # A first SOA not newer than ours followed by the zone in AXFR form is a
    # full transfer (the primary's serial went back); alone, it is "up to date".
    vs = versions()
    writer = MemoryWriter(zone_v(20, {}))
    inbound = Inbound(ORIGIN, RType.IXFR, 20, writer)
    records = answers(round_trip(OutboundTransfer(axfr_query(), MemorySource(vs[3]))))
    assert _apply([_response(records, rtype=RType.IXFR)], inbound)
    assert inbound.kind == TransferKind.FULL and contents(writer.zone) == contents(vs[3])


def test_inbound_rejects_ixfr_format_from_a_serial_not_newer():
    ours = (13 + HALF) % 2**32
    inbound = Inbound(ORIGIN, RType.IXFR, ours, MemoryWriter(zone_v(ours, {})))
    with pytest.raises(FormError):
        _apply([_response([soa(13), soa(ours), soa(13), soa(13)], rtype=RType.IXFR)], inbound)


def test_an_soa_given_to_a_memory_writer_is_our_misuse():
    """`Inbound` never hands a writer an SOA (the first and last SOA frame a
    transfer): one given is our misuse, StoreError, as the store's writer."""
    from keyresolve.protocol.errors import FormError, StoreError

    writer = MemoryWriter()
    writer.begin_full()
    for misuse in (writer.add, writer.delete):
        with pytest.raises(StoreError, match="set by commit") as info:
            misuse(soa(2))
        assert not isinstance(info.value, FormError) and info.value.remote is False
