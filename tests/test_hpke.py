"""protocol.hpke: RFC 9180's own vector, and both ways against cryptography's HPKE."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.protocol import hpke
from keyresolve.protocol.errors import FormError, NotAuth

#: RFC 9180 A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base mode.
IKM_E = bytes.fromhex("909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b")
SK_E = bytes.fromhex("f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600")
PK_R = bytes.fromhex("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a")
SK_R = bytes.fromhex("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb")
INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")
PLAINTEXT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")


def test_hpke_matches_rfc_9180_a_2_1():
    """DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base mode,
    sequence number 0 (RFC 9180 A.2.1)."""
    assert hpke.derive_key_pair(IKM_E) == SK_E
    sealed = hpke.seal(PK_R, INFO, PLAINTEXT, hpke.derive_key_pair(IKM_E), aad=b"Count-0")
    assert sealed.hex() == (
        "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a"
        "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28")


def test_the_vector_opens_with_cryptographys_decryption():
    """The vector's sender with an empty aad (what `open_sealed` takes) opens
    with the vector's recipient key."""
    sealed = hpke.seal(PK_R, INFO, PLAINTEXT, SK_E)
    recipient = X25519PrivateKey.from_private_bytes(SK_R)
    assert hpke.open_sealed(recipient, INFO, sealed) == PLAINTEXT
    with pytest.raises(NotAuth):
        hpke.open_sealed(recipient, INFO + b"!", sealed)
    with pytest.raises(FormError):
        hpke.open_sealed(recipient, INFO, sealed[:hpke.MIN_SEALED - 1])


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=300), info=st.binary(max_size=40),
       ikm=st.binary(min_size=32, max_size=32))
def test_seal_and_cryptography_interoperate(plaintext: bytes, info: bytes, ikm: bytes):
    recipient = X25519PrivateKey.from_private_bytes(hpke.derive_key_pair(ikm[::-1]))
    sealed = hpke.seal(recipient.public_key().public_bytes_raw(), info, plaintext,
                       hpke.derive_key_pair(ikm))
    assert hpke.SUITE.decrypt(sealed, recipient, info=info) == plaintext
    theirs = hpke.SUITE.encrypt(plaintext, recipient.public_key(), info=info)
    assert hpke.open_sealed(recipient, info, theirs) == plaintext
