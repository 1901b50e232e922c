"""Private key files under a passphrase: docs/key-files.md, sans-IO.

An encrypted key file is PEM armour around a binary body: a header naming
the KDF (Argon2id, RFC 9106) and its parameters, a salt, then the key file's
plaintext (the PEM keygen writes unencrypted) sealed with ChaCha20-Poly1305
under the KDF's output, the header as associated data. The parameters live
in the file, so the defaults can be raised later and old files still open.

`encrypt` takes the salt (the caller draws it fresh from the operating
system); `decrypt` raises `WrongPassphrase` when the tag does not verify and
`KeyFileError` for a file it cannot parse. Neither names a secret.
"""

from __future__ import annotations

import base64
import binascii
import struct
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from ..protocol.errors import KeyFileError, WrongPassphrase

#: First bytes of the binary body, then the version byte.
MAGIC = b"KRKEY"
#: The format version this module writes and reads.
VERSION = 1
#: KDF identifier of Argon2id (RFC 9106), the only one of version 1.
KDF_ARGON2ID = 1
#: PEM label of an encrypted key file.
PEM_LABEL = "KEYRESOLVE ENCRYPTED PRIVATE KEY"
#: Argon2's associated data X (RFC 9106 3.2): binds the derived key to this format.
KDF_LABEL = b"keyresolve-keyfile/v1"
#: Salt bytes: RFC 9106 4 recommends 128 bits.
SALT_SIZE = 16
#: Bytes of the derived key: a ChaCha20-Poly1305 key.
KEY_SIZE = 32
#: Every file's key is new (a fresh salt), so its one nonce may be fixed,
#: as age's scrypt recipient does with its wrapping key.
NONCE = bytes(12)
#: Poly1305 tag bytes (RFC 8439).
TAG_SIZE = 16

#: Bounds a file's parameters must keep, so a hostile or damaged file cannot
#: make a reader allocate without limit: 4 GiB of memory is age's ceiling
#: (its scrypt identity refuses a work factor above 2^22, 4 GiB with r = 8)
#: and twice RFC 9106's first recommended option (2 GiB).
MAX_MEMORY_KIB = 4 * 1024 * 1024
#: RFC 9106's options use 1 and 3 passes; 64 leaves room to raise them tenfold.
MAX_ITERATIONS = 64
#: Argon2 allows up to 2^24 - 1 lanes; more than 64 buys nothing on a client.
MAX_LANES = 64
#: Largest plaintext (a key file's PEM): an mlkem768x25519 seed PEM is ~100
#: bytes, a PKCS#8 Ed448 key ~160; 16 KiB leaves room for any later key.
MAX_PLAINTEXT = 16 * 1024
#: Largest encrypted file a reader accepts (its armour included).
MAX_FILE_SIZE = 4 * MAX_PLAINTEXT

_HEADER = struct.Struct(">5sBBIII")
_HEADER_SIZE = _HEADER.size + SALT_SIZE
_BEGIN = f"-----BEGIN {PEM_LABEL}-----".encode()
_END = f"-----END {PEM_LABEL}-----".encode()
#: Base64 characters per armour line, as PEM (RFC 7468 2).
_LINE = 64


@dataclass(frozen=True)
class KdfParams:
    """Argon2id's cost: `iterations` passes (t) over `memory_kib` KiB (m)
    in `lanes` lanes (p)."""

    iterations: int
    memory_kib: int
    lanes: int

    def __post_init__(self) -> None:
        if not 1 <= self.lanes <= MAX_LANES:
            raise KeyFileError(f"Argon2id lanes must be 1..{MAX_LANES}, not {self.lanes}")
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise KeyFileError(f"Argon2id iterations must be 1..{MAX_ITERATIONS}, "
                               f"not {self.iterations}")
        if not 8 * self.lanes <= self.memory_kib <= MAX_MEMORY_KIB:
            raise KeyFileError(f"Argon2id memory must be {8 * self.lanes}..{MAX_MEMORY_KIB} "
                               f"KiB for {self.lanes} lanes, not {self.memory_kib}")


#: What keygen writes: RFC 9106's second recommended option (4), for when
#: 2 GiB of memory cannot be assumed: t = 3, m = 64 MiB, p = 4 (~0.3 s here).
#: Argon2id rather than scrypt: it is the RFC's first choice, and at the
#: same time cost it fills its memory where age's scrypt (N = 2^18) needs ~1.8 s.
DEFAULT_PARAMS = KdfParams(iterations=3, memory_kib=64 * 1024, lanes=4)


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    """UTF-8 of the NFC form (RFC 8265's OpaqueString normalises to NFC), so
    the same passphrase typed on two systems derives the same key."""
    if isinstance(passphrase, bytes):
        return passphrase
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def derive_key(passphrase: str | bytes, salt: bytes, params: KdfParams) -> bytes:
    """Argon2id(passphrase, salt, t, m, p, X = KDF_LABEL), 32 bytes."""
    return Argon2id(salt=salt, length=KEY_SIZE, iterations=params.iterations,
                    lanes=params.lanes, memory_cost=params.memory_kib,
                    ad=KDF_LABEL).derive(_passphrase_bytes(passphrase))


def encrypt(pem: bytes, passphrase: str | bytes, salt: bytes,
            params: KdfParams = DEFAULT_PARAMS) -> bytes:
    """The encrypted key file (PEM armour) holding `pem`; `salt` must be
    SALT_SIZE fresh random bytes (a repeated salt and passphrase repeat the key)."""
    if len(salt) != SALT_SIZE:
        raise KeyFileError(f"the salt is {SALT_SIZE} bytes")
    if len(pem) > MAX_PLAINTEXT:
        raise KeyFileError(f"a key file holds at most {MAX_PLAINTEXT} bytes")
    if not _passphrase_bytes(passphrase):
        raise KeyFileError("the passphrase is empty")
    header = _HEADER.pack(MAGIC, VERSION, KDF_ARGON2ID, params.iterations, params.memory_kib,
                          params.lanes) + salt
    body = header + ChaCha20Poly1305(derive_key(passphrase, salt, params)).encrypt(
        NONCE, pem, header)
    text = base64.b64encode(body)
    lines = [text[i:i + _LINE] for i in range(0, len(text), _LINE)]
    return b"\n".join([_BEGIN, *lines, _END]) + b"\n"


def is_encrypted(data: bytes) -> bool:
    """Whether `data` is an encrypted key file (starts with its armour)."""
    return data.lstrip().startswith(_BEGIN)


@dataclass(frozen=True)
class Parsed:
    """An encrypted key file, parsed but not opened."""

    params: KdfParams
    salt: bytes
    header: bytes
    ciphertext: bytes


def parse(data: bytes) -> Parsed:
    """The header of an encrypted key file; KeyFileError if it is malformed."""
    if len(data) > MAX_FILE_SIZE:
        raise KeyFileError(f"an encrypted key file is at most {MAX_FILE_SIZE} bytes")
    text = data.strip()
    if not text.startswith(_BEGIN) or not text.endswith(_END) or len(text) < len(_BEGIN) + len(_END):
        raise KeyFileError("not an encrypted key file (no PEM armour "
                           f"'{PEM_LABEL}')")
    try:
        body = base64.b64decode(b"".join(text[len(_BEGIN):-len(_END)].split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("encrypted key file: the armour is not valid base64") from None
    if len(body) < _HEADER_SIZE + TAG_SIZE:
        raise KeyFileError("encrypted key file is truncated")
    magic, version, kdf, iterations, memory, lanes = _HEADER.unpack_from(body)
    if magic != MAGIC:
        raise KeyFileError("encrypted key file: bad magic")
    if version != VERSION:
        raise KeyFileError(f"encrypted key file version {version} is not supported "
                           f"(this keyresolve reads version {VERSION})")
    if kdf != KDF_ARGON2ID:
        raise KeyFileError(f"encrypted key file: unknown KDF {kdf}")
    params = KdfParams(iterations=iterations, memory_kib=memory, lanes=lanes)
    return Parsed(params, body[_HEADER.size:_HEADER_SIZE], body[:_HEADER_SIZE],
                  body[_HEADER_SIZE:])


def decrypt(data: bytes, passphrase: str | bytes) -> bytes:
    """The plaintext (PEM) of the encrypted key file `data`. WrongPassphrase
    if it does not authenticate; KeyFileError if it is malformed."""
    parsed = parse(data)
    try:
        return ChaCha20Poly1305(derive_key(passphrase, parsed.salt, parsed.params)).decrypt(
            NONCE, parsed.ciphertext, parsed.header)
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase (or the key file was altered)") from None


__all__ = ["DEFAULT_PARAMS", "KdfParams", "Parsed", "SALT_SIZE", "decrypt", "derive_key",
           "encrypt", "is_encrypted", "parse"]
