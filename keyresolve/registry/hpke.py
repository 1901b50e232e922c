"""HPKE base mode (RFC 9180) for the registry: DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305, one message per context, empty AAD.

`seal` takes the ephemeral key from `random` so that the test vectors of
docs/protocol.md 8E can be made with fixed randomness; its output is what
``cryptography``'s ``hpke.Suite(KEM.X25519, KDF.HKDF_SHA256,
AEAD.CHACHA20_POLY1305).encrypt`` gives, and `open` reads both (tests check
each way against that library). Sans-IO: no randomness unless given.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..protocol.errors import FormError, NotAuth

#: RFC 9180 7.1-7.3: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305.
KEM_ID = 0x0020
KDF_ID = 0x0001
AEAD_ID = 0x0003
#: Bytes of the encapsulated key (the ephemeral X25519 public key), RFC 9180 7.1.
ENC_SIZE = 32
#: Bytes the AEAD adds (the Poly1305 tag, RFC 8439).
TAG_SIZE = 16
#: Smallest sealed message: the encapsulated key and the tag of an empty plaintext.
MIN_SEALED = ENC_SIZE + TAG_SIZE

_KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
_SUITE = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
_MODE_BASE = b"\x00"


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def _key_and_nonce(dh: bytes, enc: bytes, recipient: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 4.1 ExtractAndExpand, then 5.1 KeySchedule in mode_base."""
    eae_prk = _labeled_extract(_KEM_SUITE, b"", b"eae_prk", dh)
    shared = _labeled_expand(_KEM_SUITE, eae_prk, b"shared_secret", enc + recipient, 32)
    psk_id_hash = _labeled_extract(_SUITE, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(_SUITE, b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(_SUITE, shared, b"secret", b"")
    return (_labeled_expand(_SUITE, secret, b"key", context, 32),
            _labeled_expand(_SUITE, secret, b"base_nonce", context, 12))


def seal(recipient: bytes, info: bytes, plaintext: bytes,
         random: Callable[[int], bytes]) -> bytes:
    """``enc || ciphertext`` of `plaintext` to the raw X25519 public key
    `recipient`, under `info`; the ephemeral private key is ``random(32)``."""
    ephemeral = X25519PrivateKey.from_private_bytes(random(32))
    enc = ephemeral.public_key().public_bytes_raw()
    try:
        dh = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    except ValueError:
        raise FormError("not an X25519 public key") from None  # a low-order point
    key, nonce = _key_and_nonce(dh, enc, recipient, info)
    return enc + ChaCha20Poly1305(key).encrypt(nonce, plaintext, b"")


def open_sealed(private: X25519PrivateKey, info: bytes, sealed: bytes) -> bytes:
    """The plaintext `seal` sealed to `private`'s public key under `info`;
    NotAuth if it does not open (another key, another info, altered bytes)."""
    if len(sealed) < MIN_SEALED:
        raise FormError("sealed data shorter than its key and tag")
    enc = sealed[:ENC_SIZE]
    try:
        dh = private.exchange(X25519PublicKey.from_public_bytes(enc))
    except ValueError:
        raise NotAuth("sealed data does not open") from None
    recipient = private.public_key().public_bytes_raw()
    key, nonce = _key_and_nonce(dh, enc, recipient, info)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, sealed[ENC_SIZE:], b"")
    except InvalidTag:
        raise NotAuth("sealed data does not open") from None
