"""The two sides of an error (protocol/errors.py, as h11's Local/RemoteProtocolError):
every error class states one, and the decoders of received bytes raise the peer's."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import msgpack
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import keyresolve
from keyresolve.cli import commands as cli
from keyresolve.cli.dig import DigUsageError, parse_dig_args
from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.errors import (FormError, InvalidName, InvalidRecord, KeyresolveError,
                                        ServerFailure, from_peer)
from keyresolve.protocol.message import HEADER, VERSION, Message, Question, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import rdata_from_text, rdata_from_wire
from keyresolve.protocol.tsig import SharedKey

#: Every error class and its side. A new class must be added here: choosing
#: its side is part of adding it.
OUR_SIDE = {"KeyresolveError", "ProtocolError", "ServerFailure", "InvalidName", "InvalidRecord",
            "ZoneFileError", "ZoneErrors", "ConfigError", "StoreError", "NetworkError",
            "QueryTimeout", "NoReply", "SerialNotIncreased", "CtlError", "DigUsageError",
            "DigFailure", "KeyFileError", "WrongPassphrase", "NoKey", "KeyLookupError",
            "ServersUnreachable", "KeyChanged", "ClientFailure", "UnknownSigner",
            "Failure"}
PEER_SIDE = {"FormError", "BadVersion", "NotImplementedOpcode", "Refused", "NotAuth",
             "BadSignature", "BadKey", "BadTime", "PeerError", "SealError", "UnsupportedMessage",
             "NotARecipient", "CorruptMessage", "TruncatedMessage", "BadMessageSignature",
             "NoSuchAddress", "NoKeyPublished", "MailError",
             "BackupError", "StreamAborted"}


def _all_error_classes() -> dict[str, type]:
    for module in pkgutil.walk_packages(keyresolve.__path__, "keyresolve."):
        if module.name != "keyresolve.__main__":
            importlib.import_module(module.name)
    found: dict[str, type] = {}
    todo = [KeyresolveError]
    while todo:
        cls = todo.pop()
        assert found.setdefault(cls.__name__, cls) is cls, f"two error classes {cls.__name__}"
        todo += cls.__subclasses__()
    return found


def test_every_error_class_is_of_exactly_one_side():
    classes = _all_error_classes()
    assert OUR_SIDE & PEER_SIDE == set()
    assert set(classes) == OUR_SIDE | PEER_SIDE, "state the side of a new error class here"
    assert {name for name, cls in classes.items() if cls.remote is True} == PEER_SIDE
    assert {name for name, cls in classes.items() if cls.remote is False} == OUR_SIDE


def test_from_peer_marks_the_instance_not_the_class():
    exc = InvalidName("bad")
    assert from_peer(exc) is exc and exc.remote
    assert InvalidName("bad").remote is False and InvalidName.remote is False


def test_decoding_junk_is_the_peers_error_with_formerr():
    junk = HEADER.pack(1, 0, VERSION, 0) + b"\xc1junk"
    with pytest.raises(FormError) as info:
        Message.from_wire(junk)
    assert info.value.remote and info.value.rcode == Rcode.FORMERR


def _with_question_name(text: str) -> bytes:
    """A query whose question names `text` as sent, unchecked."""
    wire = make_query(Name.from_text("alice@example.com."), RType.KEY).to_wire()
    return wire.replace(msgpack.packb("alice@example.com."), msgpack.packb(text))


def test_a_bad_name_received_is_the_peers_typed_it_is_ours():
    with pytest.raises(InvalidName) as received:
        Message.from_wire(_with_question_name("a..b@example.com."))
    assert received.value.remote and received.value.rcode == Rcode.FORMERR
    for from_wire in (Name.from_wire, Name.from_wire_uncached):
        with pytest.raises(InvalidName) as alone:
            from_wire("a..b@example.com.")
        assert alone.value.remote
    with pytest.raises(InvalidName) as typed:
        Name.from_text("a..b@example.com.")
    assert typed.value.remote is False
    with pytest.raises(InvalidRecord) as wire:
        rdata_from_wire(RType.ADDR, ("not an address", 5))
    assert wire.value.remote
    with pytest.raises(InvalidRecord) as text:
        rdata_from_text(RType.ADDR, ["not-an-address"], None)
    assert text.value.remote is False


def test_a_bad_name_on_the_command_line_is_ours():
    with pytest.raises(DigUsageError) as dig:
        parse_dig_args(["a..b@example.com."])
    assert dig.value.remote is False and "NAME" in str(dig.value)
    result = CliRunner().invoke(cli.main, ["keygen", "a..b@example.com"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_a_bad_signature_received_is_the_peers():
    key = SharedKey(Name.from_text("k.example."), "hmac-sha256", b"s" * 40)
    other = SharedKey(key.name, "hmac-sha256", b"t" * 40)
    received = Message.from_wire(tsig.sign(make_query(Name.from_text("alice@example.com."),
                                                      RType.KEY), other, 1_800_000_000))
    with pytest.raises(KeyresolveError) as info:
        tsig.verify(received, {key.name: key}, 1_800_000_000)
    assert info.value.remote and info.value.rcode == Rcode.BADSIG


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_whatever_a_peer_sends_fails_as_the_peers_error(body):
    """Any bytes after a valid header decode, or fail as the peer's error."""
    try:
        Message.from_wire(HEADER.pack(7, 0, VERSION, 0) + body)
    except KeyresolveError as exc:
        assert exc.remote, exc


# -- the side decides how a daemon answers and logs an error ------------------------------
def _raising(exc: Exception):
    def handler(*_args):
        raise exc
    return handler


#: What a handler may raise while answering, and (rcode, logged at ERROR):
#: a peer's error keeps its rcode and is never an ERROR line (a flood of
#: garbage must not fill the log with errors); one of ours (an invalid name
#: of our own: a bug) is SERVFAIL, never the FORMERR that blames the peer,
#: and an ERROR line; ServerFailure is ours but is the answer itself.
SIDES = {
    "peer's invalid name": (lambda: from_peer(InvalidName("theirs")), Rcode.FORMERR, False),
    "peer's malformed message": (lambda: FormError("theirs"), Rcode.FORMERR, False),
    "our invalid name": (lambda: InvalidName("ours"), Rcode.SERVFAIL, True),
    "our invalid record": (lambda: InvalidRecord("ours"), Rcode.SERVFAIL, True),
    "server failure": (lambda: ServerFailure("zone example.com. has expired"), Rcode.SERVFAIL,
                       False),
}


def _errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("case", sorted(SIDES))
def test_the_authoritative_server_answers_and_logs_by_side(tmp_path, caplog, case):
    from .test_serve import _handler

    make, rcode, logged = SIDES[case]
    store, handler = _handler(tmp_path, [])
    with store:
        handler._dispatch[Opcode.QUERY] = _raising(make())
        query = make_query(Name.from_text("alice@example.com."), RType.KEY)
        with caplog.at_level(logging.INFO):
            reply = Message.from_wire(handler.handle(query.to_wire(), ("192.0.2.7", 5), False))
    assert reply.rcode == rcode
    assert bool(_errors(caplog)) == logged, caplog.text


@pytest.mark.parametrize("case", sorted(SIDES))
def test_the_resolver_answers_and_logs_by_side(caplog, case):
    from .test_rcode_rules import _recursing_resolver

    make, rcode, logged = SIDES[case]
    server = _recursing_resolver()
    server._finish = _raising(make())
    query = make_query(Name.from_text("alice@example.com."), RType.KEY, rd=True)
    with caplog.at_level(logging.INFO):
        reply = Message.from_wire(server.handle(query.to_wire(), ("192.0.2.7", 5), False))
    assert reply.rcode == rcode
    assert bool(_errors(caplog)) == logged, caplog.text


@pytest.mark.parametrize("case", sorted(SIDES))
def test_the_registry_answers_and_logs_by_side(caplog, case):
    from types import SimpleNamespace

    import trio

    from keyresolve.daemons.registryd import RegistryService
    from keyresolve.net.faultlog import FaultLog

    make, rcode, logged = SIDES[case]
    exc = make()

    async def _handle(*_args):
        raise exc

    service = SimpleNamespace(_handle=_handle, faults=FaultLog(logging.getLogger("t")))
    query = Message(id=7, opcode=Opcode.UPDATE,
                    question=Question(Name.from_text("example.com."), RType.SOA))
    with caplog.at_level(logging.INFO):
        reply = trio.run(RegistryService.handle, service, query, ("192.0.2.7", 5))
    assert reply.rcode == rcode
    assert bool(_errors(caplog)) == logged, caplog.text
