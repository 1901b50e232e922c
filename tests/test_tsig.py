"""Tests of keyresolve.protocol.tsig: MAC input, signing, verification, errors, streams."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.errors import (BadKey, BadSignature, BadTime, BadVersion, ConfigError,
                               FormError, KeyresolveError, NotAuth, NotImplementedOpcode,
                               PeerError, Refused)
from keyresolve.protocol.message import Message, Signature, make_query, make_response
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyUsage, Record
from keyresolve.protocol.tsig import SharedKey, StreamSigner, StreamVerifier
from keyresolve.authority.xfr import make_transfer_query

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

KEY_NAME = Name.from_text("xfer.")
SECRET = bytes(range(32))
T0 = 1795000000
KEY1 = SharedKey(KEY_NAME, "hmac-sha256", SECRET)
KEYRING = {KEY_NAME: KEY1}

# -- the worked example, spelled out field by field (docs/protocol.md 8.6) -----------
# A signed AXFR of example.com. (its SOA and one KEY), answered by a stream of
# two messages. Built here with msgpack and hmac only, not with the codec.
ZONE_NAME = "example.com."
QUESTION = [ZONE_NAME, 252]  # AXFR
SOA_FIELDS = [ZONE_NAME, 6, 3600, ["ns1.example.com.", "hostmaster@example.com.", 2024010101,
                                   7200, 3600, 1209600, 300]]
KEY_FIELDS = ["alice@example.com.", 25, 3600, [1, 1, 0, SECRET]]  # X25519 key 00..1f


def pack(value) -> str:
    return msgpack.packb(value, use_bin_type=True).hex()


def header(flags: int) -> str:
    return f"1234{flags:04x}0100"  # id, flags, version 1, rcode high 0


Q_MESSAGE = header(0x3010) + pack([QUESTION, [], [], [], 1232])  # TRANSFER | SG
R_MESSAGE = header(0xB410) + pack([QUESTION, [SOA_FIELDS, KEY_FIELDS], [], [], 1232])
R2_MESSAGE = header(0xB410) + pack([QUESTION, [SOA_FIELDS], [], [], 1232])  # QR|TRANSFER|AA|SG


def variables_hex(time_signed: int) -> str:
    return pack(["xfer.", "hmac-sha256", time_signed, 300, 0, b""])


def trailer_hex(time_signed: int, mac: str) -> str:
    return pack(["xfer.", "hmac-sha256", time_signed, 300, bytes.fromhex(mac), 0x1234, 0, b""])


def hmac256(data_hex: str) -> str:
    return hmac.new(SECRET, bytes.fromhex(data_hex), hashlib.sha256).hexdigest()


#: The golden values printed in docs/protocol.md 8.6.
Q_MAC = "4dbadcb473c2b3141c46fa1e27dc473abcc27d461a4af4d07e347d7947a22085"
R_MAC = "70f892c3dd1e8c9bc6cf60d130ad78beb21a66d4d78e2e1e7461692d585b39c0"
R2_MAC = "67970dc1f67e2ed2ee0c295870b1aa0d8410db3f94b5bb3dce77a765e1d050cf"
Q_INPUT = Q_MESSAGE + variables_hex(T0)
R_INPUT = "c420" + Q_MAC + R_MESSAGE + variables_hex(T0 + 1)
R2_INPUT = "c420" + R_MAC + R2_MESSAGE + pack([T0 + 2, 300])
Q_WIRE = Q_MESSAGE + trailer_hex(T0, Q_MAC)
R_WIRE = R_MESSAGE + trailer_hex(T0 + 1, R_MAC)
R2_WIRE = R2_MESSAGE + trailer_hex(T0 + 2, R2_MAC)


def example_query() -> Message:
    return make_query(Name.from_text("alice@example.com."), RType.KEY, msg_id=0x1234)


def example_response(query: Message, rcode: int = Rcode.NXDOMAIN) -> Message:
    response = make_response(query, rcode)
    response.aa = True
    return response


def worked_query() -> Message:
    return make_transfer_query(Name.from_text(ZONE_NAME), RType.AXFR, msg_id=0x1234)


def worked_stream(query: Message) -> list[Message]:
    soa = Record.from_wire(SOA_FIELDS, Name.from_wire)
    key = Record.from_wire(KEY_FIELDS, Name.from_wire)
    messages = []
    for records in ([soa, key], [soa]):
        message = make_response(query)
        message.aa = True
        message.answer = records
        messages.append(message)
    return messages


def doc_hex() -> str:
    """Every fenced block of the doc, whitespace removed and joined."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), flags=re.S)
    return "|".join(re.sub(r"\s+", "", b) for b in blocks)


def test_golden_macs_follow_from_the_spelled_out_inputs():
    assert hmac256(Q_INPUT) == Q_MAC
    assert hmac256(R_INPUT) == R_MAC
    assert hmac256(R2_INPUT) == R2_MAC


def test_worked_example_signing():
    query = worked_query()
    assert tsig.sign(query, KEY1, T0).hex() == Q_WIRE
    assert query.signature.mac.hex() == Q_MAC
    assert tsig.mac_input(query.encode_unsigned(True), query.signature).hex() == Q_INPUT
    signer = StreamSigner(KEY1, bytes.fromhex(Q_MAC))
    first, second = worked_stream(query)
    assert signer.sign(first, T0 + 1).hex() == R_WIRE
    assert signer.sign(second, T0 + 2).hex() == R2_WIRE
    # A lone response is signed exactly as the first message of a stream.
    assert tsig.sign(worked_stream(query)[0], KEY1, T0 + 1,
                     request_mac=bytes.fromhex(Q_MAC)).hex() == R_WIRE


def test_worked_example_verifying():
    query = Message.from_wire(bytes.fromhex(Q_WIRE))
    assert query.signature == Signature(KEY_NAME, "hmac-sha256", T0, 300, bytes.fromhex(Q_MAC),
                                        0x1234)
    assert tsig.verify(query, KEYRING, T0) is KEY1
    verifier = StreamVerifier(KEY1, bytes.fromhex(Q_MAC))
    verifier.verify(Message.from_wire(bytes.fromhex(R_WIRE)), T0 + 1)
    verifier.verify(Message.from_wire(bytes.fromhex(R2_WIRE)), T0 + 2)
    tsig.verify_response(Message.from_wire(bytes.fromhex(R_WIRE)), KEY1, bytes.fromhex(Q_MAC),
                         T0 + 1)


def test_worked_example_is_a_valid_transfer():
    # protocol.md 8C: the stream applies as a full transfer of the zone.
    from keyresolve.authority.xfr import Inbound, MemoryWriter, TransferKind

    writer = MemoryWriter()
    inbound = Inbound(Name.from_text(ZONE_NAME), RType.AXFR, None, writer, query_id=0x1234)
    assert not inbound.process_message(Message.from_wire(bytes.fromhex(R_WIRE)))
    assert inbound.process_message(Message.from_wire(bytes.fromhex(R2_WIRE)))
    assert inbound.kind == TransferKind.FULL and inbound.serial == 2024010101
    assert sorted(r.rtype for r in writer.zone.records()) == [RType.SOA, RType.KEY]


def test_worked_example_is_in_the_doc():
    text = doc_hex()
    for value in (SECRET.hex(), Q_INPUT, Q_MAC, Q_WIRE, R_INPUT, R_MAC, R_WIRE, R2_INPUT,
                  R2_MAC, R2_WIRE):
        assert value in text
    assert "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" in DOC.read_text()


# -- round trips ---------------------------------------------------------------------
def key_record(owner: str, fill: int) -> Record:
    return Record(Name.from_text(owner), RType.KEY, 3600,
                  KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([fill]) * 32))


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "hmac-sha512"])
def test_request_response_round_trip(algorithm):
    key = SharedKey(Name.from_text("k.example."), algorithm, b"s" * 40)
    query = example_query()
    wire = tsig.sign(query, key, T0)
    received = Message.from_wire(wire)
    assert tsig.verify(received, {key.name: key}, T0 + 5) is key
    assert len(received.signature.mac) == tsig.MAC_SIZES[algorithm]
    response = make_response(received)
    response.answer.append(key_record("alice@example.com.", 7))
    rwire = tsig.sign(response, key, T0 + 6, request_mac=received.signature.mac)
    back = Message.from_wire(rwire)
    tsig.verify_response(back, key, query.signature.mac, T0 + 7)
    assert back.answer == response.answer
    # The generic verifier takes the request MAC too.
    assert tsig.verify(back, {key.name: key}, T0 + 7, request_mac=query.signature.mac) is key


def test_stream_of_three():
    query = example_query()
    tsig.sign(query, KEY1, T0)
    signer = StreamSigner(KEY1, query.signature.mac)
    wires = []
    for i in range(3):
        msg = make_response(query)
        msg.answer = [key_record(f"u{i}{j}@example.com.", j) for j in range(5)]
        wires.append(signer.sign(msg, T0 + i))
    verifier = StreamVerifier(KEY1, query.signature.mac)
    for wire in wires:
        verifier.verify(Message.from_wire(wire), T0 + 3)


@pytest.mark.parametrize("order", [(1, 0, 2), (0, 2), (0, 0), (1,), (0, 1, 1)])
def test_stream_reordered_dropped_or_repeated_fails(order):
    query = example_query()
    tsig.sign(query, KEY1, T0)
    signer = StreamSigner(KEY1, query.signature.mac)
    wires = [signer.sign(make_response(query), T0) for _ in range(3)]
    verifier = StreamVerifier(KEY1, query.signature.mac)
    with pytest.raises(BadSignature):
        for i in order:
            verifier.verify(Message.from_wire(wires[i]), T0)


def test_stream_later_message_must_keep_uncovered_fields_fixed():
    query = example_query()
    tsig.sign(query, KEY1, T0)
    signer = StreamSigner(KEY1, query.signature.mac)
    first = signer.sign(make_response(query), T0)
    second = signer.sign(make_response(query), T0)
    other_key = SharedKey(Name.from_text("other."), "hmac-sha256", SECRET)
    for changes, error in (({"error": Rcode.BADTIME}, BadSignature),
                           ({"other": b"\0" * 6}, BadSignature),
                           ({"key_name": other_key.name}, BadKey),
                           ({"algorithm": "hmac-sha512"}, BadKey)):
        verifier = StreamVerifier(KEY1, query.signature.mac)
        verifier.verify(Message.from_wire(first), T0)
        with pytest.raises(error):
            verifier.verify(Message.from_wire(retrail(second, **changes)), T0)
    verifier = StreamVerifier(KEY1, query.signature.mac)
    verifier.verify(Message.from_wire(first), T0)
    with pytest.raises(BadSignature, match="not signed"):
        verifier.verify(make_response(query), T0)


def test_truncates_before_signing_when_too_big():
    query = example_query()
    tsig.sign(query, KEY1, T0)
    response = make_response(query)
    response.answer = [key_record(f"user{i}@example.com.", i) for i in range(40)]
    wire = tsig.sign(response, KEY1, T0, request_mac=query.signature.mac, max_size=512)
    assert len(wire) <= 512
    back = Message.from_wire(wire)
    assert back.tc and back.answer == []
    tsig.verify_response(back, KEY1, query.signature.mac, T0)
    # Large enough: nothing is truncated.
    full = tsig.sign(response, KEY1, T0, request_mac=query.signature.mac)
    assert not Message.from_wire(full).tc and len(Message.from_wire(full).answer) == 40


def test_sign_rejects_out_of_range_values():
    with pytest.raises(ValueError):
        tsig.sign(example_query(), KEY1, -1)
    with pytest.raises(ValueError):
        tsig.sign(example_query(), KEY1, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tsig.sign(example_query(), KEY1, T0, fudge=70000)


# -- tampering -----------------------------------------------------------------------
TAMPER_ERRORS = (FormError, BadVersion, NotImplementedOpcode, BadSignature, BadKey, BadTime)


def flips(wire: bytes):
    for i in range(len(wire)):
        for mask in (0xFF, 0x01, 0x80):
            yield i, wire[:i] + bytes([wire[i] ^ mask]) + wire[i + 1:]


def check_tampering(wire: bytes, check) -> None:
    for i, bad in flips(wire):
        try:
            check(Message.from_wire(bad))
        except TAMPER_ERRORS:
            assert i >= 2, f"byte {i}: the id is not covered (RFC 8945 original id)"
        else:
            # Only the transported id may change (a forwarder's rewrite).
            assert i < 2, f"flipped byte {i} still verified"
            assert Message.from_wire(bad).signature.original_id == 0x1234


def test_tampered_request_fails():
    check_tampering(bytes.fromhex(Q_WIRE), lambda m: tsig.verify(m, KEYRING, T0))


def test_tampered_response_fails():
    check_tampering(bytes.fromhex(R_WIRE),
                    lambda m: tsig.verify_response(m, KEY1, bytes.fromhex(Q_MAC), T0))


def test_tampered_later_stream_message_fails():
    def check(msg):
        verifier = StreamVerifier(KEY1, bytes.fromhex(Q_MAC))
        verifier.verify(Message.from_wire(bytes.fromhex(R_WIRE)), T0)
        verifier.verify(msg, T0)

    check_tampering(bytes.fromhex(R2_WIRE), check)


def test_rewritten_id_verifies_against_original_id():
    wire = bytearray.fromhex(Q_WIRE)
    wire[0:2] = b"\xbe\xef"
    msg = Message.from_wire(bytes(wire))
    assert msg.id == 0xBEEF and msg.signature.original_id == 0x1234
    assert tsig.verify(msg, KEYRING, T0) is KEY1
    # A changed original id is not the id that was signed.
    with pytest.raises(BadSignature):
        tsig.verify(Message.from_wire(retrail(bytes(wire), original_id=0xBEEF)), KEYRING, T0)


# -- key and MAC failures ------------------------------------------------------------
def retrail(wire: bytes, **changes) -> bytes:
    """`wire` with its trailer re-encoded with some fields changed."""
    msg = Message.from_wire(wire)
    sig = dataclasses.replace(msg.signature, **changes)
    return msg.signed_bytes + msgpack.packb(sig.to_wire())


def signed_query(key: SharedKey = KEY1, now: int = T0) -> bytes:
    return tsig.sign(example_query(), key, now)


def test_wrong_secret_is_badsig():
    other = SharedKey(KEY_NAME, "hmac-sha256", bytes(32))
    with pytest.raises(BadSignature) as info:
        tsig.verify(Message.from_wire(signed_query(other)), KEYRING, T0)
    assert info.value.key_name == KEY_NAME and "xfer." in str(info.value)


def test_unknown_key_is_badkey():
    stranger = SharedKey(Name.from_text("stranger."), "hmac-sha256", SECRET)
    with pytest.raises(BadKey) as info:
        tsig.verify(Message.from_wire(signed_query(stranger)), KEYRING, T0)
    assert info.value.key_name == stranger.name


def test_unknown_algorithm_is_badkey():
    wire = retrail(signed_query(), algorithm="hmac-md5")
    with pytest.raises(BadKey, match="unknown algorithm"):
        tsig.verify(Message.from_wire(wire), KEYRING, T0)


def test_algorithm_mismatch_is_badkey():
    wire = signed_query(SharedKey(KEY_NAME, "hmac-sha512", SECRET))
    with pytest.raises(BadKey, match="does not match"):
        tsig.verify(Message.from_wire(wire), KEYRING, T0)


def test_truncated_mac_is_badsig():
    query = example_query()
    wire = tsig.sign(query, KEY1, T0)
    short = retrail(wire, mac=query.signature.mac[:16])
    with pytest.raises(BadSignature, match="truncated"):
        tsig.verify(Message.from_wire(short), KEYRING, T0)
    with pytest.raises(BadSignature):
        tsig.verify(Message.from_wire(retrail(wire, mac=b"")), KEYRING, T0)


@pytest.mark.parametrize("skew", [-301, 301, -100000, 100000])
def test_clock_skew_beyond_fudge_is_badtime(skew):
    with pytest.raises(BadTime) as info:
        tsig.verify(Message.from_wire(signed_query()), KEYRING, T0 + skew)
    assert info.value.key_name == KEY_NAME


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_clock_skew_within_fudge_passes(skew):
    assert tsig.verify(Message.from_wire(signed_query()), KEYRING, T0 + skew) is KEY1


def test_max_fudge_caps_the_signers_fudge():
    wire = tsig.sign(example_query(), KEY1, T0, fudge=3600)
    assert tsig.verify(Message.from_wire(wire), KEYRING, T0 + 3600) is KEY1
    with pytest.raises(BadTime):
        tsig.verify(Message.from_wire(wire), KEYRING, T0 + 301, max_fudge=300)


def test_unsigned_request_is_badsig():
    with pytest.raises(BadSignature, match="not signed"):
        tsig.verify(Message.from_wire(example_query().to_wire()), KEYRING, T0)


def test_key_checked_before_mac_before_time():
    # Wrong key name and bad MAC and bad time: BADKEY wins; then BADSIG wins.
    stranger = SharedKey(Name.from_text("stranger."), "hmac-sha256", bytes(32))
    with pytest.raises(BadKey):
        tsig.verify(Message.from_wire(signed_query(stranger, T0 - 9999)), KEYRING, T0)
    impostor = SharedKey(KEY_NAME, "hmac-sha256", bytes(32))
    with pytest.raises(BadSignature):
        tsig.verify(Message.from_wire(signed_query(impostor, T0 - 9999)), KEYRING, T0)


# -- responses on the client side -----------------------------------------------------
def exchange():
    """A signed query as the server received it, and the client's request MAC."""
    query = example_query()
    wire = tsig.sign(query, KEY1, T0)
    return Message.from_wire(wire), query.signature.mac


def test_unsigned_response_rejected():
    received, request_mac = exchange()
    response = make_response(received)
    with pytest.raises(BadSignature, match="not signed"):
        tsig.verify_response(Message.from_wire(response.to_wire()), KEY1, request_mac, T0)


def test_response_over_wrong_request_mac_rejected():
    received, request_mac = exchange()
    wire = tsig.sign(make_response(received), KEY1, T0, request_mac=bytes(32))
    with pytest.raises(BadSignature):
        tsig.verify_response(Message.from_wire(wire), KEY1, request_mac, T0)
    # Signed as a request (no request MAC) does not pass as a response either.
    wire = tsig.sign(make_response(received), KEY1, T0)
    with pytest.raises(BadSignature):
        tsig.verify_response(Message.from_wire(wire), KEY1, request_mac, T0)


def test_response_with_another_key_rejected():
    received, request_mac = exchange()
    other = SharedKey(Name.from_text("other."), "hmac-sha256", SECRET)
    wire = tsig.sign(make_response(received), other, T0, request_mac=request_mac)
    with pytest.raises(BadKey, match="another key"):
        tsig.verify_response(Message.from_wire(wire), KEY1, request_mac, T0)


@pytest.mark.parametrize("exc, error", [(BadKey("x"), Rcode.BADKEY),
                                        (BadSignature("x"), Rcode.BADSIG)])
def test_unsigned_error_responses(exc, error):
    received, request_mac = exchange()
    wire = tsig.make_error_response(received, exc, KEYRING, T0 + 1)
    response = Message.from_wire(wire)
    assert response.qr and response.rcode == Rcode.NOTAUTH and response.id == 0x1234
    sig = response.signature
    assert (sig.mac, sig.error, sig.key_name, sig.algorithm) == (b"", error, KEY_NAME,
                                                                 "hmac-sha256")
    with pytest.raises(PeerError) as info:
        tsig.verify_response(response, KEY1, request_mac, T0 + 1)
    assert info.value.rcode == error and "unsigned" in str(info.value)


def test_replay_outside_window_gets_signed_badtime():
    query = example_query()
    wire = tsig.sign(query, KEY1, T0)
    late = T0 + 3600
    received = Message.from_wire(wire)  # the replayed copy
    with pytest.raises(BadTime) as info:
        tsig.verify(received, KEYRING, late)
    response = Message.from_wire(tsig.make_error_response(received, info.value, KEYRING, late))
    sig = response.signature
    assert response.rcode == Rcode.NOTAUTH and sig.error == Rcode.BADTIME
    assert int.from_bytes(sig.other, "big") == late and len(sig.other) == 6
    assert sig.time_signed == T0 and len(sig.mac) == 32
    # The client (clock at T0) authenticates it, then learns the server's time.
    with pytest.raises(PeerError) as peer:
        tsig.verify_response(response, KEY1, query.signature.mac, T0 + 1)
    assert peer.value.rcode == Rcode.BADTIME and f"server time {late}" in str(peer.value)
    # A forged BADTIME (wrong request MAC) is not believed.
    with pytest.raises(BadSignature):
        tsig.verify_response(response, KEY1, bytes(32), T0 + 1)


def test_error_response_to_unsigned_query_is_plain_notauth():
    query = Message.from_wire(example_query().to_wire())
    response = Message.from_wire(tsig.make_error_response(query, BadSignature("x"), KEYRING,
                                                          T0))
    assert response.rcode == Rcode.NOTAUTH and response.signature is None


def test_error_response_refuses_other_errors():
    received, _ = exchange()
    with pytest.raises(ValueError):
        tsig.make_error_response(received, FormError("x"), KEYRING, T0)


def test_signed_error_inside_a_verified_response_is_peer_error():
    received, request_mac = exchange()
    wire = tsig.sign(make_response(received), KEY1, T0, request_mac=request_mac,
                     error=Rcode.BADSIG)
    with pytest.raises(PeerError) as info:
        tsig.verify_response(Message.from_wire(wire), KEY1, request_mac, T0)
    assert info.value.rcode == Rcode.BADSIG and "unsigned" not in str(info.value)


# -- keys ----------------------------------------------------------------------------
def test_key_validation_and_repr():
    with pytest.raises(ConfigError):
        SharedKey(KEY_NAME, "hmac-md5", SECRET)
    with pytest.raises(ConfigError):
        SharedKey(KEY_NAME, "hmac-sha256", bytes(15))
    assert SECRET.hex() not in repr(KEY1) and "secret" not in repr(KEY1)


# -- fuzzing ---------------------------------------------------------------------------
names = st.sampled_from(["xfer.", "XFER.", "other.", "a@b.example.", "."])
algorithms = st.one_of(st.sampled_from(["hmac-sha256", "hmac-sha512", "HMAC-SHA256", ""]),
                       st.text(max_size=12))
signatures = st.builds(
    Signature, names.map(Name.from_text), algorithms,
    st.one_of(st.integers(T0 - 400, T0 + 400), st.integers(0, tsig.MAX_TIME)),
    st.integers(0, 0xFFFF), st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=64)),
    st.integers(0, 0xFFFF), st.sampled_from([0, 16, 17, 18, 19, 4095]), st.binary(max_size=64))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.binary(max_size=70),
                    st.text(max_size=20), st.floats(allow_nan=False))
raw_trailers = st.lists(st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=10)


def verify_everything(msg: Message) -> None:
    for check in (lambda: tsig.verify(msg, KEYRING, T0),
                  lambda: tsig.verify_response(msg, KEY1, bytes.fromhex(Q_MAC), T0),
                  lambda: StreamVerifier(KEY1, bytes.fromhex(Q_MAC)).verify(msg, T0)):
        with pytest.raises(KeyresolveError):
            check()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sig=signatures, tail=st.binary(max_size=8))
def test_mangled_signature_fields_never_pass(sig, tail):
    data = bytes.fromhex(R_WIRE)
    msg_part = data[:len(bytes.fromhex(R_MESSAGE))]
    wire = msg_part + msgpack.packb(sig.to_wire()) + tail
    try:
        msg = Message.from_wire(wire)
    except KeyresolveError:
        return
    verify_everything(msg)


@settings(max_examples=300, deadline=None)
@given(trailer=raw_trailers, tail=st.binary(max_size=8))
def test_mangled_raw_trailers_never_pass(trailer, tail):
    wire = bytes.fromhex(Q_MESSAGE) + msgpack.packb(trailer) + tail
    try:
        msg = Message.from_wire(wire)
    except KeyresolveError:
        return
    verify_everything(msg)


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(min_size=1, max_size=40))
def test_bytes_after_a_valid_trailer_are_formerr(tail):
    with pytest.raises(FormError):
        Message.from_wire(bytes.fromhex(Q_WIRE) + tail)


def test_float_clock_is_accepted_by_verifiers():
    with pytest.raises(BadTime, match=r"\+3600 s"):
        tsig.verify(Message.from_wire(signed_query()), KEYRING, T0 + 3600.7)
    assert tsig.verify(Message.from_wire(signed_query()), KEYRING, T0 + 0.5) is KEY1


# -- the window a server allows, and replays inside it -----------------------------
def test_a_fudge_of_65535_signed_1000_s_ago_is_badtime_under_max_fudge():
    wire = tsig.sign(example_query(), KEY1, T0, fudge=65535)
    with pytest.raises(BadTime, match="300 s window"):
        tsig.verify(Message.from_wire(wire), KEYRING, T0 + 1000,
                    max_fudge=tsig.DEFAULT_MAX_FUDGE)


@pytest.mark.parametrize("fudge,max_fudge,expected", [
    (65535, 300, 300), (10, 300, 10), (300, 300, 300), (0, 300, 0), (65535, None, 65535)])
def test_window_is_the_smaller_of_the_stated_fudge_and_max_fudge(fudge, max_fudge, expected):
    assert tsig.window(fudge, max_fudge) == expected


def sig_at(time_signed: int, mac: bytes = b"m" * 32, fudge: int = 300,
           key_name: Name = KEY_NAME) -> Signature:
    return Signature(key_name, "hmac-sha256", time_signed, fudge, mac, 0x1234, 0, b"")


def test_replay_guard_accepts_a_request_once_within_its_window():
    guard = tsig.ReplayGuard(300)
    guard.check(sig_at(T0), T0)
    for now in (T0, T0 + 1, T0 + 300):  # a copy, until the window ends
        with pytest.raises(NotAuth, match="replay") as info:
            guard.check(sig_at(T0), now)
        assert info.value.rcode == Rcode.NOTAUTH and info.value.key_name == KEY_NAME
    assert len(guard) == 1


def test_replay_guard_tells_apart_key_time_and_mac():
    guard = tsig.ReplayGuard(300)
    guard.check(sig_at(T0), T0)
    guard.check(sig_at(T0, mac=b"n" * 32), T0)
    guard.check(sig_at(T0 + 1), T0)
    guard.check(sig_at(T0, key_name=Name.from_text("ops.")), T0)
    assert len(guard) == 4


def test_replay_guard_forgets_a_request_once_verify_would_say_badtime():
    guard = tsig.ReplayGuard(300)
    wire = tsig.sign(example_query(), KEY1, T0)
    guard.check(Message.from_wire(wire).signature, T0)
    guard.check(sig_at(T0 + 301), T0 + 301)  # any later request expires the first
    assert len(guard) == 1
    with pytest.raises(BadTime):  # so the copy is refused all the same
        tsig.verify(Message.from_wire(wire), KEYRING, T0 + 301, max_fudge=300)
    guard.check(Message.from_wire(wire).signature, T0 + 301)  # the guard itself forgot it


def test_replay_guard_keeps_a_request_signed_ahead_until_its_own_window_ends():
    guard = tsig.ReplayGuard(300)
    guard.check(sig_at(T0 + 300), T0)  # signed by a clock 300 s ahead
    with pytest.raises(NotAuth):
        guard.check(sig_at(T0 + 300), T0 + 600)  # verify still accepts it then
    guard.check(sig_at(T0 + 300), T0 + 601)


def test_replay_guard_windows_are_capped_by_max_fudge():
    guard = tsig.ReplayGuard(300)
    guard.check(sig_at(T0, fudge=65535), T0)
    guard.check(sig_at(T0 + 1000), T0 + 1000)
    assert len(guard) == 1  # the first lived 300 s, not 65535


def test_replay_guard_does_not_store_a_request_already_outside_its_window():
    guard = tsig.ReplayGuard(300)
    guard.check(sig_at(T0), T0 + 301)
    assert len(guard) == 0


def test_a_full_replay_guard_refuses_new_requests_until_entries_expire():
    guard = tsig.ReplayGuard(300, capacity=3)
    for i in range(3):
        guard.check(sig_at(T0 + i), T0 + i)
    with pytest.raises(Refused, match="3 signed requests remembered") as info:
        guard.check(sig_at(T0 + 2, mac=b"n" * 32), T0 + 2)
    assert info.value.rcode == Rcode.REFUSED
    with pytest.raises(NotAuth):  # a copy is still a replay, not a refusal
        guard.check(sig_at(T0), T0 + 2)
    assert len(guard) == 3
    guard.check(sig_at(T0 + 301), T0 + 301)  # the first expired: room for one
    with pytest.raises(Refused):
        guard.check(sig_at(T0 + 301, mac=b"n" * 32), T0 + 301)


def test_a_flood_of_distinct_requests_keeps_the_guard_bounded():
    capacity, per_second = 500, 40
    guard = tsig.ReplayGuard(10, capacity=capacity)
    accepted = refused = 0
    for i in range(5000):  # 125 s of 40 requests a second, a 10 s window
        now = T0 + i // per_second
        try:
            guard.check(sig_at(now, mac=i.to_bytes(32, "big")), now)
            accepted += 1
        except Refused:
            refused += 1
        assert len(guard) <= capacity and len(guard._seen._heap) <= capacity
    # 11 s of requests live at once (440) fit: none refused, none kept past its window
    assert refused == 0 and accepted == 5000 and len(guard) <= 11 * per_second
    flood = tsig.ReplayGuard(10, capacity=capacity)
    results = []
    for i in range(2000):  # 2000 in one second: the bound holds, the rest are refused
        try:
            flood.check(sig_at(T0, mac=i.to_bytes(32, "big")), T0)
            results.append(True)
        except Refused:
            results.append(False)
    assert results.count(True) == capacity == len(flood) == len(flood._seen._heap)


def test_an_upper_case_key_name_finds_the_key_and_is_maced_in_lower_case():
    # protocol.md 8.1: key names compare case-insensitively (RFC 8945 4.2) and
    # the MAC covers the canonical lower-case form (RFC 8945 4.3.3).
    query = example_query()
    message = query.encode_unsigned(True)

    def signed(maced_name: str) -> Message:
        variables = msgpack.packb([maced_name, "hmac-sha256", T0, 300, 0, b""])
        mac = hmac.new(SECRET, message + variables, hashlib.sha256).digest()
        trailer = msgpack.packb(["XFER.", "hmac-sha256", T0, 300, mac, 0x1234, 0, b""])
        return Message.from_wire(message + trailer)

    canonical = signed("xfer.")
    assert canonical.signature.key_name == KEY_NAME
    assert tsig.verify(canonical, KEYRING, T0) is KEY1
    with pytest.raises(BadSignature):
        tsig.verify(signed("XFER."), KEYRING, T0)
