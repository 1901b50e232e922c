"""The stored-node format (`keyresolve.zonedata.nodes`): its encoding is canonical, and
every piece the compilers and the fast path build or read by hand agrees
with `encode_node`."""

from __future__ import annotations

import base64
import ipaddress

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.files.local import LOCAL_FILES
from keyresolve.zonedata.bulkcompile import compile_bulk
from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import StoreError
from keyresolve.protocol.message import array_header
from keyresolve.protocol.names import Name
from keyresolve.zonedata.nodes import (ENTRY, KEY_NODE_HEAD, KEY_RDATA_HEADS, RDATAS_AT,
                              decode_node, encode_node, key_node, key_node_head, node_head,
                              node_tuples, node_types, skip)
from keyresolve.protocol.records import (ADDR, ALIAS, KEY, KEY_ALGORITHMS, NS, SOA, KeyAlgorithm,
                                Record, soa_serial)
from keyresolve.zonedata.model import RRset
from keyresolve.zonedata.zonefile import MemoryNodes, compile_nodes

N = Name.from_text
#: TTLs across msgpack's int encodings: fixint, uint8, uint16, uint32.
TTLS = st.one_of(st.integers(0, 127), st.integers(128, 255), st.integers(256, 65535),
                 st.integers(65536, 2**31 - 1))
U32 = st.integers(0, 2**32 - 1)
LABELS = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
DOMAINS = st.lists(LABELS, min_size=1, max_size=3).map(lambda ls: N(".".join(ls) + "."))
MAILBOXES = st.tuples(st.from_regex(r"[a-z0-9_.+-]{0,10}[a-z0-9]", fullmatch=True)
                      .filter(lambda s: ".." not in s and not s.startswith(".")),
                      DOMAINS).map(lambda t: N(f"{t[0]}@{t[1]}"))


@st.composite
def keys(draw) -> KEY:
    algorithm = draw(st.sampled_from(list(KEY_ALGORITHMS)))
    length, usage = KEY_ALGORITHMS[algorithm]
    flags = draw(st.one_of(st.just(0), st.integers(0, 0xFFFF)))
    return KEY(algorithm, usage, draw(st.binary(min_size=length, max_size=length)), flags)


ADDRS = st.builds(lambda ip, port: ADDR(ipaddress.ip_address(ip), port),
                  st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
                  st.integers(1, 65535))
SOAS = st.builds(SOA, DOMAINS, MAILBOXES, U32, U32, U32, U32, U32)
RDATAS = {RType.KEY: keys(), RType.ADDR: ADDRS, RType.NS: DOMAINS.map(NS),
          RType.ALIAS: st.one_of(DOMAINS, MAILBOXES).map(ALIAS), RType.SOA: SOAS}


@st.composite
def nodes(draw) -> dict:
    """Every node shape: one to five types, one to twenty rdatas of each
    (past the 15 of a fixarray), any TTL encoding."""
    types = draw(st.lists(st.sampled_from(list(RDATAS)), min_size=1, max_size=5, unique=True))
    node = {}
    for rtype in types:
        many = 1 if rtype in (RType.SOA, RType.ALIAS) else 17
        rdatas = draw(st.lists(RDATAS[rtype], min_size=1, max_size=many, unique=True))
        node[int(rtype)] = RRset(draw(TTLS), tuple(rdatas))
    return node


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=nodes())
def test_the_encoding_is_canonical(node):
    value = encode_node(node)
    assert value == msgpack.packb(msgpack.unpackb(value))  # msgpack's shortest forms
    assert decode_node(value) == node
    assert encode_node(decode_node(value)) == value
    assert encode_node(node, msgpack.Packer().pack) == value
    assert node_types(value) == sorted(node)
    if all(len(rrset.rdatas) < 16 for rrset in node.values()):
        assert skip(value, 0, 1) == len(value)  # the fast path walks all of it
    else:
        with pytest.raises(KeyError):  # an array16: the fast path leaves it to the slow one
            skip(value, 0, 1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=nodes())
def test_the_pieces_built_by_hand_are_the_encodings(node):
    value = encode_node(node)
    assert value.startswith(array_header(len(node)))
    if len(node) == 1:
        (rtype, rrset), = node.items()
        head = node_head(rtype, rrset.ttl)
        assert value.startswith(head + array_header(len(rrset.rdatas)))
        assert value[1] == ENTRY
        at = RDATAS_AT[value[3]]  # where the fast path finds the rdatas
        assert value[:at] == head
        assert value[at:] == array_header(len(rrset.rdatas)) + b"".join(
            msgpack.packb(rd.to_wire()) for rd in rrset.rdatas)
        if rtype == RType.KEY:
            assert value.startswith(KEY_NODE_HEAD + msgpack.packb(rrset.ttl))
            assert key_node(key_node_head(rrset.ttl),
                            [msgpack.packb(rd.to_wire()) for rd in rrset.rdatas]) == value
    assert [(rtype, ttl, len(rdatas)) for rtype, ttl, rdatas in node_tuples(value)] == [
        (rtype, node[rtype].ttl, len(node[rtype].rdatas)) for rtype in sorted(node)]
    for rdatas in (rrset.rdatas for rrset in node.values()):
        for rd in rdatas:
            packed = msgpack.packb(rd.to_wire())
            assert skip(packed, 0, 1) == len(packed)
            if isinstance(rd, KEY) and rd.flags == 0:
                rhead, length = KEY_RDATA_HEADS[int(rd.algorithm), int(rd.usage)]
                assert packed == rhead + rd.key and len(rd.key) == length


@pytest.mark.parametrize("value", [b"", b"\x90", b"\x91\x92\x01\x02", b"\xc1",
                                   msgpack.packb([[1, 60, [[9, 9, 9]]]])])
def test_malformed_nodes_are_store_errors(value):
    with pytest.raises(StoreError):
        decode_node(value)
    if value != msgpack.packb([[1, 60, [[9, 9, 9]]]]):  # its shape is right, its rdata not
        with pytest.raises(StoreError):
            node_tuples(value)


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536])
def test_array_header_is_msgpacks(count):
    assert array_header(count) == msgpack.packb([0] * count)[:len(array_header(count))]


def test_soa_serial():
    soa = SOA(N("ns1.example.com."), N("hostmaster@example.com."), 7, 1, 2, 3, 4)
    assert soa_serial(Record(N("example.com."), RType.SOA, 60, soa)) == 7


# data_too_large: a hybrid key is 1,216 random bytes, so a few of them fill
# hypothesis's entropy budget; the sizes below are what the test needs.
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(mailboxes=st.lists(st.tuples(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
                                    st.lists(keys().filter(lambda k: k.flags == 0),
                                             min_size=1, max_size=8, unique=True), TTLS),
                          min_size=1, max_size=8, unique_by=lambda m: m[0]),
       tmp=st.just(None))
def test_both_compilers_store_the_canonical_encoding(tmp_path_factory, mailboxes, tmp):
    """The streaming compile (`zonefile.ZoneBuilder`) and the bulk compile
    (`bulkcompile`) build node bytes by hand: each is `encode_node` of the
    node it decodes to, and the two agree."""
    lines = ["$ORIGIN example.com.", "$TTL 3600", "@ SOA ns1 hostmaster@ 1 3600 600 86400 300",
             "@ NS ns1", "ns1 ADDR 127.0.0.1:53"]
    for local, keyset, ttl in mailboxes:
        lines += [f"{local}@ {ttl} KEY {KeyAlgorithm(k.algorithm).name.lower()} "
                  f"{k.usage.name.lower()} {base64.b64encode(k.key).decode()}" for k in keyset]
    path = tmp_path_factory.mktemp("zone") / "zone"
    path.write_text("\n".join(lines) + "\n")
    origin = N("example.com.")
    sink = MemoryNodes()
    compile_nodes(sink, str(path), origin, files=LOCAL_FILES)
    zone = compile_bulk(str(path), origin, files=LOCAL_FILES)
    assert zone is not None
    bulk = {key: value for batch in zone.batches() for key, value in batch}
    assert bulk == sink.nodes
    for value in sink.nodes.values():
        assert encode_node(decode_node(value)) == value
    for local, keyset, ttl in mailboxes:
        stored = decode_node(sink.nodes[(N(f"{local}@example.com.").store_key())[len(origin.store_key()):]])
        assert stored == {int(RType.KEY): RRset(ttl, tuple(keyset))}
