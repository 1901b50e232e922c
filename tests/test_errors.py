"""The two sides of an error (protocol/errors.py, as h11's Local/RemoteProtocolError):
every error class states one, and the decoders of received bytes raise the peer's."""

from __future__ import annotations

import importlib
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
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.errors import (FormError, InvalidName, InvalidRecord, KeyresolveError,
                                        from_peer)
from keyresolve.protocol.message import HEADER, VERSION, Message, make_query
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
