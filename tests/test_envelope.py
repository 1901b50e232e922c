"""Signed envelopes (docs/seal-format.md 10): the vector both ways, streaming
at any split, truncation and altered bytes."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.client.envelope import (ENVELOPE_MAGIC, EnvelopeReader, EnvelopeWriter,
                                        make_envelope, signature_size)
from keyresolve.client.seal import DetachedSignature, SigningKey
from keyresolve.protocol.errors import (BadMessageSignature, CorruptMessage, SealError,
                                        TruncatedMessage, UnsupportedMessage)

from .test_seal import VECTORS

VECTOR = VECTORS["signed-envelope"]
ADDRESS, SEED = VECTOR.one("signer").split()
SIGNER = SigningKey(ADDRESS, ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED)))
PUBLIC = bytes.fromhex(VECTOR.one("signer-public"))
DATA = bytes.fromhex(VECTOR.one("data"))
ENVELOPE = bytes.fromhex(VECTOR.one("envelope"))


def read(envelope: bytes, cuts: list[int] = ()) -> tuple[bytes, DetachedSignature, bytes]:
    reader = EnvelopeReader()
    out, start = [], 0
    for cut in sorted(cuts) + [len(envelope)]:
        out.append(reader.update(envelope[start:cut]))
        start = cut
    signature, digest = reader.finish()
    return b"".join(out), signature, digest


def test_vector_is_made_from_its_signer_and_data():
    assert make_envelope(DATA, SIGNER) == ENVELOPE
    assert SIGNER.public_key == PUBLIC


def test_vector_reads_and_verifies_and_its_signature_is_a_detached_one():
    data, signature, digest = read(ENVELOPE)
    assert data == DATA and signature.address == ADDRESS
    assert digest == hashlib.sha256(DATA).digest()
    signature.verify(PUBLIC, digest)
    detached = ENVELOPE[-signature_size(len(ADDRESS)):]
    assert DetachedSignature.from_wire(detached) == signature
    assert VECTORS["detached-signature"].one("signature") == detached.hex()


def test_the_writer_streams_what_make_envelope_makes():
    writer = EnvelopeWriter(SIGNER)
    pieces = [writer.header] + [bytes(writer.update(DATA[i:i + 5]))
                                for i in range(0, len(DATA), 5)]
    assert b"".join(pieces) + writer.finish() == ENVELOPE


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3500), max_size=6))
def test_any_split_gives_the_data_and_a_verifying_signature(data, cuts):
    envelope = make_envelope(data, SIGNER)
    got, signature, digest = read(envelope, [c for c in cuts if c <= len(envelope)])
    assert got == data
    signature.verify(PUBLIC, digest)


def test_the_reader_never_hands_out_the_signature_bytes():
    reader = EnvelopeReader()
    released = b"".join(reader.update(ENVELOPE[i:i + 1]) for i in range(len(ENVELOPE)))
    assert released == DATA


@pytest.mark.parametrize("length", range(len(ENVELOPE)))
def test_truncation_at_every_length_is_refused(length):
    reader = EnvelopeReader()
    try:
        reader.update(ENVELOPE[:length])
        with pytest.raises((TruncatedMessage, CorruptMessage, UnsupportedMessage)):
            signature, digest = reader.finish()
            signature.verify(PUBLIC, digest)  # (a cut that still parses must not verify)
    except (CorruptMessage, UnsupportedMessage):
        pass


@pytest.mark.parametrize("where", range(len(ENVELOPE)))
def test_a_flipped_byte_anywhere_is_caught(where):
    altered = bytearray(ENVELOPE)
    altered[where] ^= 0x01
    with pytest.raises(SealError) as failed:
        data, signature, digest = read(bytes(altered))
        signature.verify(PUBLIC, digest)
    assert isinstance(failed.value, (BadMessageSignature, CorruptMessage, UnsupportedMessage))


@pytest.mark.parametrize("other", ["carol@example.com", "bob@example.com"])
def test_a_signature_of_another_address_than_the_header_is_corrupt(other):
    other = SigningKey(other, SIGNER.private_key)
    envelope = EnvelopeWriter(other).header + DATA + make_envelope(DATA, SIGNER)[
        -signature_size(len(ADDRESS)):]
    reader = EnvelopeReader()
    reader.update(envelope)
    with pytest.raises(CorruptMessage):
        reader.finish()


def test_other_magic_and_version_are_refused():
    with pytest.raises(UnsupportedMessage, match="not a signed envelope"):
        EnvelopeReader().update(b"KRSEAL\x01")
    with pytest.raises(UnsupportedMessage, match="version 2"):
        EnvelopeReader().update(ENVELOPE_MAGIC + b"\x02\x05")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_reader(blob):
    reader = EnvelopeReader()
    try:
        reader.update(ENVELOPE_MAGIC + blob)
        signature, digest = reader.finish()
        signature.verify(PUBLIC, digest)
    except SealError:
        pass
