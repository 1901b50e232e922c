"""HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
ChaCha20-Poly1305, single-shot: the one owner of it (sans-IO).

`seal` takes its ephemeral private key from the caller, so that formats can
publish test vectors made with fixed randomness; ``cryptography``'s
``hpke.Suite.encrypt`` draws its own and cannot. `derive_key_pair` turns an
``ikm`` into that key as RFC 9180 7.1.3 does (its test vectors give ikmE).
`open_sealed` is ``cryptography``'s own decryption (`SUITE`): the two
interoperate both ways (tests/test_hpke.py, tests/test_registry_messages.py).

The hybrid suite MLKEM768-X25519 (`HYBRID_SUITE`: `seal_hybrid`,
`open_hybrid`, keys by `HybridPrivateKey`) is ``cryptography``'s own
throughout: its ML-KEM encapsulation draws its randomness from the operating
system, so what it seals is never reproducible (vectors of it are
decrypt-only). docs/seal-format.md and docs/protocol.md 8E.3 use both.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from .errors import FormError, NotAuth

#: RFC 9180 7.1-7.3: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305.
KEM_ID = 0x0020
KDF_ID = 0x0001
AEAD_ID = 0x0003
#: The same suite in ``cryptography``, which opens what `seal` seals.
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
#: Bytes of the encapsulated key (the ephemeral X25519 public key), RFC 9180 7.1.
ENC_SIZE = 32
#: Bytes of an X25519 private key, of the key and of the nonce of the AEAD
#: (RFC 9180 7.1 Nsk, 7.3 Nk and Nn).
PRIVATE_SIZE = 32
KEY_SIZE = 32
NONCE_SIZE = 12
#: Bytes the AEAD adds (the Poly1305 tag, RFC 8439).
TAG_SIZE = 16
#: Smallest sealed message: the encapsulated key and the tag of an empty plaintext.
MIN_SEALED = ENC_SIZE + TAG_SIZE

_KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
_SUITE = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
_MODE_BASE = b"\x00"


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """RFC 9180 4 LabeledExtract: HKDF-Extract, which is HMAC(salt, ikm) (RFC
    5869 2.2; ``cryptography`` has no extract-only API)."""
    return hmac.new(salt, b"HPKE-v1" + suite + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """RFC 9180 4 LabeledExpand: HKDF-Expand."""
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


_PSK_ID_HASH = _labeled_extract(_SUITE, b"", b"psk_id_hash", b"")


def derive_key_pair(ikm: bytes) -> bytes:
    """RFC 9180 7.1.3 DeriveKeyPair for X25519: the private key (raw, 32
    bytes) that `ikm` gives."""
    dkp_prk = _labeled_extract(_KEM_SUITE, b"", b"dkp_prk", ikm)
    return _labeled_expand(_KEM_SUITE, dkp_prk, b"sk", b"", PRIVATE_SIZE)


def _key_and_nonce(dh: bytes, enc: bytes, recipient: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 4.1 ExtractAndExpand, then 5.1 KeySchedule in mode_base."""
    eae_prk = _labeled_extract(_KEM_SUITE, b"", b"eae_prk", dh)
    shared = _labeled_expand(_KEM_SUITE, eae_prk, b"shared_secret", enc + recipient, 32)
    context = _MODE_BASE + _PSK_ID_HASH + _labeled_extract(_SUITE, b"", b"info_hash", info)
    secret = _labeled_extract(_SUITE, shared, b"secret", b"")
    return (_labeled_expand(_SUITE, secret, b"key", context, KEY_SIZE),
            _labeled_expand(_SUITE, secret, b"base_nonce", context, NONCE_SIZE))


def seal(recipient: bytes, info: bytes, plaintext: bytes, ephemeral: bytes,
         aad: bytes = b"") -> bytes:
    """RFC 9180 single-shot SealBase: ``enc || ciphertext`` of `plaintext`
    to the raw X25519 public key `recipient` under `info`, the ephemeral key
    being the raw private key `ephemeral` (32 random bytes, or
    `derive_key_pair` of an ikm). FormError if `recipient` is not a usable
    X25519 public key (a low-order point: an all-zero shared secret)."""
    private = X25519PrivateKey.from_private_bytes(ephemeral)
    enc = private.public_key().public_bytes_raw()
    try:
        dh = private.exchange(X25519PublicKey.from_public_bytes(recipient))
    except ValueError:
        raise FormError("not an X25519 public key") from None
    key, nonce = _key_and_nonce(dh, enc, recipient, info)
    return enc + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def open_sealed(private: X25519PrivateKey, info: bytes, sealed: bytes) -> bytes:
    """RFC 9180 single-shot OpenBase, empty aad (``cryptography``'s): the
    plaintext `seal` sealed to `private`'s public key under `info`. FormError
    if `sealed` is shorter than `MIN_SEALED`; NotAuth if it does not open
    (another key, another info, altered bytes, a low-order `enc`)."""
    if len(sealed) < MIN_SEALED:
        raise FormError("sealed data shorter than its key and tag")
    try:
        return SUITE.decrypt(sealed, private, info=info)
    except (InvalidTag, ValueError):
        raise NotAuth("sealed data does not open") from None


# -- the hybrid suite: MLKEM768-X25519, HKDF-SHA256, ChaCha20-Poly1305 -----------------
#: draft-ietf-hpke-pq: the MLKEM768-X25519 KEM (the X-Wing combiner).
HYBRID_KEM_ID = 0x647A
HYBRID_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256,
                          hpke.AEAD.CHACHA20_POLY1305)
#: Bytes of an ML-KEM-768 public key and ciphertext (FIPS 203 table 3).
MLKEM768_PUBLIC_SIZE = 1184
MLKEM768_CIPHERTEXT_SIZE = 1088
#: Bytes of a hybrid public key (ML-KEM-768 key || X25519 key) and of its
#: encapsulated key (ML-KEM-768 ciphertext || ephemeral X25519 key).
HYBRID_PUBLIC_SIZE = MLKEM768_PUBLIC_SIZE + 32
HYBRID_ENC_SIZE = MLKEM768_CIPHERTEXT_SIZE + 32
#: Smallest hybrid sealed message: the encapsulated key and the tag.
HYBRID_MIN_SEALED = HYBRID_ENC_SIZE + TAG_SIZE
#: Bytes of a hybrid private key: a seed, as X-Wing's
#: (draft-connolly-cfrg-xwing-kem 5.2).
HYBRID_SEED_SIZE = 32


class HybridPrivateKey:
    """An MLKEM768-X25519 private key made from its 32-byte `seed`:
    SHAKE256(seed) gives 96 bytes, the ML-KEM-768 seed d || z (64) then the
    X25519 private key (32), as X-Wing derives them. `public_key` is the raw
    public key (ML-KEM-768 || X25519, `HYBRID_PUBLIC_SIZE` bytes);
    `seed_bytes` the seed, for writing the key out (never in a repr).
    FormError for a seed of another size."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != HYBRID_SEED_SIZE:
            raise FormError(f"an mlkem768x25519 private key is {HYBRID_SEED_SIZE} bytes")
        expanded = hashlib.shake_256(seed).digest(96)
        ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
        x = X25519PrivateKey.from_private_bytes(expanded[64:])
        self._seed = bytes(seed)
        self.key = hpke.MLKEM768X25519PrivateKey(ml, x)
        self.public_key = ml.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()

    def seed_bytes(self) -> bytes:
        """The 32-byte seed the key is made from (its private key file's content)."""
        return self._seed

    def __repr__(self) -> str:
        return "HybridPrivateKey(...)"


def hybrid_public_key(public_key: bytes) -> hpke.MLKEM768X25519PublicKey:
    """The HPKE public key of raw ML-KEM-768 || X25519 bytes; FormError if
    they are not one."""
    if len(public_key) != HYBRID_PUBLIC_SIZE:
        raise FormError(f"an mlkem768x25519 public key is {HYBRID_PUBLIC_SIZE} bytes")
    try:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(public_key[:MLKEM768_PUBLIC_SIZE]),
            X25519PublicKey.from_public_bytes(public_key[MLKEM768_PUBLIC_SIZE:]))
    except ValueError:
        raise FormError("not an ML-KEM-768 + X25519 public key") from None


def seal_hybrid(recipient: bytes, info: bytes, plaintext: bytes) -> bytes:
    """Single-shot SealBase with `HYBRID_SUITE`, empty aad: ``enc ||
    ciphertext`` of `plaintext` to the raw hybrid public key `recipient`
    under `info`. The randomness is the operating system's. FormError if
    `recipient` is not a hybrid public key."""
    return HYBRID_SUITE.encrypt(plaintext, hybrid_public_key(recipient), info=info)


def open_hybrid(private: HybridPrivateKey, info: bytes, sealed: bytes) -> bytes:
    """Single-shot OpenBase with `HYBRID_SUITE`: the plaintext `seal_hybrid`
    sealed to `private`'s public key under `info`. FormError if `sealed` is
    shorter than `HYBRID_MIN_SEALED`; NotAuth if it does not open."""
    if len(sealed) < HYBRID_MIN_SEALED:
        raise FormError("sealed data shorter than its key and tag")
    try:
        return HYBRID_SUITE.decrypt(sealed, private.key, info=info)
    except (InvalidTag, ValueError):
        raise NotAuth("sealed data does not open") from None


__all__ = ["AEAD_ID", "ENC_SIZE", "HYBRID_ENC_SIZE", "HYBRID_KEM_ID", "HYBRID_MIN_SEALED",
           "HYBRID_PUBLIC_SIZE", "HYBRID_SEED_SIZE", "HYBRID_SUITE", "HybridPrivateKey", "KDF_ID",
           "KEM_ID", "KEY_SIZE", "MIN_SEALED", "MLKEM768_CIPHERTEXT_SIZE", "MLKEM768_PUBLIC_SIZE",
           "NONCE_SIZE", "PRIVATE_SIZE", "SUITE", "TAG_SIZE", "derive_key_pair", "open_hybrid",
           "open_sealed", "seal", "seal_hybrid"]
