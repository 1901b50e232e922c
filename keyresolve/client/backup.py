"""The owner's key backup that a REGISTER request may carry (docs/registry.md,
"The backup"), sans-IO: the registry stores it and hands it back by mail
token, and only the owner's recovery passphrase opens it.

A backup is the msgpack array ``[magic, log_n, salt, nonce, ciphertext]``:
the key is scrypt (RFC 7914) of the passphrase (UTF-8) with `salt`,
N = 2**log_n, r = 8, p = 1; the ciphertext is ChaCha20-Poly1305 (RFC 8439)
under that key and `nonce`, with the associated data ``magic || log_n``
(one byte), of the msgpack array ``[address, X25519 private key (32 bytes),
Ed25519 private key (32 bytes)]``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..protocol.errors import FormError, InvalidName, KeyresolveError
from ..protocol.names import Name

#: The first element of a backup: its format and version.
MAGIC = "keyresolve-backup-v1"
#: scrypt cost written: N = 2**18, r = 8, p = 1 (256 MiB, about a second),
#: the work factor of age's passphrase recipient.
SCRYPT_LOG_N = 18
SCRYPT_R = 8
SCRYPT_P = 1
#: Costs a backup may ask when read: from 2**10 (the test vector) to 2**20,
#: RFC 7914 2's choice for file encryption (1 GiB); above it a hostile
#: backup would only exhaust memory.
MIN_LOG_N = 10
MAX_LOG_N = 20
#: Bytes of the scrypt salt (RFC 7914 recommends at least 16) and of the
#: ChaCha20-Poly1305 nonce (RFC 8439 2.8).
SALT_SIZE = 16
NONCE_SIZE = 12
#: Largest backup read: the registry keeps at most 4096 bytes (MAX_BACKUP).
MAX_BACKUP = 4096


class BackupError(KeyresolveError):
    """A backup that is malformed (`FormError` reasons) or that the
    passphrase does not open (`WrongPassphrase`)."""


class WrongPassphrase(BackupError):
    """The passphrase does not open the backup (or the backup was altered)."""


@dataclass(frozen=True)
class BackedUpKeys:
    """What a backup holds: the address and its two private keys."""

    address: Name
    encrypt: X25519PrivateKey
    sign: Ed25519PrivateKey


def _key(passphrase: str, salt: bytes, log_n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log_n, r=SCRYPT_R,
                  p=SCRYPT_P).derive(passphrase.encode("utf-8"))


def _aad(log_n: int) -> bytes:
    return MAGIC.encode() + bytes([log_n])


def seal_keys(keys: BackedUpKeys, passphrase: str, *,
              random: Callable[[int], bytes] = secrets.token_bytes,
              log_n: int = SCRYPT_LOG_N) -> bytes:
    """The backup of `keys` under `passphrase`; `random` gives the salt (16
    bytes), then the nonce (12)."""
    if not passphrase:
        raise BackupError("the recovery passphrase is empty")
    if not MIN_LOG_N <= log_n <= MAX_LOG_N:
        raise ValueError(f"log_n must be {MIN_LOG_N}..{MAX_LOG_N}")
    salt, nonce = random(SALT_SIZE), random(NONCE_SIZE)
    plaintext = msgpack.packb([keys.address.to_wire(), keys.encrypt.private_bytes_raw(),
                               keys.sign.private_bytes_raw()])
    sealed = ChaCha20Poly1305(_key(passphrase, salt, log_n)).encrypt(nonce, plaintext,
                                                                      _aad(log_n))
    return msgpack.packb([MAGIC, log_n, salt, nonce, sealed])


def open_keys(backup: bytes, passphrase: str) -> BackedUpKeys:
    """The keys in `backup`; `BackupError` if it is malformed,
    `WrongPassphrase` if `passphrase` does not open it."""
    if type(backup) is not bytes or len(backup) > MAX_BACKUP:
        raise BackupError(f"a backup is at most {MAX_BACKUP} bytes")
    try:
        fields = msgpack.unpackb(backup, raw=False, use_list=False, max_str_len=64,
                                 max_bin_len=MAX_BACKUP, max_array_len=5, max_map_len=0,
                                 max_ext_len=0)
    except Exception:
        raise BackupError("the backup is not a keyresolve backup") from None
    if type(fields) is not tuple or len(fields) != 5 or fields[0] != MAGIC:
        raise BackupError("the backup is not a keyresolve backup (v1)")
    _, log_n, salt, nonce, sealed = fields
    if type(log_n) is not int or not MIN_LOG_N <= log_n <= MAX_LOG_N:
        raise BackupError(f"the backup's scrypt cost is not 2**{MIN_LOG_N}..2**{MAX_LOG_N}")
    if (type(salt) is not bytes or len(salt) != SALT_SIZE or type(nonce) is not bytes
            or len(nonce) != NONCE_SIZE or type(sealed) is not bytes):
        raise BackupError("the backup's salt, nonce or ciphertext is malformed")
    try:
        plaintext = ChaCha20Poly1305(_key(passphrase, salt, log_n)).decrypt(nonce, sealed,
                                                                           _aad(log_n))
    except InvalidTag:
        raise WrongPassphrase("the recovery passphrase does not open the backup") from None
    try:
        address, encrypt, sign = msgpack.unpackb(plaintext, raw=False, use_list=False)
        return BackedUpKeys(Name.from_wire(address),
                            X25519PrivateKey.from_private_bytes(encrypt),
                            Ed25519PrivateKey.from_private_bytes(sign))
    except (InvalidName, FormError, ValueError, TypeError):
        raise BackupError("the backup opened but holds no keys") from None


__all__ = ["BackedUpKeys", "BackupError", "MAGIC", "SCRYPT_LOG_N", "WrongPassphrase",
           "open_keys", "seal_keys"]
