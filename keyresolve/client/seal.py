"""Sealed messages and detached signatures: docs/seal-format.md, sans-IO.

A sealed message is a header (magic, version, flags, payload nonce, one
stanza per recipient wrapping the file key with HPKE, an HMAC) and a payload
of 64 KiB chunks under ChaCha20-Poly1305 in the STREAM construction, as age.
The last bytes of the payload's plaintext are a fixed-size trailer holding the
sender's address and Ed25519 signature (or zeros), so who signed is not in
clear and a recipient learns it only after the whole stream authenticated.

`Sealer` and `Opener` are fed bytes and return bytes; memory stays at a few
chunks whatever the message size. `Opener` returns only plaintext from
chunks that authenticated, holds back the last chunk it decrypted (it may hold
the trailer), and only `Opener.finish` says the message is complete.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hpke as lib_hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..protocol import hpke
from ..protocol.errors import BadMessageSignature, CorruptMessage, FormError, KeyFileError, NotARecipient, NotAuth, SealError, TruncatedMessage, UnsupportedMessage
from ..protocol.names import MAX_NAME
from ..protocol.records import KEY, KEY_ID_SIZE, KeyAlgorithm, KeyUsage, make_key_id
from ..protocol.signatures import SIGNATURE_SIZE, ed25519_verifies

#: First bytes of a sealed message, then the version byte.
MAGIC = b"KRSEAL"
#: The format version this module writes and reads.
VERSION = 1
#: First bytes of a detached signature, then the version byte.
SIGNATURE_MAGIC = b"KRSIG"
#: Prefix of every HKDF info, HPKE info and signed-message context: binds
#: each derived key and signature to this format and version.
LABEL = b"keyresolve-seal/v1"

#: Plaintext bytes per payload chunk: age's 64 KiB (age spec, "Payload"),
#: large enough that the per-chunk cost vanishes, small enough that memory is flat.
CHUNK_SIZE = 64 * 1024
#: Poly1305 tag bytes per chunk (RFC 8439).
TAG_SIZE = 16
#: Ciphertext bytes of a full chunk.
CHUNK_CT = CHUNK_SIZE + TAG_SIZE
#: File key bytes: 256 bits, so the symmetric part keeps 128-bit strength
#: against a quantum search (Grover), as the hybrid KEM intends.
FILE_KEY_SIZE = 32
#: Payload nonce bytes (age: 16), the HKDF salt of the payload and header keys.
NONCE_SIZE = 16
#: HMAC-SHA-256 output bytes of the header MAC.
MAC_SIZE = 32
#: Most stanzas a header may hold: the opener buffers the whole header, and
#: 1,024 hybrid stanzas are ~1.2 MB. A mailing list seals per member group;
#: GnuPG and age set no limit, so this is ours (above the 1,000 the
#: performance target of issue #21 uses).
MAX_RECIPIENTS = 1024
#: Most header bytes a reader buffers: 1,024 stanzas of up to 4 KiB (a hybrid
#: stanza is 1,179 bytes; room for a larger KEM of a later version).
MAX_HEADER_SIZE = MAX_RECIPIENTS * 4096
#: Longest sender address, in UTF-8 bytes: a name's maximum (RFC 1035 2.3.4).
MAX_SENDER = MAX_NAME
#: The payload trailer: kind, address length, address padded to MAX_SENDER,
#: key id, signature. Fixed, so its size says nothing about the sender.
TRAILER_SIZE = 1 + 1 + MAX_SENDER + KEY_ID_SIZE + SIGNATURE_SIZE

#: Header flag: stanzas carry no key ids (recipients trial-decrypt).
FLAG_HIDDEN = 0x01
#: Header flag: the trailer holds a signature (so openers hash the payload).
FLAG_SIGNED = 0x02
_KNOWN_FLAGS = FLAG_HIDDEN | FLAG_SIGNED
#: Trailer kinds.
TRAILER_UNSIGNED = 0
TRAILER_ED25519 = 1

#: Header bytes before the stanzas: magic, version, flags, nonce, count.
_FIXED = len(MAGIC) + 1 + 1 + NONCE_SIZE + 2

# -- HPKE (RFC 9180), base mode: X25519 stanzas by `protocol.hpke`, hybrid by cryptography ---
#: HPKE `enc` bytes by stanza kind (RFC 9180 7.1; draft-ietf-hpke-pq: 1,088 + 32).
_ENC_SIZE = {KeyAlgorithm.X25519: hpke.ENC_SIZE,
             KeyAlgorithm.MLKEM768X25519: hpke.HYBRID_ENC_SIZE}
#: Stanza body bytes by kind: `enc`, then the file key sealed (key + tag).
STANZA_BODY_SIZE: dict[int, int] = {kind: enc + FILE_KEY_SIZE + TAG_SIZE
                                    for kind, enc in _ENC_SIZE.items()}


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA-256 (RFC 5869)."""
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def stanza_info(kind: int) -> bytes:
    """The HPKE info of a stanza of `kind`: binds it to the format version and kind."""
    return LABEL + b" stanza" + bytes([kind])


# -- recipients and identities ---------------------------------------------------------
class Recipient(Protocol):
    """Someone a message is sealed to: a public key of a kind stanzas know."""

    kind: int
    key_id: bytes

    def wrap(self, file_key: bytes, random: Callable[[int], bytes]) -> bytes:
        """The stanza body: HPKE ``enc || sealed file key``."""


class Identity(Protocol):
    """A private key that may open stanzas of one kind."""

    kind: int
    key_id: bytes

    def unwrap(self, body: bytes) -> bytes | None:
        """The file key if the stanza body opens with this key, else None."""


@dataclass(frozen=True)
class X25519Recipient:
    """A recipient with an X25519 KEY (32 bytes)."""

    public_key: bytes
    kind: ClassVar[int] = KeyAlgorithm.X25519

    @property
    def key_id(self) -> bytes:
        """The binary key id of `public_key` (docs/protocol.md 6.4)."""
        return make_key_id(self.kind, self.public_key)

    def wrap(self, file_key: bytes, random: Callable[[int], bytes]) -> bytes:
        """Draws 32 bytes from `random` as HPKE's ikmE (RFC 9180 7.1.3)."""
        ephemeral = hpke.derive_key_pair(random(32))
        try:
            return hpke.seal(self.public_key, stanza_info(self.kind), file_key, ephemeral)
        except FormError:
            raise SealError(f"key {self.key_id.hex()} is not a usable X25519 key") from None


def hybrid_public_key(public_key: bytes) -> lib_hpke.MLKEM768X25519PublicKey:
    """The HPKE public key of an mlkem768x25519 KEY (ML-KEM-768 key || X25519 key)."""
    try:
        return hpke.hybrid_public_key(public_key)
    except FormError:
        raise SealError(f"key {make_key_id(KeyAlgorithm.MLKEM768X25519, public_key).hex()} "
                        "is not a usable ML-KEM-768 + X25519 key") from None


@dataclass(frozen=True)
class HybridRecipient:
    """A recipient with an mlkem768x25519 KEY (1,216 bytes). Encapsulation
    takes its randomness from the operating system (cryptography's HPKE
    takes none), so these stanzas are not reproducible from `random`."""

    public_key: bytes
    kind: ClassVar[int] = KeyAlgorithm.MLKEM768X25519

    @property
    def key_id(self) -> bytes:
        """The binary key id of `public_key` (docs/protocol.md 6.4)."""
        return make_key_id(self.kind, self.public_key)

    def wrap(self, file_key: bytes, random: Callable[[int], bytes]) -> bytes:
        hybrid_public_key(self.public_key)  # SealError naming the key if unusable
        return hpke.seal_hybrid(self.public_key, stanza_info(self.kind), file_key)


def make_recipient(key: KEY) -> X25519Recipient | HybridRecipient:
    """The recipient for an encryption KEY; SealError for a kind stanzas do not know."""
    if key.algorithm == KeyAlgorithm.X25519:
        return X25519Recipient(key.key)
    if key.algorithm == KeyAlgorithm.MLKEM768X25519:
        return HybridRecipient(key.key)
    raise SealError(f"cannot seal to a {key.algorithm.name.lower()} key "
                    f"({key.key_id}): use x25519 or mlkem768x25519")


class X25519Identity:
    """An X25519 private key (`private_key`, as `HybridIdentity` has one)."""

    kind: ClassVar[int] = KeyAlgorithm.X25519

    def __init__(self, private_key: x25519.X25519PrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key().public_bytes_raw()
        self.key_id = make_key_id(self.kind, self.public_key)

    def unwrap(self, body: bytes) -> bytes | None:
        try:
            return hpke.open_sealed(self.private_key, stanza_info(self.kind), body)
        except (FormError, NotAuth):
            return None

    def __repr__(self) -> str:
        return f"X25519Identity({self.key_id.hex()})"


#: Bytes of an mlkem768x25519 private key: a seed, as X-Wing's.
HYBRID_SEED_SIZE = hpke.HYBRID_SEED_SIZE


class HybridIdentity:
    """An mlkem768x25519 private key, kept as its 32-byte seed: SHAKE256(seed)
    gives 96 bytes, the ML-KEM-768 seed d || z (64) then the X25519 private
    key (32), as X-Wing (draft-connolly-cfrg-xwing-kem 5.2) derives them."""

    kind: ClassVar[int] = KeyAlgorithm.MLKEM768X25519

    def __init__(self, seed: bytes) -> None:
        if len(seed) != HYBRID_SEED_SIZE:
            raise KeyFileError(f"an mlkem768x25519 private key is {HYBRID_SEED_SIZE} bytes")
        self.private_key = hpke.HybridPrivateKey(seed)
        self.public_key = self.private_key.public_key
        self.key_id = make_key_id(self.kind, self.public_key)

    def unwrap(self, body: bytes) -> bytes | None:
        try:
            return hpke.open_hybrid(self.private_key, stanza_info(self.kind), body)
        except (FormError, NotAuth):
            return None

    def __repr__(self) -> str:
        return f"HybridIdentity({self.key_id.hex()})"


#: PEM label of an mlkem768x25519 private key file (its 32-byte seed).
HYBRID_PEM_LABEL = "MLKEM768X25519 PRIVATE KEY"


def hybrid_seed_to_pem(seed: bytes) -> bytes:
    """The private key file of an mlkem768x25519 key."""
    body = base64.b64encode(seed).decode()
    return f"-----BEGIN {HYBRID_PEM_LABEL}-----\n{body}\n-----END {HYBRID_PEM_LABEL}-----\n".encode()


def _load_private_pem(pem: bytes) -> object:
    """The private key of an unencrypted PEM file (PKCS#8, as keygen writes);
    KeyFileError otherwise."""
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise KeyFileError("not an unencrypted private key file") from None


def identity_from_pem(pem: bytes) -> X25519Identity | HybridIdentity:
    """The identity of an unencrypted private key file keygen writes
    (PKCS#8 X25519, or the mlkem768x25519 seed); KeyFileError otherwise."""
    begin = f"-----BEGIN {HYBRID_PEM_LABEL}-----".encode()
    end = f"-----END {HYBRID_PEM_LABEL}-----".encode()
    text = pem.strip()
    if text.startswith(begin):
        if not text.endswith(end):
            raise KeyFileError("mlkem768x25519 private key file is malformed")
        try:
            seed = base64.b64decode(b"".join(text[len(begin):-len(end)].split()), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError("mlkem768x25519 private key file is malformed") from None
        return HybridIdentity(seed)
    private = _load_private_pem(pem)
    if not isinstance(private, x25519.X25519PrivateKey):
        raise KeyFileError("not an x25519 or mlkem768x25519 private key")
    return X25519Identity(private)


@dataclass(frozen=True)
class SigningKey:
    """A sender: the address messages are signed as, and its Ed25519 key."""

    address: str
    private_key: ed25519.Ed25519PrivateKey

    def __post_init__(self) -> None:
        _encode_address(self.address)

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 public key (what the sender's KEY record holds)."""
        return self.private_key.public_key().public_bytes_raw()

    @property
    def key_id(self) -> bytes:
        """The binary key id of `public_key`."""
        return make_key_id(KeyAlgorithm.ED25519, self.public_key)

    @classmethod
    def from_pem(cls, address: str, pem: bytes) -> SigningKey:
        """The signing key of `address` from an unencrypted PKCS#8 Ed25519 key
        file (as keygen writes it); KeyFileError otherwise."""
        private = _load_private_pem(pem)
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise KeyFileError("not an ed25519 private key")
        return cls(address, private)

    def __repr__(self) -> str:
        return f"SigningKey({self.address!r}, {self.key_id.hex()})"


def _encode_address(address: str) -> bytes:
    try:
        raw = address.encode("utf-8")
    except UnicodeEncodeError:
        raise SealError("a signer address must be valid Unicode") from None
    if not 1 <= len(raw) <= MAX_SENDER or b"\x00" in raw:
        raise SealError(f"a signer address is 1..{MAX_SENDER} bytes without NUL")
    return raw


def _verify_ed25519(public_key: bytes, signature: bytes, message: bytes, what: str) -> None:
    if not ed25519_verifies(public_key, signature, message):
        raise BadMessageSignature(f"{what} does not verify with key "
                                  f"{make_key_id(KeyAlgorithm.ED25519, public_key).hex()}")


# -- header ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Stanza:
    """One recipient's wrapped file key; `key_id` is None in hidden headers."""

    kind: int
    key_id: bytes | None
    body: bytes

    def to_wire(self) -> bytes:
        """kind || [key id] || u16 length || body."""
        kid = b"" if self.key_id is None else self.key_id
        return bytes([self.kind]) + kid + struct.pack(">H", len(self.body)) + self.body


@dataclass(frozen=True)
class Header:
    """A parsed header; `raw` is every header byte, MAC included."""

    flags: int
    nonce: bytes
    stanzas: tuple[Stanza, ...]
    mac: bytes
    raw: bytes

    @property
    def hidden(self) -> bool:
        """Stanzas carry no key ids."""
        return bool(self.flags & FLAG_HIDDEN)

    @property
    def signed(self) -> bool:
        """The trailer holds a signature."""
        return bool(self.flags & FLAG_SIGNED)


def header_key(file_key: bytes, nonce: bytes) -> bytes:
    """The header's HMAC key."""
    return hkdf(file_key, nonce, LABEL + b" header")


def payload_key(file_key: bytes, nonce: bytes) -> bytes:
    """The payload's ChaCha20-Poly1305 key."""
    return hkdf(file_key, nonce, LABEL + b" payload")


def chunk_nonce(counter: int, last: bool) -> bytes:
    """STREAM nonce: the chunk counter as 11 big-endian bytes, then 1 if last else 0."""
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def parse_header(data: bytes | bytearray | memoryview) -> Header | None:
    """The header at the start of `data`, or None if `data` ends inside it.
    Raises UnsupportedMessage (not this format) or CorruptMessage."""
    prefix = bytes(data[:len(MAGIC) + 1])
    if not (MAGIC + bytes([VERSION])).startswith(prefix):
        if not MAGIC.startswith(prefix[:len(MAGIC)]):
            raise UnsupportedMessage("not a sealed message (no KRSEAL magic)")
        raise UnsupportedMessage(f"sealed message version {prefix[-1]} is not supported "
                                 f"(this reads version {VERSION})")
    if len(data) < _FIXED:
        return None
    flags = data[len(MAGIC) + 1]
    if flags & ~_KNOWN_FLAGS:
        raise CorruptMessage(f"header has unknown flags 0x{flags:02x}")
    nonce = bytes(data[len(MAGIC) + 2:len(MAGIC) + 2 + NONCE_SIZE])
    count = data[_FIXED - 2] << 8 | data[_FIXED - 1]
    if not 1 <= count <= MAX_RECIPIENTS:
        raise CorruptMessage(f"header has {count} stanzas (1..{MAX_RECIPIENTS})")
    kid_size = 0 if flags & FLAG_HIDDEN else KEY_ID_SIZE
    pos, stanzas = _FIXED, []
    for _ in range(count):
        if len(data) < pos + 1 + kid_size + 2:
            return None
        kind = data[pos]
        kid = None if flags & FLAG_HIDDEN else bytes(data[pos + 1:pos + 1 + KEY_ID_SIZE])
        pos += 1 + kid_size
        length = data[pos] << 8 | data[pos + 1]
        pos += 2
        if pos + length + MAC_SIZE > MAX_HEADER_SIZE:
            raise CorruptMessage(f"the header is longer than {MAX_HEADER_SIZE} bytes")
        expected = STANZA_BODY_SIZE.get(kind)
        if expected is not None and length != expected:
            raise CorruptMessage(f"stanza of kind {kind} is {length} bytes, not {expected}")
        if len(data) < pos + length:
            return None
        stanzas.append(Stanza(kind, kid, bytes(data[pos:pos + length])))
        pos += length
    if len(data) < pos + MAC_SIZE:
        return None
    return Header(flags, nonce, tuple(stanzas), bytes(data[pos:pos + MAC_SIZE]),
                  bytes(data[:pos + MAC_SIZE]))


def _signed_message(context: bytes, address: bytes, key_id: bytes, *digests: bytes) -> bytes:
    return context + bytes([len(address)]) + address + key_id + b"".join(digests)


#: What a seal signature signs starts with this (then address, key id, digests).
SEAL_SIGNATURE_CONTEXT = LABEL + b" signature\x00"


# -- sealing ---------------------------------------------------------------------------
class Sealer:
    """Seal one message: write `header`, then what each `update` returns,
    then what `finish` returns.

    `random(n)` gives n random bytes (drawn in the order of docs/seal-format.md:
    file key, nonce, then each X25519 stanza's ikmE, in the recipients'
    order). `signer` signs the header and the whole plaintext. With
    `hide_recipients` stanzas carry no key ids and are sorted by their bytes.
    """

    def __init__(self, recipients: Sequence[Recipient], *, signer: SigningKey | None = None,
                 hide_recipients: bool = False,
                 random: Callable[[int], bytes] = secrets.token_bytes) -> None:
        if not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise SealError(f"a message has 1..{MAX_RECIPIENTS} recipients, not {len(recipients)}")
        file_key = random(FILE_KEY_SIZE)
        nonce = random(NONCE_SIZE)
        flags = (FLAG_HIDDEN if hide_recipients else 0) | (FLAG_SIGNED if signer else 0)
        stanzas = [Stanza(r.kind, None if hide_recipients else r.key_id,
                          r.wrap(file_key, random)).to_wire() for r in recipients]
        if hide_recipients:  # an order that says nothing about the recipients'
            stanzas.sort()
        head = b"".join([MAGIC, bytes([VERSION, flags]), nonce,
                         struct.pack(">H", len(recipients)), *stanzas])
        self.header = head + hmac.new(header_key(file_key, nonce), head, hashlib.sha256).digest()
        self._aead = ChaCha20Poly1305(payload_key(file_key, nonce))
        self._signer = signer
        self._digest = hashlib.sha256() if signer else None
        self._counter = 0
        self._buf = bytearray()
        self._finished = False

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> bytes:
        nonce = chunk_nonce(self._counter, last)
        self._counter += 1
        return self._aead.encrypt(nonce, plaintext, None)

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """The ciphertext of every chunk `data` completes (maybe none)."""
        if self._finished:
            raise SealError("the message is already finished")
        if self._digest is not None:
            self._digest.update(data)
        out = []
        view = memoryview(data)
        buf = self._buf
        if buf:
            take = CHUNK_SIZE - len(buf)
            buf += view[:take]
            view = view[take:]
            if len(buf) < CHUNK_SIZE:
                return b""
            out.append(self._seal(buf, False))
            buf.clear()
        # Every full chunk is sealed as not last: the trailer always follows.
        full = len(view) - len(view) % CHUNK_SIZE
        for start in range(0, full, CHUNK_SIZE):
            out.append(self._seal(view[start:start + CHUNK_SIZE], False))
        buf += view[full:]
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> bytes:
        """The last chunk(s), holding the rest of the data and the trailer."""
        if self._finished:
            raise SealError("the message is already finished")
        self._finished = True
        rest = bytes(self._buf) + self._trailer()
        self._buf = bytearray()
        if len(rest) > CHUNK_SIZE:
            return self._seal(rest[:CHUNK_SIZE], False) + self._seal(rest[CHUNK_SIZE:], True)
        return self._seal(rest, True)

    def _trailer(self) -> bytes:
        if self._signer is None:
            return bytes(TRAILER_SIZE)
        assert self._digest is not None
        address = _encode_address(self._signer.address)
        key_id = self._signer.key_id
        message = _signed_message(SEAL_SIGNATURE_CONTEXT, address, key_id,
                                  hashlib.sha256(self.header).digest(), self._digest.digest())
        return (bytes([TRAILER_ED25519, len(address)]) + address.ljust(MAX_SENDER, b"\x00")
                + key_id + self._signer.private_key.sign(message))


def seal(data: bytes, recipients: Sequence[Recipient], *, signer: SigningKey | None = None,
         hide_recipients: bool = False,
         random: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """A whole sealed message of `data` (for small messages; `Sealer` streams)."""
    sealer = Sealer(recipients, signer=signer, hide_recipients=hide_recipients, random=random)
    return sealer.header + sealer.update(data) + sealer.finish()


# -- opening ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SealSignature:
    """The sender's signature found in a message's trailer: who claims to
    have signed, with which key. `verify` checks it against that key."""

    address: str
    key_id: bytes
    signature: bytes
    message: bytes

    def verify(self, public_key: bytes) -> None:
        """Check against the signer's Ed25519 public key (resolved by the caller
        by `address`); BadMessageSignature if it does not verify or the key's id
        is not `key_id`."""
        if make_key_id(KeyAlgorithm.ED25519, public_key) != self.key_id:
            raise BadMessageSignature(
                f"message is signed by key {self.key_id.hex()}, not "
                f"{make_key_id(KeyAlgorithm.ED25519, public_key).hex()} of {self.address}")
        _verify_ed25519(public_key, self.signature, self.message, "the message signature")


class Opener:
    """Open one message: feed its bytes to `update`, which returns plaintext
    from authenticated chunks only, then call `finish`, which returns the
    rest and is the only proof that the message is complete and authentic.

    Any failure raises a SealError and the opener stays failed. A caller writing
    the plaintext somewhere must not treat it as final before `finish` returned.
    """

    def __init__(self, identities: Iterable[Identity]) -> None:
        self._identities = list(identities)
        self._buf = bytearray()
        self.header: Header | None = None
        #: The identity whose stanza opened the message.
        self.identity: Identity | None = None
        #: The signature, once `finish` returned (None: unsigned).
        self.signature: SealSignature | None = None
        #: True once `finish` returned: the message was complete and authentic.
        self.complete = False
        self._aead: ChaCha20Poly1305 | None = None
        self._counter = 0
        self._held: bytes | None = None  # the last chunk decrypted: may hold the trailer
        self._digest: hashlib._Hash | None = None
        self._failed: SealError | None = None

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Authenticated plaintext that `data` released (maybe none)."""
        self._check_usable()
        try:
            return self._update(data)
        except SealError as exc:
            self._failed = exc
            raise

    def finish(self) -> bytes:
        """The rest of the plaintext; raises TruncatedMessage, CorruptMessage..."""
        self._check_usable()
        try:
            return self._finish()
        except SealError as exc:
            self._failed = exc
            raise

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise type(self._failed)(f"{self._failed} (the opener already failed)")
        if self.complete:
            raise SealError("the message is already finished")

    def _update(self, data: bytes | bytearray | memoryview) -> bytes:
        view = memoryview(data)
        if self._aead is None:
            before = len(self._buf)  # header bytes fed earlier
            if before:
                self._buf += view
            header = parse_header(self._buf if before else view)
            if header is None:
                if not before:
                    self._buf += view
                return b""
            self._start(header)
            view = view[len(header.raw) - before:]
            self._buf = bytearray()
        out: list[bytes] = []
        buf = self._buf
        if buf:
            take = CHUNK_CT - len(buf)
            buf += view[:take]
            view = view[take:]
            if len(buf) < CHUNK_CT or not self._open_full(buf, len(view) > 0, out):
                return b"".join(out)  # (nothing, or a chunk that may be the last)
            buf.clear()
        count = len(view) // CHUNK_CT
        for i in range(count):
            more = (i + 1) * CHUNK_CT < len(view)
            chunk = view[i * CHUNK_CT:(i + 1) * CHUNK_CT]
            if not self._open_full(chunk, more, out):
                buf += chunk  # a full chunk that may be the last: finish decides
        buf += view[count * CHUNK_CT:]
        return out[0] if len(out) == 1 else b"".join(out)

    def _open_full(self, chunk: bytearray | memoryview, more: bool, out: list[bytes]) -> bool:
        """Decrypt a full-size chunk as not last; False (kept for `finish`) if
        it does not authenticate so and may be the last chunk."""
        assert self._aead is not None
        try:
            plaintext = self._aead.decrypt(chunk_nonce(self._counter, False), chunk, None)
        except InvalidTag:
            if more:
                raise CorruptMessage(f"payload chunk {self._counter} does not authenticate") \
                    from None
            return False
        self._counter += 1
        if self._held is not None:  # a full chunk follows it: no trailer byte in it
            self._release(self._held, out)
        self._held = plaintext
        return True

    def _release(self, plaintext: bytes, out: list[bytes]) -> None:
        if self._digest is not None:
            self._digest.update(plaintext)
        out.append(plaintext)

    def _start(self, header: Header) -> None:
        file_key = self._file_key(header)
        self.header = header
        self._aead = ChaCha20Poly1305(payload_key(file_key, header.nonce))
        if header.signed:
            self._digest = hashlib.sha256()

    def _file_key(self, header: Header) -> bytes:
        head, mac = header.raw[:-MAC_SIZE], header.mac
        for stanza in header.stanzas:
            for identity in self._identities:
                if identity.kind != stanza.kind:
                    continue
                if stanza.key_id is not None and stanza.key_id != identity.key_id:
                    continue
                file_key = identity.unwrap(stanza.body)
                if file_key is None:
                    if stanza.key_id is not None:
                        raise CorruptMessage(
                            f"the stanza for key {identity.key_id.hex()} does not decrypt")
                    continue  # hidden: not ours
                expected = hmac.new(header_key(file_key, header.nonce), head,
                                    hashlib.sha256).digest()
                if len(file_key) != FILE_KEY_SIZE or not hmac.compare_digest(expected, mac):
                    raise CorruptMessage("the header does not authenticate")
                self.identity = identity
                return file_key
        raise NotARecipient("none of the given keys is a recipient of this message"
                            + ("" if header.hidden else " (key ids: "
                               + ", ".join(s.key_id.hex() for s in header.stanzas[:5]
                                           if s.key_id is not None)
                               + (", ..." if len(header.stanzas) > 5 else "") + ")"))

    def _finish(self) -> bytes:
        if self._aead is None:
            if parse_header(self._buf) is None:  # (raises on a bad prefix)
                raise TruncatedMessage("the message ends inside its header")
        assert self._aead is not None  # update started the payload at a whole header
        buf = bytes(self._buf)
        self._buf = bytearray()
        if len(buf) <= TAG_SIZE:  # (a chunk that authenticated as not last came before)
            raise TruncatedMessage("the message ends before its last chunk")
        try:
            last = self._aead.decrypt(chunk_nonce(self._counter, True), buf, None)
        except InvalidTag:
            raise CorruptMessage(f"the last payload chunk ({self._counter}) does not "
                                 "authenticate") from None
        tail = (self._held or b"") + last
        if len(tail) < TRAILER_SIZE:
            raise CorruptMessage("the payload is shorter than its trailer")
        data, trailer = tail[:-TRAILER_SIZE], tail[-TRAILER_SIZE:]
        if self._digest is not None:
            self._digest.update(data)
        self.signature = self._read_trailer(trailer)
        self.complete = True
        return data

    def _read_trailer(self, trailer: bytes) -> SealSignature | None:
        assert self.header is not None
        kind = trailer[0]
        if kind == TRAILER_UNSIGNED and not self.header.signed:
            if trailer != bytes(TRAILER_SIZE):
                raise CorruptMessage("the unsigned trailer is not all zeros")
            return None
        if kind != TRAILER_ED25519 or not self.header.signed:
            raise CorruptMessage(f"trailer kind {kind} does not match the header")
        length = trailer[1]
        raw = trailer[2:2 + MAX_SENDER]
        if not 1 <= length or raw[length:] != bytes(MAX_SENDER - length):
            raise CorruptMessage("the trailer's sender address is malformed")
        try:
            address = raw[:length].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptMessage("the trailer's sender address is not UTF-8") from None
        key_id = trailer[2 + MAX_SENDER:2 + MAX_SENDER + KEY_ID_SIZE]
        signature = trailer[2 + MAX_SENDER + KEY_ID_SIZE:]
        assert self._digest is not None
        message = _signed_message(SEAL_SIGNATURE_CONTEXT, raw[:length], key_id,
                                  hashlib.sha256(self.header.raw).digest(),
                                  self._digest.digest())
        return SealSignature(address, key_id, signature, message)


@dataclass(frozen=True)
class Opened:
    """A whole opened message."""

    plaintext: bytes
    signature: SealSignature | None
    identity: Identity


def open_message(data: bytes, identities: Iterable[Identity]) -> Opened:
    """Open a whole sealed message (small messages; `Opener` streams)."""
    opener = Opener(identities)
    plaintext = opener.update(data) + opener.finish()
    assert opener.identity is not None
    return Opened(plaintext, opener.signature, opener.identity)


# -- detached signatures ---------------------------------------------------------------
#: What a detached signature signs starts with this (then address, key id, digest).
DETACHED_CONTEXT = b"keyresolve-sig/v1\x00"
#: Hash of the data a detached signature covers.
data_digest = hashlib.sha256


@dataclass(frozen=True)
class DetachedSignature:
    """A detached signature: signer address, key id and Ed25519 signature
    over SHA-256 of the data (docs/seal-format.md, "Detached signatures")."""

    address: str
    key_id: bytes
    signature: bytes

    def to_wire(self) -> bytes:
        """The signature file's bytes (docs/seal-format.md 7)."""
        address = _encode_address(self.address)
        return (SIGNATURE_MAGIC + bytes([VERSION, len(address)]) + address + self.key_id
                + self.signature)

    @classmethod
    def from_wire(cls, data: bytes) -> DetachedSignature:
        """Parse; UnsupportedMessage or CorruptMessage on anything else."""
        head = len(SIGNATURE_MAGIC)
        if not data.startswith(SIGNATURE_MAGIC):
            raise UnsupportedMessage("not a detached signature (no KRSIG magic)")
        if len(data) < head + 2:
            raise CorruptMessage("the signature is truncated")
        if data[head] != VERSION:
            raise UnsupportedMessage(f"signature version {data[head]} is not supported "
                                     f"(this reads version {VERSION})")
        length = data[head + 1]
        if len(data) != head + 2 + length + KEY_ID_SIZE + SIGNATURE_SIZE or length == 0:
            raise CorruptMessage("the signature has the wrong length")
        raw = data[head + 2:head + 2 + length]
        try:
            address = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptMessage("the signer address is not UTF-8") from None
        if b"\x00" in raw:
            raise CorruptMessage("the signer address holds a NUL")
        rest = data[head + 2 + length:]
        return cls(address, rest[:KEY_ID_SIZE], rest[KEY_ID_SIZE:])

    def verify(self, public_key: bytes, digest: bytes) -> None:
        """Check against the signer's Ed25519 key and the data's SHA-256
        `digest`; BadMessageSignature otherwise."""
        if make_key_id(KeyAlgorithm.ED25519, public_key) != self.key_id:
            raise BadMessageSignature(
                f"signed by key {self.key_id.hex()}, not "
                f"{make_key_id(KeyAlgorithm.ED25519, public_key).hex()} of {self.address}")
        message = _signed_message(DETACHED_CONTEXT, _encode_address(self.address), self.key_id,
                                  digest)
        _verify_ed25519(public_key, self.signature, message, "the signature")


def sign_detached(signer: SigningKey, digest: bytes) -> DetachedSignature:
    """Sign data whose SHA-256 is `digest` (`data_digest` hashes it in pieces)."""
    address = _encode_address(signer.address)
    message = _signed_message(DETACHED_CONTEXT, address, signer.key_id, digest)
    return DetachedSignature(signer.address, signer.key_id, signer.private_key.sign(message))


def signing_key_for(key: KEY) -> bytes:
    """The raw Ed25519 public key of a signing KEY; SealError for another kind."""
    if key.algorithm != KeyAlgorithm.ED25519 or key.usage != KeyUsage.SIGN:
        raise SealError(f"signatures are checked with ed25519 keys, not "
                        f"{key.algorithm.name.lower()} ({key.key_id})")
    return key.key


__all__ = ["CHUNK_SIZE", "DetachedSignature", "FILE_KEY_SIZE", "Header", "HybridIdentity",
           "HybridRecipient", "Identity", "MAGIC", "MAX_RECIPIENTS", "MAX_SENDER", "Opened",
           "Opener", "Recipient", "SealSignature", "Sealer", "SigningKey", "Stanza",
           "TRAILER_SIZE", "VERSION", "X25519Identity", "X25519Recipient", "data_digest",
           "hkdf", "hybrid_seed_to_pem", "identity_from_pem", "make_recipient",
           "open_message", "parse_header", "seal", "sign_detached", "signing_key_for"]
