"""Sealed messages and detached signatures (keyresolve.client.seal).

The test vectors are read from docs/seal-format.md and checked both ways:
each message opens with each of its identities to its plaintext, and sealing
the plaintext with the vector's randomness gives exactly its bytes. Run
``python tests/test_seal.py`` to print the vector blocks after a deliberate
format change.

The rest: hypothesis over chunk boundaries, truncation at every length,
flipped bytes in every region, reordered and dropped chunks, 1..20
recipients, wrong keys and hidden recipients; the streaming API fed in any
pieces. HPKE (protocol.hpke) is checked against RFC 9180's own vector in
tests/test_hpke.py.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.client import seal as S
from keyresolve.client.seal import CHUNK_CT, CHUNK_SIZE, MAX_RECIPIENTS, TRAILER_SIZE, DetachedSignature, HybridIdentity, HybridRecipient, Opener, Sealer, SigningKey, X25519Identity, X25519Recipient, hybrid_seed_to_pem, identity_from_pem, make_recipient, open_message, parse_header, seal, sign_detached
from keyresolve.protocol.errors import BadMessageSignature, CorruptMessage, KeyFileError, KeyresolveError, NotARecipient, SealError, TruncatedMessage, UnsupportedMessage
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyUsage

DOC = Path(__file__).resolve().parent.parent / "docs" / "seal-format.md"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fixed(label: str, size: int = 32) -> bytes:
    """Fixed key material for the vectors: SHA-256 of a label (then SHAKE for more)."""
    return hashlib.shake_256(b"keyresolve-seal vector " + label.encode()).digest(size)


def _x25519(label: str) -> X25519Identity:
    return X25519Identity(x25519.X25519PrivateKey.from_private_bytes(_fixed(label)))


def _signer(label: str, address: str) -> SigningKey:
    return SigningKey(address, ed25519.Ed25519PrivateKey.from_private_bytes(_fixed(label)))


class Replay:
    """A recipient whose stanza body is given (a vector's hybrid stanza:
    ML-KEM encapsulation takes no injected randomness)."""

    def __init__(self, recipient, body: bytes) -> None:
        self.kind, self.key_id, self.body = recipient.kind, recipient.key_id, body

    def wrap(self, file_key, random) -> bytes:
        return self.body


class Draws:
    """`random` for the vectors: hands out a fixed byte string in order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def __call__(self, n: int) -> bytes:
        out = self.data[self.at:self.at + n]
        assert len(out) == n, "the vector's randomness ran out"
        self.at += n
        return out


# -- the vector blocks of docs/seal-format.md ----------------------------------------
@dataclass
class Vector:
    name: str
    fields: dict[str, list[str]] = field(default_factory=dict)

    def one(self, key: str) -> str:
        (value,) = self.fields[key]
        return value

    def get(self, key: str) -> str | None:
        return self.fields[key][0] if key in self.fields else None


_BLOCK = re.compile(r"<!-- vector: ([a-z0-9-]+) -->\n```text\n(.*?)```", re.S)


def read_vectors(text: str) -> dict[str, Vector]:
    """Every ``<!-- vector: NAME -->`` block: ``key: value`` lines, a value's
    hex continuing on the lines below it."""
    vectors = {}
    for name, body in _BLOCK.findall(text):
        vector, key = Vector(name), None
        for line in body.splitlines():
            if re.fullmatch(r"[0-9a-f]+", line) and key is not None:
                vector.fields[key][-1] += line
                continue
            key, _, value = line.partition(": ")
            vector.fields.setdefault(key, []).append(value)
        vectors[name] = vector
    return vectors


def _identity(text: str):
    kind, secret = text.split()
    if kind == "x25519":
        return X25519Identity(x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(secret)))
    assert kind == "mlkem768x25519"
    return HybridIdentity(bytes.fromhex(secret))


def _recipient(text: str):
    kind, public = text.split()
    return make_recipient(KEY(KeyAlgorithm[kind.upper()], KeyUsage.ENCRYPT, bytes.fromhex(public)))


def _plaintext(vector: Vector) -> bytes:
    if (pattern := vector.get("plaintext-pattern")) is not None:
        return bytes(i % 256 for i in range(int(pattern)))
    return bytes.fromhex(vector.one("plaintext"))


def _signing_key(vector: Vector) -> SigningKey | None:
    if (text := vector.get("signer")) is None:
        return None
    address, secret = text.split()
    return SigningKey(address, ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret)))


def _reseal(vector: Vector) -> bytes:
    recipients = [_recipient(r) for r in vector.fields["recipient"]]
    for replay in vector.fields.get("replayed-stanza", []):
        index, body = replay.split()
        recipients[int(index)] = Replay(recipients[int(index)], bytes.fromhex(body))
    draws = Draws(bytes.fromhex(vector.one("random")))
    sealer = Sealer(recipients, signer=_signing_key(vector),
                    hide_recipients=vector.get("hide-recipients") == "yes", random=draws)
    message = sealer.header + sealer.update(_plaintext(vector)) + sealer.finish()
    assert draws.at == len(draws.data), "the vector's randomness is not all used"
    return message


def _message(vector: Vector, resealed: bytes) -> bytes:
    """The vector's message: its hex, or (long messages) the bytes whose
    SHA-256, length, header and last bytes the document gives."""
    if (text := vector.get("message")) is not None:
        return bytes.fromhex(text)
    assert hashlib.sha256(resealed).hexdigest() == vector.one("message-sha256")
    assert len(resealed) == int(vector.one("message-length"))
    assert resealed.startswith(bytes.fromhex(vector.one("header")))
    assert resealed.endswith(bytes.fromhex(vector.one("last-chunk")))
    return resealed


VECTORS = read_vectors(DOC.read_text()) if DOC.exists() else {}
SEAL_VECTORS = sorted(name for name, v in VECTORS.items() if "recipient" in v.fields)


def test_the_document_has_every_vector():
    assert set(VECTORS) == {"one-x25519", "two-recipients-hybrid", "hidden-recipients",
                            "signed", "multi-chunk", "detached-signature", "signed-envelope"}


@pytest.mark.parametrize("name", SEAL_VECTORS)
def test_vector_seals_to_its_bytes(name):
    vector = VECTORS[name]
    resealed = _reseal(vector)
    assert resealed == _message(vector, resealed)


@pytest.mark.parametrize("name", SEAL_VECTORS)
def test_vector_keys_are_derived_as_documented(name):
    vector = VECTORS[name]
    random = bytes.fromhex(vector.one("random"))
    file_key, nonce = random[:32], random[32:48]
    assert (file_key.hex(), nonce.hex()) == (vector.one("file-key"), vector.one("nonce"))
    assert S.hkdf(file_key, nonce, b"keyresolve-seal/v1 header").hex() == vector.one("header-key")
    assert S.hkdf(file_key, nonce, b"keyresolve-seal/v1 payload").hex() == vector.one("payload-key")
    message = _message(vector, _reseal(vector))
    header = parse_header(message)
    assert header.nonce == nonce
    assert S.hmac.new(bytes.fromhex(vector.one("header-key")), header.raw[:-32],
                      hashlib.sha256).digest() == header.mac
    first = message[len(header.raw):len(header.raw) + CHUNK_CT]
    last = len(message) - len(header.raw) <= CHUNK_CT
    S.ChaCha20Poly1305(bytes.fromhex(vector.one("payload-key"))).decrypt(
        S.chunk_nonce(0, last), first, None)


@pytest.mark.parametrize("name", SEAL_VECTORS)
def test_vector_opens_with_each_identity(name):
    vector = VECTORS[name]
    message = _message(vector, _reseal(vector))
    header = parse_header(message)
    assert header is not None and header.hidden == (vector.get("hide-recipients") == "yes")
    for text in vector.fields["identity"]:
        opened = open_message(message, [_identity(text)])
        assert opened.plaintext == _plaintext(vector)
        if (signer := vector.get("signer")) is None:
            assert opened.signature is None
        else:
            assert opened.signature.address == signer.split()[0]
            opened.signature.verify(bytes.fromhex(vector.one("signer-public")))


def test_detached_signature_vector_both_ways():
    vector = VECTORS["detached-signature"]
    data = bytes.fromhex(vector.one("data"))
    signature = bytes.fromhex(vector.one("signature"))
    signer = _signing_key(vector)
    made = sign_detached(signer, hashlib.sha256(data).digest())
    assert made.to_wire() == signature
    parsed = DetachedSignature.from_wire(signature)
    assert (parsed.address, parsed.key_id.hex()) == (signer.address, vector.one("key-id"))
    parsed.verify(bytes.fromhex(vector.one("signer-public")), hashlib.sha256(data).digest())
    with pytest.raises(BadMessageSignature):
        parsed.verify(bytes.fromhex(vector.one("signer-public")),
                      hashlib.sha256(data + b"!").digest())


# -- keys used below -------------------------------------------------------------------
ALICE = _x25519("alice")
BOB = _x25519("bob")
CAROL = HybridIdentity(_fixed("carol"))
MALLORY = _x25519("mallory")
SIGNER = _signer("alice-sign", "alice@example.com")
RECIPIENTS = {"alice": X25519Recipient(ALICE.public_key), "bob": X25519Recipient(BOB.public_key),
              "carol": HybridRecipient(CAROL.public_key)}


def _stream(message: bytes, identities, pieces: int = 1) -> bytes:
    opener = Opener(identities)
    step = max(1, len(message) // pieces)
    out = b"".join(opener.update(message[i:i + step]) for i in range(0, len(message), step))
    out += opener.finish()
    assert opener.complete
    return out


# -- chunk boundaries ----------------------------------------------------------------
EDGES = sorted({n for k in (0, 1, 2, 3) for d in (-TRAILER_SIZE - 1, -TRAILER_SIZE,
                                                  -TRAILER_SIZE + 1, -1, 0, 1)
                if (n := k * CHUNK_SIZE + d) >= 0} | {0, 1, 2})


@pytest.mark.parametrize("size", EDGES)
def test_sizes_around_chunk_boundaries_round_trip(size):
    data = bytes(i * 7 % 256 for i in range(size))
    message = seal(data, [RECIPIENTS["alice"]])
    header = parse_header(message)
    payload = len(message) - len(header.raw)
    chunks = -(-(size + TRAILER_SIZE) // CHUNK_SIZE)
    assert payload == size + TRAILER_SIZE + chunks * S.TAG_SIZE  # no chunk is empty
    assert _stream(message, [ALICE]) == data
    assert _stream(message, [ALICE], pieces=7) == data


@FAST
@given(size=st.integers(0, 3 * CHUNK_SIZE + 10), cuts=st.lists(st.integers(0, 400_000), max_size=6))
def test_any_size_fed_in_any_pieces_round_trips(size, cuts):
    data = hashlib.shake_256(str(size).encode()).digest(size) if size else b""
    sealer = Sealer([RECIPIENTS["bob"]], signer=SIGNER)
    bounds = sorted({0, size, *(c % (size + 1) for c in cuts)})
    body = b"".join(sealer.update(data[a:b]) for a, b in zip(bounds, bounds[1:]))
    message = sealer.header + body + sealer.finish()
    assert message[len(sealer.header):] == body + message[len(sealer.header) + len(body):]
    opener = Opener([BOB])
    mbounds = sorted({0, len(message), *(c % (len(message) + 1) for c in cuts)})
    out = b"".join(opener.update(message[a:b]) for a, b in zip(mbounds, mbounds[1:]))
    assert out + opener.finish() == data
    assert opener.signature.address == "alice@example.com"
    opener.signature.verify(SIGNER.public_key)


def test_output_never_runs_ahead_of_authentication():
    """The opener returns a chunk only after the next one authenticated, and
    nothing before the header did."""
    data = bytes(3 * CHUNK_SIZE)
    message = seal(data, [RECIPIENTS["alice"]])
    head = len(parse_header(message).raw)
    opener = Opener([ALICE])
    assert opener.update(message[:head + CHUNK_CT]) == b""  # chunk 0 held back
    assert opener.update(message[head + CHUNK_CT:head + 2 * CHUNK_CT]) == bytes(CHUNK_SIZE)
    assert not opener.complete


# -- truncation, corruption, reordering ---------------------------------------------------
SMALL = seal(b"attack at dawn", [RECIPIENTS["alice"], RECIPIENTS["bob"]], signer=SIGNER)


@pytest.mark.parametrize("length", range(len(SMALL)))
def test_truncated_at_every_length_is_detected(length):
    opener, released = Opener([ALICE]), []
    with pytest.raises((TruncatedMessage, CorruptMessage)):
        released.append(opener.update(SMALL[:length]))
        opener.finish()
    assert released in ([], [b""]) and not opener.complete


def test_truncated_at_a_chunk_boundary_says_truncated():
    message = seal(bytes(3 * CHUNK_SIZE), [RECIPIENTS["alice"]])
    head = len(parse_header(message).raw)
    for chunks in (1, 2, 3):
        opener = Opener([ALICE])
        opener.update(message[:head + chunks * CHUNK_CT])
        with pytest.raises(TruncatedMessage, match="ends before its last chunk"):
            opener.finish()


def _regions(message: bytes) -> dict[str, range]:
    header = parse_header(message)
    head = len(header.raw)
    return {"magic": range(0, 7), "flags": range(7, 8), "nonce": range(8, 24),
            "count": range(24, 26), "stanzas": range(26, head - 32), "mac": range(head - 32, head),
            "payload": range(head, len(message))}


@FAST
@given(st.data())
def test_a_flipped_byte_anywhere_is_detected(data):
    message = SMALL
    regions = _regions(message)
    region = data.draw(st.sampled_from(sorted(regions)))
    at = data.draw(st.sampled_from(regions[region]))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(message)
    bad[at] ^= 1 << bit
    with pytest.raises(SealError):
        _stream(bytes(bad), [ALICE])


def test_a_flipped_byte_in_every_chunk_of_a_long_message_is_detected():
    message = seal(bytes(2 * CHUNK_SIZE + 5), [RECIPIENTS["alice"]])
    head = len(parse_header(message).raw)
    for at in (head, head + CHUNK_CT - 1, head + CHUNK_CT, head + 2 * CHUNK_CT + 3, len(message) - 1):
        bad = bytearray(message)
        bad[at] ^= 0x80
        with pytest.raises(CorruptMessage):
            _stream(bytes(bad), [ALICE])


@pytest.mark.parametrize("order", [(1, 0, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2), (0, 0, 1, 2, 3),
                                   (0, 1, 2), (0, 1, 3), (1, 2, 3), (0, 1, 2, 3, 3)])
def test_reordered_dropped_or_repeated_chunks_are_detected(order):
    message = seal(bytes(3 * CHUNK_SIZE + 1), [RECIPIENTS["alice"]])
    head = len(parse_header(message).raw)
    chunks = [message[head + i * CHUNK_CT:head + (i + 1) * CHUNK_CT] for i in range(4)]
    assert b"".join(chunks) == message[head:]
    with pytest.raises(CorruptMessage):
        _stream(message[:head] + b"".join(chunks[i] for i in order), [ALICE])


def test_appended_bytes_are_detected():
    with pytest.raises(CorruptMessage):
        _stream(SMALL + b"\x00", [ALICE])


def test_chunks_of_another_message_to_the_same_key_do_not_splice():
    other = seal(b"attack at dusk", [RECIPIENTS["alice"], RECIPIENTS["bob"]], signer=SIGNER)
    head = len(parse_header(SMALL).raw)
    with pytest.raises(CorruptMessage):
        _stream(SMALL[:head] + other[head:], [ALICE])


# -- recipients ------------------------------------------------------------------------
POOL = [_x25519(f"r{i}") for i in range(20)]


@pytest.mark.parametrize("hide", [False, True])
@pytest.mark.parametrize("count", range(1, 21))
def test_every_recipient_of_1_to_20_opens_and_an_outsider_cannot(count, hide):
    identities = POOL[:count]
    recipients = [X25519Recipient(i.public_key) for i in identities]
    if count > 2:
        recipients[1] = HybridRecipient(CAROL.public_key)
        identities = [identities[0], CAROL, *identities[2:]]
    message = seal(b"to the list", recipients, hide_recipients=hide)
    header = parse_header(message)
    assert len(header.stanzas) == count
    assert all((s.key_id is None) == hide for s in header.stanzas)
    for who in identities:
        opened = open_message(message, [MALLORY, who])
        assert opened.plaintext == b"to the list" and opened.identity is who
    with pytest.raises(NotARecipient):
        open_message(message, [MALLORY, HybridIdentity(_fixed("dave"))])


def test_hidden_header_holds_no_key_id():
    public = seal(b"x", [RECIPIENTS["alice"], RECIPIENTS["carol"]])
    hidden = seal(b"x", [RECIPIENTS["alice"], RECIPIENTS["carol"]], hide_recipients=True)
    for kid in (ALICE.key_id, CAROL.key_id):
        assert kid in public and kid not in hidden
    assert open_message(hidden, [CAROL]).plaintext == b"x"
    assert open_message(hidden, [BOB, ALICE]).plaintext == b"x"


def test_not_a_recipient_names_key_ids_never_keys():
    message = seal(b"x", [RECIPIENTS["alice"]])
    with pytest.raises(NotARecipient) as info:
        open_message(message, [BOB])
    assert ALICE.key_id.hex() in str(info.value)
    with pytest.raises(NotARecipient) as info:
        open_message(seal(b"x", [RECIPIENTS["alice"]], hide_recipients=True), [BOB])
    assert ALICE.key_id.hex() not in str(info.value)


def test_a_stanza_for_my_key_id_that_does_not_open_is_corrupt():
    """Bob's key id on a stanza wrapped to someone else."""
    forged = Replay(RECIPIENTS["bob"], RECIPIENTS["alice"].wrap(bytes(32), lambda n: bytes(n)))
    with pytest.raises(CorruptMessage, match=f"stanza for key {BOB.key_id.hex()}"):
        open_message(seal(b"x", [forged]), [BOB])


def test_a_stanza_whose_file_key_fails_the_header_mac_is_corrupt():
    """A valid stanza to Bob moved into Alice's message: the MAC says no."""
    to_bob = parse_header(seal(b"y", [RECIPIENTS["bob"]])).stanzas[0]
    message = seal(b"x", [RECIPIENTS["alice"], RECIPIENTS["bob"]])
    header = parse_header(message)
    spliced = message.replace(header.stanzas[1].to_wire(), to_bob.to_wire())
    for identity in (BOB, ALICE):  # Bob's stanza opens, the MAC fails; Alice's MAC fails
        with pytest.raises(CorruptMessage, match="header does not authenticate"):
            open_message(spliced, [identity])


def test_recipient_limits_and_kinds():
    with pytest.raises(SealError):
        seal(b"x", [])
    with pytest.raises(SealError):
        seal(b"x", [RECIPIENTS["alice"]] * (MAX_RECIPIENTS + 1))
    for algorithm, size in ((KeyAlgorithm.X448, 56), (KeyAlgorithm.ED25519, 32)):
        usage = KeyUsage.SIGN if algorithm == KeyAlgorithm.ED25519 else KeyUsage.ENCRYPT
        with pytest.raises(SealError, match="cannot seal"):
            make_recipient(KEY(algorithm, usage, bytes(size)))
    with pytest.raises(SealError, match="not a usable X25519 key"):
        seal(b"x", [X25519Recipient(bytes(32))])  # a low-order point


def test_unknown_stanza_kinds_are_skipped():
    """A stanza of a kind this version does not know (a later KEM) is passed over."""
    message = seal(b"x", [RECIPIENTS["alice"]])
    header = parse_header(message)
    file_key = ALICE.unwrap(header.stanzas[0].body)
    head = (header.raw[:24] + b"\x00\x02" + S.Stanza(200, bytes(8), b"\x01\x02\x03").to_wire()
            + header.stanzas[0].to_wire())
    mac = S.hmac.new(S.header_key(file_key, header.nonce), head, hashlib.sha256).digest()
    rebuilt = head + mac + message[len(header.raw):]
    assert [s.kind for s in parse_header(rebuilt).stanzas] == [200, KeyAlgorithm.X25519]
    assert open_message(rebuilt, [ALICE]).plaintext == b"x"
    with pytest.raises(CorruptMessage, match="header does not authenticate"):
        open_message(head + header.mac + message[len(header.raw):], [ALICE])


# -- header parsing ----------------------------------------------------------------------
@FAST
@given(st.binary(max_size=200))
def test_header_parser_never_crashes(data):
    try:
        parse_header(data)
    except SealError as exc:
        assert isinstance(exc, (CorruptMessage, UnsupportedMessage))


@FAST
@given(st.binary(max_size=300), st.integers(0, 5))
def test_opener_on_garbage_raises_only_seal_errors(data, pieces):
    with pytest.raises(SealError):
        _stream(S.MAGIC + bytes([S.VERSION]) + data, [ALICE, CAROL], pieces + 1)


def test_a_header_longer_than_the_limit_is_refused_as_soon_as_seen():
    stanza = bytes([200]) + bytes(8) + b"\xff\xff" + bytes(65535)  # an unknown kind, 64 KiB
    head = S.MAGIC + bytes([S.VERSION, 0]) + bytes(16) + MAX_RECIPIENTS.to_bytes(2, "big")
    opener = Opener([ALICE])
    with pytest.raises(CorruptMessage, match="header is longer than"):
        for _ in range(S.MAX_HEADER_SIZE // len(stanza) + 1):
            opener.update(head + stanza if head else stanza)
            head = b""
    assert len(opener._buf) <= S.MAX_HEADER_SIZE + len(stanza)  # noqa: SLF001 - the last piece


def test_wrong_magic_and_version_are_unsupported():
    with pytest.raises(UnsupportedMessage, match="not a sealed message"):
        Opener([ALICE]).update(b"-----BEGIN PGP MESSAGE-----")
    with pytest.raises(UnsupportedMessage, match="version 2"):
        Opener([ALICE]).update(S.MAGIC + b"\x02" + SMALL[7:])
    with pytest.raises(CorruptMessage, match="unknown flags"):
        Opener([ALICE]).update(SMALL[:7] + b"\x80" + SMALL[8:])


def test_a_failed_opener_stays_failed():
    opener = Opener([ALICE])
    with pytest.raises(NotARecipient):
        opener.update(seal(b"x", [RECIPIENTS["bob"]]))
    with pytest.raises(NotARecipient, match="already failed"):
        opener.finish()


def test_seal_errors_share_the_root():
    for cls in (NotARecipient, CorruptMessage, TruncatedMessage, BadMessageSignature,
                UnsupportedMessage):
        assert issubclass(cls, SealError) and issubclass(cls, KeyresolveError)


# -- signatures ----------------------------------------------------------------------------
def test_signature_is_not_in_clear_and_verifies():
    message = seal(b"signed", [RECIPIENTS["alice"]], signer=SIGNER)
    assert b"alice@example.com" not in message and SIGNER.key_id not in message
    opened = open_message(message, [ALICE])
    assert (opened.signature.address, opened.signature.key_id) == ("alice@example.com",
                                                                   SIGNER.key_id)
    opened.signature.verify(SIGNER.public_key)
    other = _signer("eve", "alice@example.com")
    with pytest.raises(BadMessageSignature, match="signed by key"):
        opened.signature.verify(other.public_key)


def test_a_recipient_cannot_change_the_signed_plaintext():
    """A recipient knows the payload key and re-encrypts other data under the
    same header and trailer: the signature no longer verifies."""
    message = seal(b"pay 10", [RECIPIENTS["alice"], RECIPIENTS["bob"]], signer=SIGNER)
    header = parse_header(message)
    file_key = next(ALICE.unwrap(s.body) for s in header.stanzas if s.key_id == ALICE.key_id)
    aead = S.ChaCha20Poly1305(S.payload_key(file_key, header.nonce))
    plaintext = aead.decrypt(S.chunk_nonce(0, True), message[len(header.raw):], None)
    forged_pt = b"pay 99" + plaintext[6:]
    forged = header.raw + aead.encrypt(S.chunk_nonce(0, True), forged_pt, None)
    opened = open_message(forged, [BOB])
    assert opened.plaintext == b"pay 99"
    with pytest.raises(BadMessageSignature):
        opened.signature.verify(SIGNER.public_key)


def test_signer_address_limits():
    with pytest.raises(SealError):
        _signer("x", "a" * 256)
    with pytest.raises(SealError):
        _signer("x", "")
    longest = _signer("x", "a" * 255)
    opened = open_message(seal(b"x", [RECIPIENTS["alice"]], signer=longest), [ALICE])
    opened.signature.verify(longest.public_key)


@FAST
@given(st.binary(max_size=200))
def test_detached_signature_parser_never_crashes(data):
    for candidate in (data, S.SIGNATURE_MAGIC + data, S.SIGNATURE_MAGIC + b"\x01" + data):
        try:
            DetachedSignature.from_wire(candidate)
        except SealError as exc:
            assert isinstance(exc, (CorruptMessage, UnsupportedMessage))


def test_detached_signature_round_trip_and_tamper():
    digest = hashlib.sha256(b"document").digest()
    wire = sign_detached(SIGNER, digest).to_wire()
    DetachedSignature.from_wire(wire).verify(SIGNER.public_key, digest)
    bad = bytearray(wire)
    bad[-1] ^= 1
    with pytest.raises(BadMessageSignature):
        DetachedSignature.from_wire(bytes(bad)).verify(SIGNER.public_key, digest)


# -- private key files -------------------------------------------------------------------
def test_identity_from_pem_reads_what_keygen_writes():
    from keyresolve.cli.keygen import generate

    for algorithm in (KeyAlgorithm.X25519, KeyAlgorithm.MLKEM768X25519):
        pem, key = generate(algorithm)
        identity = identity_from_pem(pem)
        assert identity.key_id.hex() == key.key_id
        assert open_message(seal(b"k", [make_recipient(key)]), [identity]).plaintext == b"k"
    # A private key file is ours (KeyFileError), not a peer's sealed message.
    for bad in (generate(KeyAlgorithm.ED25519)[0], b"not a key file",
                b"-----BEGIN MLKEM768X25519 PRIVATE KEY-----\n!!\n"
                b"-----END MLKEM768X25519 PRIVATE KEY-----\n",
                hybrid_seed_to_pem(bytes(63))):
        with pytest.raises(KeyFileError) as info:
            identity_from_pem(bad)
        assert not isinstance(info.value, SealError) and info.value.remote is False


def test_signing_key_from_pem_reads_what_keygen_writes():
    from keyresolve.cli.keygen import generate

    pem, key = generate(KeyAlgorithm.ED25519)
    signer = SigningKey.from_pem("alice@example.com", pem)
    assert signer.key_id.hex() == key.key_id
    opened = open_message(seal(b"s", [RECIPIENTS["alice"]], signer=signer), [ALICE])
    opened.signature.verify(S.signing_key_for(key))
    with pytest.raises(KeyFileError, match="not an ed25519") as info:
        SigningKey.from_pem("alice@example.com", generate(KeyAlgorithm.X25519)[0])
    assert info.value.remote is False
    with pytest.raises(SealError, match="valid Unicode"):
        SigningKey("\udc80@example.com", signer.private_key)


def test_errors_and_reprs_hold_no_key_material():
    secrets = (_fixed("alice").hex(), _fixed("carol").hex(), _fixed("alice-sign").hex())
    for text in (repr(ALICE), repr(CAROL), repr(SIGNER)):
        assert not any(secret in text for secret in secrets)
    with pytest.raises(SealError) as info:
        open_message(seal(b"x", [RECIPIENTS["alice"]])[:-1], [ALICE])
    assert not any(secret in str(info.value) for secret in secrets)


# -- generating the vector blocks --------------------------------------------------------------
def _hex_lines(data: bytes) -> str:
    text = data.hex()
    return "\n".join(text[i:i + 64] for i in range(0, len(text), 64))


def _block(name: str, items: list[tuple[str, str]]) -> str:
    lines = [f"{key}: {value}" for key, value in items]
    return f"<!-- vector: {name} -->\n```text\n" + "\n".join(lines) + "\n```\n"


def make_vectors() -> str:
    """The blocks of docs/seal-format.md, from the fixed keys and randomness."""
    alice, bob, carol = _x25519("alice"), _x25519("bob"), HybridIdentity(_fixed("carol"))
    signer = _signer("alice-sign", "alice@example.com")
    hello = b"Hello, keyresolve!\n"
    out = []

    def one(name, recipients, identities, plaintext, *, hide=False, sign=None, replay=(),
            pattern=None):
        draws = _fixed(name + " randomness", 32 + 16 + 32 * sum(
            1 for r in recipients if isinstance(r, X25519Recipient)))
        # a hybrid stanza is sealed with the OS's randomness, then given as replayed
        sealer = Sealer(recipients, signer=sign, hide_recipients=hide, random=Draws(draws))
        message = sealer.header + sealer.update(plaintext) + sealer.finish()
        header = parse_header(message)
        items = [("recipient", f"{KeyAlgorithm(r.kind).name.lower()} {_hex_lines(r.public_key)}")
                 for r in recipients]
        items += [("identity", f"{KeyAlgorithm(i.kind).name.lower()} {_secret(i)}")
                  for i in identities]
        if hide:
            items.append(("hide-recipients", "yes"))
        if sign:
            items.append(("signer", f"{sign.address} {_fixed('alice-sign').hex()}"))
            items.append(("signer-public", sign.public_key.hex()))
        items.append(("random", _hex_lines(draws)))
        file_key, nonce = draws[:32], draws[32:48]
        items += [("file-key", file_key.hex()), ("nonce", nonce.hex()),
                  ("header-key", S.header_key(file_key, nonce).hex()),
                  ("payload-key", S.payload_key(file_key, nonce).hex())]
        for index in replay:
            items.append(("replayed-stanza", f"{index} {_hex_lines(header.stanzas[index].body)}"))
        if pattern is not None:
            items.append(("plaintext-pattern", str(pattern)))
        else:
            items.append(("plaintext", plaintext.hex()))
        if len(message) > 4096:
            items += [("header", _hex_lines(header.raw)),
                      ("last-chunk", _hex_lines(message[-(len(message) - len(header.raw))
                                                        % CHUNK_CT:])),
                      ("message-length", str(len(message))),
                      ("message-sha256", hashlib.sha256(message).hexdigest())]
        else:
            items.append(("message", _hex_lines(message)))
        out.append(_block(name, items))

    one("one-x25519", [X25519Recipient(alice.public_key)], [alice], hello)
    one("two-recipients-hybrid", [X25519Recipient(alice.public_key),
                                  HybridRecipient(carol.public_key)], [alice, carol], hello,
        replay=[1])
    one("hidden-recipients", [X25519Recipient(alice.public_key), X25519Recipient(bob.public_key)],
        [alice, bob], hello, hide=True)
    one("signed", [X25519Recipient(bob.public_key)], [bob], hello, sign=signer)
    size = CHUNK_SIZE + 100
    one("multi-chunk", [X25519Recipient(alice.public_key)], [alice],
        bytes(i % 256 for i in range(size)), pattern=size)
    detached = sign_detached(signer, hashlib.sha256(hello).digest())
    out.append(_block("detached-signature", [
        ("signer", f"{signer.address} {_fixed('alice-sign').hex()}"),
        ("signer-public", signer.public_key.hex()), ("key-id", signer.key_id.hex()),
        ("data", hello.hex()), ("signature", _hex_lines(detached.to_wire()))]))
    return "\n".join(out)


def _secret(identity) -> str:
    if isinstance(identity, HybridIdentity):
        return _fixed("carol").hex()
    return identity.private_key.private_bytes_raw().hex()


if __name__ == "__main__":
    sys.stdout.write(make_vectors())
