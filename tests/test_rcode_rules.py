"""docs/protocol.md 8D: the rcode for a request a server will not serve, per
opcode and per sender, the same at the authoritative server and the resolver.

Each row is (opcode, sender) -> (header rcode, trailer error). Senders:
unsigned, signed with a key the server does not know, signed with a key it
knows but that may not do this. The handlers are called directly with bytes.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import trio

from keyresolve.protocol import tsig
from keyresolve.resolver.cache import Cache, Rank
from keyresolve.protocol.codes import ControlCommand, Opcode, Rcode, RType
from keyresolve.cli.config import ResolverConfig, ServeConfig, ZoneConfig
from keyresolve.registry.messages import make_update
from keyresolve.daemons.resolver import ResolverServer
from keyresolve.daemons.secondary import SecondaryZone
from keyresolve.daemons.serve import AuthServer
from keyresolve.protocol.message import Message, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, KEY, KeyAlgorithm, KeyUsage, Record
from keyresolve.resolver.resolution import Resolver
from keyresolve.store.zones import Store
from keyresolve.authority.xfr import make_notify, make_transfer_query
from keyresolve.zonedata.zonefile import parse_zone_text

from .test_fastpath import EXAMPLE_COM

ELSEWHERE = ("192.0.2.7", 5353)
XFER = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", b"x" * 32)  # allowed
READER = tsig.SharedKey(Name.from_text("reader."), "hmac-sha256", b"r" * 32)  # known, not allowed
GHOST = tsig.SharedKey(Name.from_text("ghost."), "hmac-sha256", b"g" * 32)  # unknown
SENDERS = {"unsigned": None, "unknown key": GHOST, "key not allowed": READER}
NOERROR, FORMERR, NOTIMP, REFUSED, NOTAUTH = (Rcode.NOERROR, Rcode.FORMERR, Rcode.NOTIMP,
                                              Rcode.REFUSED, Rcode.NOTAUTH)
BADKEY = (NOTAUTH, Rcode.BADKEY)


def n(text: str) -> Name:
    return Name.from_text(text)


def _requests() -> dict[str, Message]:
    return {
        "QUERY": make_query(n("alice@example.com."), RType.KEY, msg_id=5, rd=True),
        "QUERY AXFR": make_query(n("example.com."), RType.AXFR, msg_id=5, rd=True),
        "NOTIFY": make_notify(n("sec.example."), msg_id=5),
        "NOTIFY not secondary": make_notify(n("example.com."), msg_id=5),
        "TRANSFER": make_transfer_query(n("example.com."), RType.AXFR, msg_id=5),
        "TRANSFER not served": make_transfer_query(n("other.example."), RType.AXFR, msg_id=5),
        "CONTROL": make_query(n("."), ControlCommand.FLUSH_ALL, msg_id=5,
                              opcode=Opcode.CONTROL),
        "UPDATE": make_update(n("example.com."), b"\x92", 5),
    }


def _outcome(reply) -> tuple[int, int]:
    assert isinstance(reply, bytes), reply
    message = Message.from_wire(reply)
    return message.rcode, 0 if message.signature is None else message.signature.error


def _ask(handler, request: str, sender: str, tcp: bool) -> tuple[int, int]:
    message = _requests()[request]
    key = SENDERS[sender]
    data = message.to_wire() if key is None else tsig.sign(message, key, int(time.time()))
    return _outcome(handler.handle(data, ELSEWHERE, tcp))


#: (request, sender) -> expected (rcode, trailer error) at the authoritative server.
AUTH = {
    ("QUERY", "unsigned"): (NOERROR, 0),
    ("QUERY", "unknown key"): BADKEY,
    ("QUERY", "key not allowed"): (NOERROR, 0),
    ("QUERY AXFR", "unsigned"): (NOTIMP, 0),
    ("QUERY AXFR", "unknown key"): BADKEY,
    ("QUERY AXFR", "key not allowed"): (NOTIMP, 0),
    ("NOTIFY", "unsigned"): (REFUSED, 0),
    ("NOTIFY", "unknown key"): BADKEY,
    ("NOTIFY", "key not allowed"): (REFUSED, 0),
    ("NOTIFY not secondary", "unsigned"): (NOTAUTH, 0),
    ("NOTIFY not secondary", "unknown key"): BADKEY,
    ("NOTIFY not secondary", "key not allowed"): (NOTAUTH, 0),
    ("TRANSFER", "unsigned"): (REFUSED, 0),
    ("TRANSFER", "unknown key"): BADKEY,
    ("TRANSFER", "key not allowed"): (REFUSED, 0),
    ("TRANSFER not served", "unsigned"): (NOTAUTH, 0),
    ("TRANSFER not served", "unknown key"): BADKEY,
    ("TRANSFER not served", "key not allowed"): (NOTAUTH, 0),
    ("CONTROL", "unsigned"): (REFUSED, 0),
    ("CONTROL", "unknown key"): BADKEY,
    ("CONTROL", "key not allowed"): (REFUSED, 0),
    ("UPDATE", "unsigned"): (NOTAUTH, 0),
    ("UPDATE", "unknown key"): BADKEY,
    ("UPDATE", "key not allowed"): (NOTAUTH, 0),
}

#: The same at the resolver (the QUERY is answered from its cache).
RESOLVER = {
    ("QUERY", "unsigned"): (NOERROR, 0),
    ("QUERY", "unknown key"): BADKEY,
    ("QUERY", "key not allowed"): (NOERROR, 0),
    ("QUERY AXFR", "unsigned"): (NOTIMP, 0),
    ("QUERY AXFR", "unknown key"): BADKEY,
    ("QUERY AXFR", "key not allowed"): (NOTIMP, 0),
    ("NOTIFY", "unsigned"): (NOTIMP, 0),
    ("NOTIFY", "unknown key"): BADKEY,
    ("NOTIFY", "key not allowed"): (NOTIMP, 0),
    ("TRANSFER", "unsigned"): (NOTIMP, 0),
    ("TRANSFER", "unknown key"): BADKEY,
    ("TRANSFER", "key not allowed"): (NOTIMP, 0),
    ("CONTROL", "unsigned"): (REFUSED, 0),
    ("CONTROL", "unknown key"): BADKEY,
    ("CONTROL", "key not allowed"): (REFUSED, 0),
    ("UPDATE", "unsigned"): (NOTIMP, 0),
    ("UPDATE", "unknown key"): BADKEY,
    ("UPDATE", "key not allowed"): (NOTIMP, 0),
}


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("auth")
    store = Store(tmp_path / "db", map_size=1 << 26)
    store.replace_zone_reference(parse_zone_text(EXAMPLE_COM))
    primary = ZoneConfig(name=n("example.com."), file=tmp_path / "x",
                         allow_transfer=[XFER.name])
    secondary = ZoneConfig(name=n("sec.example."), primaries=[("127.0.0.1", 9)], tsig_key=XFER.name)
    config = ServeConfig(path=tmp_path / "serve.toml", listen=[("127.0.0.1", 0)],
                         data_dir=tmp_path / "db", zones=[primary, secondary],
                         keys={XFER.name: XFER, READER.name: READER})
    handler = AuthServer(store, config)
    handler.add_secondary(SecondaryZone(secondary, store, {XFER.name: XFER}, trio.Lock(),
                                      lambda *_: None))
    with store:
        yield handler


@pytest.fixture(scope="module")
def resolver():
    config = ResolverConfig(path=Path("resolver.toml"), listen=[],
                            root_hints=Path("root.hints"), max_clients=0,
                            keys={XFER.name: XFER, READER.name: READER},
                            control_keys=[XFER.name])
    res = Resolver([(n("a.root."), ADDR.parse("192.0.2.1:53"))], Cache(),
                   rng=random.Random(1))
    record = Record(n("alice@example.com."), RType.KEY, 300,
                    KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(32)))
    server = ResolverServer(config, res, clock=lambda: 1000.0)
    assert res.cache.put([record], Rank.AUTH_ANSWER, 1000.0)
    return server


@pytest.mark.parametrize(("request_", "sender"), list(AUTH))
def test_authoritative_rcodes(auth, request_, sender):
    # TRANSFER over TCP (over UDP it is REFUSED whoever asks, below)
    assert _ask(auth, request_, sender, tcp=True) == AUTH[request_, sender]


@pytest.mark.parametrize(("request_", "sender"), list(RESOLVER))
def test_resolver_rcodes(resolver, request_, sender):
    assert _ask(resolver, request_, sender, tcp=True) == RESOLVER[request_, sender]


@pytest.mark.parametrize("sender", ["unsigned", "key not allowed"])
def test_a_transfer_over_udp_is_refused(auth, sender):
    assert _ask(auth, "TRANSFER", sender, tcp=False) == (REFUSED, 0)


# -- RD clear at a resolver (docs/protocol.md 7A) --------------------------------------
def _recursing_resolver() -> ResolverServer:
    config = ResolverConfig(path=Path("resolver.toml"), listen=[],
                            root_hints=Path("root.hints"), max_clients=10)
    res = Resolver([(n("a.root."), ADDR.parse("192.0.2.1:53"))], Cache(),
                   rng=random.Random(1))
    record = Record(n("alice@example.com."), RType.KEY, 300,
                    KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes(32)))
    assert res.cache.put([record], Rank.AUTH_ANSWER, 1000.0)
    return ResolverServer(config, res, clock=lambda: 1000.0)


@pytest.mark.parametrize("tcp", [False, True])
def test_rd_clear_is_answered_from_the_cache_only(tcp):
    server = _recursing_resolver()
    hit = make_query(n("alice@example.com."), RType.KEY, msg_id=8, rd=False)
    reply = Message.from_wire(server.handle(hit.to_wire(), ELSEWHERE, tcp))
    assert (reply.rcode, reply.rd, reply.ra, reply.aa) == (NOERROR, False, True, False)
    assert reply.answer and reply.answer[0].ttl == 300
    miss = make_query(n("bob@example.com."), RType.KEY, msg_id=9, rd=False)
    reply = server.handle(miss.to_wire(), ELSEWHERE, tcp)
    assert isinstance(reply, bytes), "RD=0 must not start a resolution"
    message = Message.from_wire(reply)
    assert (message.rcode, message.rd, message.ra) == (REFUSED, False, True)
    assert server.active == 0 and server.upstream_queries == 0


# -- records in the sections of a QUERY (docs/protocol.md 4.3) -------------------------
def _with_sections(message: Message) -> Message:
    stray = Record(n("mallory@example.com."), RType.KEY, 60,
                   KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([7]) * 32))
    message.answer.append(stray)
    message.authority.append(stray)
    message.additional.append(stray)
    return message


@pytest.mark.parametrize("tcp", [False, True])
def test_records_in_a_query_change_nothing(auth, tcp):
    plain = make_query(n("alice@example.com."), RType.KEY, msg_id=5)
    stuffed = _with_sections(make_query(n("alice@example.com."), RType.KEY, msg_id=5))
    with auth.batch():
        expected = auth.handle(plain.to_wire(), ELSEWHERE, tcp)
        assert auth.handle(stuffed.to_wire(), ELSEWHERE, tcp) == expected
    assert Message.from_wire(expected).answer


def test_records_in_a_query_change_nothing_at_the_resolver(resolver):
    plain = make_query(n("alice@example.com."), RType.KEY, msg_id=5, rd=True)
    stuffed = _with_sections(make_query(n("alice@example.com."), RType.KEY, msg_id=5, rd=True))
    expected = resolver.handle(plain.to_wire(), ELSEWHERE, True)
    assert resolver.handle(stuffed.to_wire(), ELSEWHERE, True) == expected
    assert Message.from_wire(expected).answer
