"""registry.messages and protocol.hpke: the vectors of docs/protocol.md 8E
both ways, interoperation with cryptography's HPKE, and every decoder fuzzed.

Run as a module (``python -m tests.test_registry_messages``) to print the
vector section of the document from the code.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives import hpke as lib_hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.protocol import hpke
from keyresolve.protocol.codes import Opcode, Rcode, RType
from keyresolve.protocol.errors import FormError, NotAuth, NotImplementedOpcode, ProtocolError, Refused
from keyresolve.protocol.message import Message, Question
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyFlag, KeyUsage, Opaque, Record, key_id
from keyresolve.registry import messages as m
from keyresolve.registry.messages import AnswerKind, Kind, LogOp

from .registry_fixtures import ALICE, OWNER, REGISTRY, SERVER, T0, ZONE, seeded

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUITE = lib_hpke.Suite(lib_hpke.KEM.X25519, lib_hpke.KDF.HKDF_SHA256,
                       lib_hpke.AEAD.CHACHA20_POLY1305)

# -- the fixed inputs of the vectors -----------------------------------------------
NONCE = bytes(range(0x40, 0x50))
EPHEMERAL_REQUEST = bytes(range(0x60, 0x80))
EPHEMERAL_CHALLENGE = bytes(range(0x80, 0xA0))
REQUEST_ID = bytes(range(0xA0, 0xB0))
TOKEN = bytes(range(0xB0, 0xC0))
#: The owner's hybrid (mlkem768x25519) private key: its 32-byte seed.
HYBRID_SEED = bytes(range(0xC0, 0xE0))
HYBRID = hpke.HybridPrivateKey(HYBRID_SEED)
HYBRID_KEY = KEY(KeyAlgorithm.MLKEM768X25519, KeyUsage.ENCRYPT, HYBRID.public_key)


class Fixed:
    """`random` that hands out the given byte strings in order."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def __call__(self, n: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) == n
        return chunk


def _register_envelope() -> bytes:
    return m.make_request(Kind.REGISTER, ZONE,
                          m.register_fields(ALICE, OWNER.encrypt, OWNER.sign),
                          registry_key=REGISTRY.encrypt, time=T0, signer=OWNER.ed,
                          random=Fixed(NONCE, EPHEMERAL_REQUEST))


CHALLENGE = m.Challenge(Kind.CONFIRM, REQUEST_ID, TOKEN, ZONE, ALICE,
                        (m.key_id_bytes(OWNER.encrypt), m.key_id_bytes(OWNER.sign)), (),
                        T0 + 86_400, SERVER)
REGISTERED = (KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, OWNER.encrypt.key, KeyFlag.REGISTERED),
              KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, OWNER.sign.key, KeyFlag.REGISTERED))
LOG_ENTRY = m.LogEntry(LogOp.PUBLISH, ZONE, ALICE, REGISTERED, 2024010102, T0 + 60)
HYBRID_CHALLENGE = m.Challenge(Kind.CONFIRM, REQUEST_ID, TOKEN, ZONE, ALICE,
                               (m.key_id_bytes(HYBRID_KEY), m.key_id_bytes(OWNER.sign)), (),
                               T0 + 86_400, SERVER)


def vectors() -> dict[str, bytes | str]:
    """Every vector of docs/protocol.md 8E.8, from the fixed inputs."""
    envelope = _register_envelope()
    body = m.request_body(Kind.REGISTER, ZONE, T0, NONCE,
                          m.register_fields(ALICE, OWNER.encrypt, OWNER.sign))
    confirm_body = m.request_body(Kind.CONFIRM, ZONE, T0 + 60, NONCE,
                                  m.token_fields(REQUEST_ID, TOKEN))
    digest = hashlib.sha256(envelope).digest()
    published = m.Answer(AnswerKind.PUBLISHED, digest, ALICE,
                         CHALLENGE.added, (), 2024010102)
    return {
        "register-body": body,
        "register-signature": OWNER.ed.sign(m.CONTEXT_REQUEST + body),
        "register-request": envelope,
        "update-request": m.make_update(ZONE, envelope, 0x1234).to_wire(),
        "challenge-body": CHALLENGE.to_body(),
        "challenge": m.make_challenge(CHALLENGE, OWNER.encrypt, REGISTRY.ed,
                                      Fixed(EPHEMERAL_CHALLENGE)),
        "confirm-body": confirm_body,
        "accepted-answer": m.make_answer(m.Answer(AnswerKind.ACCEPTED, digest, expires_in=86_400),
                                         REGISTRY.ed),
        "published-answer": m.make_answer(published, REGISTRY.ed),
        "log-entry": LOG_ENTRY.to_wire(),
        "mail-token": m.mail_token_text(REQUEST_ID, TOKEN),
        "hybrid-challenge-body": HYBRID_CHALLENGE.to_body(),
    }


def doc_open_vectors() -> dict[str, bytes]:
    """name -> bytes of each decrypt-only ``<!-- registry-open-vector: name -->``
    block (hybrid seals take no injected randomness: a test opens them)."""
    text = DOC.read_text()
    found = re.findall(r"<!-- registry-open-vector: ([a-z-]+) -->\n```text\n(.*?)```", text, re.S)
    return {name: bytes.fromhex("".join(block.split())) for name, block in found}


def render_hybrid_challenge() -> str:
    """A new decrypt-only hybrid challenge block (different at every call)."""
    text = m.make_challenge(HYBRID_CHALLENGE, HYBRID_KEY, REGISTRY.ed, Fixed()).hex()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "<!-- registry-open-vector: hybrid-challenge -->\n```text\n" + "\n".join(lines) + "\n```\n"


def doc_vectors() -> dict[str, str]:
    """name -> the hex (or text) of each ``<!-- registry-vector: name -->`` block."""
    text = DOC.read_text()
    found = re.findall(r"<!-- registry-vector: ([a-z-]+) -->\n```text\n(.*?)```", text, re.S)
    return {name: "".join(block.split()) for name, block in found}


def as_text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.hex()


def render() -> str:
    """The vector blocks as the document holds them."""
    out = []
    for name, value in vectors().items():
        text = as_text(value)
        lines = [text[i:i + 64] for i in range(0, len(text), 64)]
        out.append(f"<!-- registry-vector: {name} -->\n```text\n" + "\n".join(lines) + "\n```\n")
    return "\n".join(out)


# -- vectors both ways -----------------------------------------------------------------
def test_the_document_holds_every_vector_and_only_those() -> None:
    assert sorted(doc_vectors()) == sorted(vectors())


@pytest.mark.parametrize("name", sorted(vectors()))
def test_encoding_with_fixed_randomness_gives_the_vector(name: str) -> None:
    assert as_text(vectors()[name]) == doc_vectors()[name]


def test_the_keys_of_the_vectors() -> None:
    """The document's key list is the fixed seeds' public keys."""
    text = DOC.read_text()
    for pair, seed in ((REGISTRY, 0), (OWNER, 1)):
        assert seeded(seed).hex() in text and seeded(seed + 100).hex() in text
        assert pair.encrypt.key.hex() in text and pair.sign.key.hex() in text
    assert HYBRID_SEED.hex() in text and HYBRID_KEY.key_id in text
    assert hashlib.sha256(HYBRID_KEY.key).hexdigest() in text


def test_the_register_vector_decodes() -> None:
    doc = {name: bytes.fromhex(value) for name, value in doc_vectors().items()
           if name != "mail-token"}
    envelope = doc["register-request"]
    # independently: cryptography's HPKE opens it, plain msgpack reads it
    recipient, sealed = msgpack.unpackb(envelope)
    assert recipient.hex() == key_id(KeyAlgorithm.X25519, REGISTRY.encrypt.key)
    body, signature = msgpack.unpackb(SUITE.decrypt(sealed, REGISTRY.x, info=m.INFO_REQUEST))
    assert (body, signature) == (doc["register-body"], doc["register-signature"])
    Ed25519PublicKey.from_public_bytes(OWNER.sign.key).verify(signature,
                                                               m.CONTEXT_REQUEST + body)
    assert msgpack.unpackb(body) == [1, "example.com.", T0, NONCE,
                                     ["alice@example.com.", [1, 1, 0, OWNER.encrypt.key],
                                      [2, 2, 0, OWNER.sign.key], None]]
    # and the codec
    request = m.open_request(REGISTRY.x, envelope)
    assert (request.kind, request.zone, request.time, request.nonce, request.address,
            request.encrypt, request.sign, request.backup) == (
        Kind.REGISTER, ZONE, T0, NONCE, ALICE, OWNER.encrypt, OWNER.sign, None)
    assert request.digest == hashlib.sha256(envelope).digest()
    message = Message.from_wire(doc["update-request"])
    assert message.opcode == Opcode.UPDATE and m.update_payload(message) == (ZONE, envelope)


def test_the_challenge_vector_decodes() -> None:
    doc = bytes.fromhex(doc_vectors()["challenge"])
    assert m.open_challenge(doc, OWNER.x, REGISTRY.sign) == CHALLENGE
    recipient, sealed = msgpack.unpackb(doc)
    body, signature = msgpack.unpackb(SUITE.decrypt(sealed, OWNER.x, info=m.INFO_CHALLENGE))
    assert body.hex() == doc_vectors()["challenge-body"]
    Ed25519PublicKey.from_public_bytes(REGISTRY.sign.key).verify(
        signature, m.CONTEXT_CHALLENGE + body)


def test_the_answer_log_and_token_vectors_decode() -> None:
    doc = doc_vectors()
    digest = hashlib.sha256(bytes.fromhex(doc["register-request"])).digest()
    published = m.read_answer(bytes.fromhex(doc["published-answer"]), REGISTRY.sign, digest)
    assert (published.kind, published.address, published.added, published.serial) == (
        AnswerKind.PUBLISHED, ALICE, CHALLENGE.added, 2024010102)
    accepted = m.read_answer(bytes.fromhex(doc["accepted-answer"]), REGISTRY.sign, digest)
    assert (accepted.kind, accepted.expires_in) == (AnswerKind.ACCEPTED, 86_400)
    assert m.LogEntry.from_wire(bytes.fromhex(doc["log-entry"])) == LOG_ENTRY
    assert m.read_mail_token(doc["mail-token"]) == (REQUEST_ID, TOKEN)
    spaced = " ".join(doc["mail-token"][i:i + 4].upper() for i in range(0, 52, 4))
    assert m.read_mail_token(spaced) == (REQUEST_ID, TOKEN)


def test_the_hybrid_challenge_vector_opens() -> None:
    """Decrypt-only: the codec, and cryptography's hybrid suite on its own,
    open the document's challenge with the seed's key; the registry signed it."""
    doc = doc_open_vectors()
    assert sorted(doc) == ["hybrid-challenge"]
    sealed_challenge = doc["hybrid-challenge"]
    assert m.open_challenge(sealed_challenge, HYBRID, REGISTRY.sign) == HYBRID_CHALLENGE
    recipient, sealed = msgpack.unpackb(sealed_challenge)
    assert recipient.hex() == HYBRID_KEY.key_id
    assert len(sealed) > hpke.HYBRID_ENC_SIZE + hpke.TAG_SIZE
    suite = lib_hpke.Suite(lib_hpke.KEM.MLKEM768_X25519, lib_hpke.KDF.HKDF_SHA256,
                           lib_hpke.AEAD.CHACHA20_POLY1305)
    body, signature = msgpack.unpackb(suite.decrypt(sealed, HYBRID.key, info=m.INFO_CHALLENGE))
    assert body.hex() == doc_vectors()["hybrid-challenge-body"]
    Ed25519PublicKey.from_public_bytes(REGISTRY.sign.key).verify(
        signature, m.CONTEXT_CHALLENGE + body)
    with pytest.raises(NotAuth):  # an X25519 key of the owner does not open it
        m.open_challenge(sealed_challenge, OWNER.x, REGISTRY.sign)


# -- hybrid (mlkem768x25519) encryption keys ------------------------------------------------
def test_a_hybrid_key_registers() -> None:
    envelope = m.make_request(Kind.REGISTER, ZONE, m.register_fields(ALICE, HYBRID_KEY, OWNER.sign),
                              registry_key=REGISTRY.encrypt, time=T0, signer=OWNER.ed,
                              random=Fixed(NONCE, EPHEMERAL_REQUEST))
    request = m.open_request(REGISTRY.x, envelope)
    assert (request.encrypt, request.sign) == (HYBRID_KEY, OWNER.sign)
    assert m.opener_key(HYBRID) == HYBRID_KEY and m.opener_key(OWNER.x) == OWNER.encrypt


def test_a_hybrid_challenge_round_trips_and_draws_no_randomness() -> None:
    sealed = m.make_challenge(HYBRID_CHALLENGE, HYBRID_KEY, REGISTRY.ed, Fixed())
    assert m.make_challenge(HYBRID_CHALLENGE, HYBRID_KEY, REGISTRY.ed, Fixed()) != sealed
    assert m.open_challenge(sealed, HYBRID, REGISTRY.sign) == HYBRID_CHALLENGE
    other = hpke.HybridPrivateKey(bytes(32))
    with pytest.raises(NotAuth):  # another hybrid key: the key id differs
        m.open_challenge(sealed, other, REGISTRY.sign)
    recipient, inner = msgpack.unpackb(sealed)
    with pytest.raises(NotAuth):  # another key claiming this one's id
        m.open_challenge(msgpack.packb([m.key_id_bytes(m.opener_key(other)), inner]), other,
                         REGISTRY.sign)
    with pytest.raises(NotAuth):  # not signed by the registry
        m.open_challenge(sealed, HYBRID, OWNER.sign)
    with pytest.raises(FormError):  # shorter than the hybrid enc and a tag
        m.open_challenge(msgpack.packb([recipient, inner[:hpke.HYBRID_MIN_SEALED - 1]]),
                         HYBRID, REGISTRY.sign)


def test_hybrid_keys_are_checked_when_the_request_is_read() -> None:
    broken = bytearray(HYBRID_KEY.key)
    broken[:2] = b"\xff\xff"  # a coefficient >= q: not an ML-KEM-768 key (FIPS 203 7.2)
    for key, rcode in (([5, 1, 0, bytes(broken)], Rcode.FORMERR),
                       ([5, 1, 0, HYBRID_KEY.key[:-1]], Rcode.FORMERR),
                       ([5, 2, 0, HYBRID_KEY.key], Rcode.FORMERR)):
        fields = REGISTER_FIELDS[:1] + [key] + REGISTER_FIELDS[2:]
        with pytest.raises(ProtocolError) as info:
            m.open_request(REGISTRY.x, _sealed(_signed(_body(1, fields))))
        assert info.value.rcode == rcode, key[:3]


def test_envelopes_refuse_other_algorithms() -> None:
    with pytest.raises(FormError):
        m.seal_envelope(OWNER.sign, m.INFO_CHALLENGE, b"x", Fixed())


@settings(max_examples=20, deadline=None)
@given(plaintext=st.binary(max_size=300), info=st.binary(max_size=40))
def test_hybrid_hpke_round_trips(plaintext: bytes, info: bytes) -> None:
    sealed = hpke.seal_hybrid(HYBRID.public_key, info, plaintext)
    assert len(sealed) == len(plaintext) + hpke.HYBRID_MIN_SEALED
    assert hpke.open_hybrid(HYBRID, info, sealed) == plaintext
    with pytest.raises(NotAuth):
        hpke.open_hybrid(HYBRID, info + b"x", sealed)


# -- HPKE against cryptography's ------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=300), info=st.binary(max_size=40),
       ephemeral=st.binary(min_size=32, max_size=32))
def test_hpke_interoperates_with_cryptography(plaintext: bytes, info: bytes,
                                              ephemeral: bytes) -> None:
    sealed = hpke.seal(OWNER.encrypt.key, info, plaintext, ephemeral)
    assert len(sealed) == len(plaintext) + hpke.MIN_SEALED
    assert SUITE.decrypt(sealed, OWNER.x, info=info) == plaintext
    theirs = SUITE.encrypt(plaintext, OWNER.x.public_key(), info=info)
    assert hpke.open_sealed(OWNER.x, info, theirs) == plaintext
    with pytest.raises(NotAuth):
        hpke.open_sealed(REGISTRY.x, info, sealed)
    with pytest.raises(NotAuth):
        hpke.open_sealed(OWNER.x, info + b"x", sealed)


def test_hpke_refuses_a_low_order_key() -> None:
    with pytest.raises(FormError):
        hpke.seal(bytes(32), b"", b"x", EPHEMERAL_REQUEST)
    with pytest.raises((NotAuth, FormError)):
        hpke.open_sealed(OWNER.x, b"", bytes(48))


# -- rcodes of bad requests ------------------------------------------------------------------
def _sealed(plaintext: bytes) -> bytes:
    return m.seal_envelope(REGISTRY.encrypt, m.INFO_REQUEST, plaintext, Fixed(EPHEMERAL_REQUEST))


def _body(kind: int, fields: list, zone: str = "example.com.") -> bytes:
    return msgpack.packb([kind, zone, T0, NONCE, fields])


def _signed(body: bytes, signer=OWNER.ed) -> bytes:
    return msgpack.packb([body, signer.sign(m.CONTEXT_REQUEST + body)])


REGISTER_FIELDS = ["alice@example.com.", [1, 1, 0, OWNER.encrypt.key],
                   [2, 2, 0, OWNER.sign.key], None]
BAD_REQUESTS = [
    # (plaintext, rcode)
    (b"\xc1", Rcode.FORMERR),
    (msgpack.packb([b"x"]), Rcode.FORMERR),
    (msgpack.packb([b"\x95", None]), Rcode.FORMERR),
    (msgpack.packb([_body(99, []), None]), Rcode.NOTIMP),
    (msgpack.packb([_body(5, ["alice@example.com."]), bytes(64)]), Rcode.FORMERR),  # signed
    (msgpack.packb([_body(4, ["alice@example.com."]), None]), Rcode.FORMERR),  # unsigned
    (msgpack.packb([_body(5, ["example.com."]), None]), Rcode.FORMERR),  # not a mailbox
    (msgpack.packb([_body(5, ["alice@example.com."], "alice@x."), None]), Rcode.FORMERR),
    (msgpack.packb([_body(5, ["alice@example.com.", 1]), None]), Rcode.FORMERR),
    (msgpack.packb([_body(6, [bytes(16), bytes(15)]), None]), Rcode.FORMERR),
    (msgpack.packb([_body(8, [bytes(16), bytes(16)]), None]), Rcode.FORMERR),
    (msgpack.packb([_body(True, []), None]), Rcode.FORMERR),
    (msgpack.packb([msgpack.packb([5, "example.com.", -1, NONCE, ["a@b."]]), None]),
     Rcode.FORMERR),
    (msgpack.packb([msgpack.packb([5, "example.com.", 1.5, NONCE, ["a@b."]]), None]),
     Rcode.FORMERR),
    (msgpack.packb([msgpack.packb([5, "example.com.", T0, NONCE[:8], ["a@b."]]), None]),
     Rcode.FORMERR),
    (msgpack.packb([msgpack.packb([5, "example.com.", T0, NONCE, {"a": 1}]), None]),
     Rcode.FORMERR),
    (_signed(_body(1, REGISTER_FIELDS + [b"x"])), Rcode.FORMERR),  # 5 fields
    (_signed(_body(1, REGISTER_FIELDS), OWNER.ed)[:-1] + b"\x00", Rcode.NOTAUTH),
    (_signed(_body(1, REGISTER_FIELDS), REGISTRY.ed), Rcode.NOTAUTH),  # not the sign key
    (_signed(_body(1, REGISTER_FIELDS[:1] + [[3, 1, 0, bytes(56)]] + REGISTER_FIELDS[2:])),
     Rcode.REFUSED),  # X448: not taken
    (_signed(_body(1, REGISTER_FIELDS[:1] + [[2, 2, 0, OWNER.sign.key]] + REGISTER_FIELDS[2:])),
     Rcode.FORMERR),  # a signing key where the encryption key goes
    (_signed(_body(1, REGISTER_FIELDS[:1] + [[1, 1, 0, bytes(31)]] + REGISTER_FIELDS[2:])),
     Rcode.FORMERR),
    (_signed(_body(1, REGISTER_FIELDS[:3] + [bytes(m.MAX_BACKUP + 1)])), Rcode.FORMERR),
]


@pytest.mark.parametrize("plaintext,rcode", BAD_REQUESTS)
def test_bad_requests_get_their_rcode(plaintext: bytes, rcode: int) -> None:
    with pytest.raises(ProtocolError) as info:
        m.open_request(REGISTRY.x, _sealed(plaintext))
    assert info.value.rcode == rcode


def test_a_key_id_given_by_the_caller_is_the_one_checked() -> None:
    envelope = m.make_request(Kind.REGISTER, ZONE, REGISTER_FIELDS,
                              registry_key=REGISTRY.encrypt, time=T0, signer=OWNER.ed,
                              random=Fixed(NONCE, EPHEMERAL_REQUEST))
    own = bytes.fromhex(REGISTRY.encrypt.key_id)
    assert m.open_request(REGISTRY.x, envelope, key_id=own) == m.open_request(REGISTRY.x,
                                                                               envelope)
    with pytest.raises(NotAuth):  # the envelope names another key than the caller's
        m.open_request(REGISTRY.x, envelope, key_id=bytes.fromhex(OWNER.encrypt.key_id))


def test_a_request_sealed_to_another_key_is_notauth() -> None:
    envelope = m.seal_envelope(OWNER.encrypt, m.INFO_REQUEST, _signed(_body(1, REGISTER_FIELDS)),
                               Fixed(EPHEMERAL_REQUEST))
    with pytest.raises(NotAuth):
        m.open_request(REGISTRY.x, envelope)
    _, sealed = msgpack.unpackb(envelope)  # claims the registry's key id
    forged = msgpack.packb([bytes.fromhex(REGISTRY.encrypt.key_id), sealed])
    with pytest.raises(NotAuth):
        m.open_request(REGISTRY.x, forged)


def test_flags_in_submitted_keys_are_the_registrys_to_set() -> None:
    fields = [REGISTER_FIELDS[0], [1, 1, 0xFFFF, OWNER.encrypt.key], REGISTER_FIELDS[2], None]
    request = m.open_request(REGISTRY.x, _sealed(_signed(_body(1, fields))))
    assert request.encrypt.flags == 0  # type: ignore[union-attr]


def test_update_payload_is_strict() -> None:
    good = m.make_update(ZONE, b"x", 1)
    assert m.update_payload(Message.from_wire(good.to_wire())) == (ZONE, b"x")
    for change in (lambda msg: setattr(msg, "question", None),
                   lambda msg: setattr(msg, "question", Question(ZONE, RType.KEY)),
                   lambda msg: setattr(msg, "question", Question(ALICE, RType.SOA)),
                   lambda msg: msg.answer.clear(),
                   lambda msg: msg.answer.append(msg.answer[0]),
                   lambda msg: msg.additional.append(msg.answer[0]),
                   lambda msg: setattr(msg, "answer", [Record(ALICE, m.UPDATE_DATA, 0,
                                                                msg.answer[0].rdata)]),
                   lambda msg: setattr(msg, "answer", [Record(ZONE, m.UPDATE_DATA, 0,
                                                                Opaque(m.UPDATE_DATA,
                                                                         ("x",)))])):
        msg = m.make_update(ZONE, b"x", 1)
        change(msg)
        with pytest.raises(FormError):
            m.update_payload(Message.from_wire(msg.to_wire()))


def test_an_error_answer_carries_no_payload() -> None:
    request = m.make_update(ZONE, b"x", 7)
    response = m.make_update_answer(request, None, Rcode.NOTAUTH)
    decoded = Message.from_wire(response.to_wire())
    assert (decoded.id, decoded.qr, decoded.rcode, decoded.answer) == (7, True, Rcode.NOTAUTH, [])
    ok = Message.from_wire(m.make_update_answer(request, b"a").to_wire())
    assert m.update_payload(ok) == (ZONE, b"a")


# -- fuzzing: only our errors ---------------------------------------------------------------
OURS = (FormError, NotAuth, NotImplementedOpcode, Refused)


def _mutations(data: bytes):
    return st.one_of(
        st.binary(max_size=len(data) + 8),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)).map(
            lambda p: data[:p[0]] + bytes([data[p[0]] ^ p[1]]) + data[p[0] + 1:]),
        st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=8)).map(
            lambda p: data[:p[0]] + p[1] + data[p[0]:]))


def _msgpack_values():
    scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
               | st.text(max_size=20) | st.binary(max_size=70))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=20)


def _call(decode, data) -> None:
    try:
        decode(data)
    except OURS:
        pass


ENVELOPE = _register_envelope()
PLAINTEXT = _signed(_body(1, REGISTER_FIELDS))
CHALLENGE_WIRE = m.make_challenge(CHALLENGE, OWNER.encrypt, REGISTRY.ed, Fixed(EPHEMERAL_CHALLENGE))
ANSWER_BODY = msgpack.packb([2, bytes(32), ["alice@example.com.", [bytes(8)], [], 5]])


@FUZZ
@given(data=_mutations(ENVELOPE))
def test_fuzz_envelopes(data: bytes) -> None:
    _call(lambda d: m.open_request(REGISTRY.x, d), data)


@FUZZ
@given(data=_mutations(PLAINTEXT) | _mutations(_signed(_body(8, [bytes(16)] * 2 + [bytes(32)]))))
def test_fuzz_request_plaintexts(data: bytes) -> None:
    _call(lambda d: m.open_request(REGISTRY.x, _sealed(d)), data)


@FUZZ
@given(kind=st.integers(0, 9), zone=_msgpack_values(), time=_msgpack_values(),
       nonce=_msgpack_values(), fields=_msgpack_values(), signed=st.booleans())
def test_fuzz_request_bodies(kind, zone, time, nonce, fields, signed) -> None:
    body = msgpack.packb([kind, zone, time, nonce, fields])
    plaintext = _signed(body) if signed else msgpack.packb([body, None])
    _call(lambda d: m.open_request(REGISTRY.x, _sealed(d)), plaintext)


@FUZZ
@given(data=_mutations(CHALLENGE_WIRE))
def test_fuzz_challenges(data: bytes) -> None:
    _call(lambda d: m.open_challenge(d, OWNER.x, REGISTRY.sign), data)


HYBRID_CHALLENGE_WIRE = m.make_challenge(HYBRID_CHALLENGE, HYBRID_KEY, REGISTRY.ed, Fixed())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutations(HYBRID_CHALLENGE_WIRE))
def test_fuzz_hybrid_challenges(data: bytes) -> None:
    _call(lambda d: m.open_challenge(d, HYBRID, REGISTRY.sign), data)


@FUZZ
@given(body=_mutations(CHALLENGE.to_body()) | _msgpack_values().map(msgpack.packb))
def test_fuzz_challenge_bodies(body: bytes) -> None:
    plaintext = msgpack.packb([body, REGISTRY.ed.sign(m.CONTEXT_CHALLENGE + body)])
    sealed = m.seal_envelope(OWNER.encrypt, m.INFO_CHALLENGE, plaintext, Fixed(EPHEMERAL_CHALLENGE))
    _call(lambda d: m.open_challenge(d, OWNER.x, REGISTRY.sign), sealed)


@FUZZ
@given(body=_mutations(ANSWER_BODY) | _msgpack_values().map(msgpack.packb),
       resign=st.booleans())
def test_fuzz_answers(body: bytes, resign: bool) -> None:
    signature = REGISTRY.ed.sign(m.CONTEXT_ANSWER + body) if resign else bytes(64)
    _call(lambda d: m.read_answer(d, REGISTRY.sign, bytes(32)), msgpack.packb([body, signature]))


@FUZZ
@given(data=_mutations(LOG_ENTRY.to_wire()) | _msgpack_values().map(msgpack.packb))
def test_fuzz_log_entries(data: bytes) -> None:
    _call(m.LogEntry.from_wire, data)


@FUZZ
@given(text=st.text(max_size=70) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567 -=",
                                           min_size=50, max_size=56))
def test_fuzz_mail_tokens(text: str) -> None:
    _call(m.read_mail_token, text)


@FUZZ
@given(data=_mutations(m.make_update(ZONE, ENVELOPE, 1).to_wire()))
def test_fuzz_update_messages(data: bytes) -> None:
    def decode(d: bytes) -> None:
        m.update_payload(Message.from_wire(d))

    try:
        decode(data)
    except ProtocolError:  # the message codec's errors too (BADVERS, ...)
        pass


@FUZZ
@given(flags=st.integers(0, 0xFFFF))
def test_log_entries_keep_every_flag(flags: int) -> None:
    keys = (KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, OWNER.encrypt.key, flags),)
    entry = m.LogEntry(LogOp.WITHDRAW, ZONE, ALICE, keys, 1, 2, None, "unregistered")
    assert m.LogEntry.from_wire(entry.to_wire()) == entry


if __name__ == "__main__":
    print(render())
    print(render_hybrid_challenge())
