"""The owner's key backup that a REGISTER request may carry (docs/registry.md,
"The backup"), sans-IO: the registry stores it and hands it back by mail
token, and only the owner's recovery passphrase opens it.

A backup is an encrypted key file (docs/key-files.md: Argon2id and
ChaCha20-Poly1305, `keyfile`) whose plaintext is the msgpack array
``[MAGIC, address, X25519 private key (32 bytes), Ed25519 private key (32
bytes)]``; for an mlkem768x25519 encryption key, the array has a fifth
element, the string ``"mlkem768x25519"``, and the third is the key's 32-byte
seed (docs/seal-format.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..protocol import hpke
from ..protocol.errors import FormError, InvalidName, KeyFileError, KeyresolveError
from ..protocol.names import Name
from . import keyfile

#: The first element of a backup's plaintext: its format and version.
MAGIC = "keyresolve-backup-v1"
#: Largest backup read: the registry keeps at most 4096 bytes
#: (registry.messages.MAX_BACKUP); one for alice@example.com is 316.
MAX_BACKUP = 4096
#: The fifth element of a backup holding a hybrid encryption key.
HYBRID = "mlkem768x25519"


class BackupError(KeyresolveError):
    """A backup that is malformed or holds no keys (as the registry returned it)."""

    remote = True


@dataclass(frozen=True)
class BackedUpKeys:
    """What a backup holds: the address and its two private keys."""

    address: Name
    encrypt: X25519PrivateKey | hpke.HybridPrivateKey
    sign: Ed25519PrivateKey


def seal_keys(keys: BackedUpKeys, passphrase: str, salt: bytes,
              params: keyfile.KdfParams = keyfile.DEFAULT_PARAMS) -> bytes:
    """The backup of `keys` under `passphrase`; `salt` is
    `keyfile.SALT_SIZE` fresh random bytes."""
    fields: list[str | bytes] = [MAGIC, keys.address.to_wire()]
    if isinstance(keys.encrypt, hpke.HybridPrivateKey):
        fields += [keys.encrypt.seed_bytes(), keys.sign.private_bytes_raw(), HYBRID]
    else:
        fields += [keys.encrypt.private_bytes_raw(), keys.sign.private_bytes_raw()]
    plaintext = msgpack.packb(fields)
    try:
        return keyfile.encrypt(plaintext, passphrase, salt, params)
    except KeyFileError as exc:
        raise BackupError(str(exc)) from None


def open_keys(backup: bytes, passphrase: str) -> BackedUpKeys:
    """The keys in `backup`. `WrongPassphrase` if `passphrase` does not open
    it (or it was altered), `BackupError` if it is malformed."""
    if type(backup) is not bytes or len(backup) > MAX_BACKUP:
        raise BackupError(f"a backup is at most {MAX_BACKUP} bytes")
    try:
        plaintext = keyfile.decrypt(backup, passphrase)
    except KeyFileError as exc:
        raise BackupError(f"not a keyresolve backup: {exc}") from None
    try:
        magic, address, encrypt, sign, *kind = msgpack.unpackb(plaintext, raw=False,
                                                               use_list=False)
        if magic != MAGIC or kind not in ([], [HYBRID]) or type(encrypt) is not bytes:
            raise ValueError
        private = (hpke.HybridPrivateKey(encrypt) if kind
                   else X25519PrivateKey.from_private_bytes(encrypt))
        return BackedUpKeys(Name.from_wire(address), private,
                            Ed25519PrivateKey.from_private_bytes(sign))
    except (InvalidName, ValueError, TypeError, FormError):
        raise BackupError("the backup opened but holds no keyresolve keys") from None


__all__ = ["BackedUpKeys", "BackupError", "MAGIC", "open_keys", "seal_keys"]
