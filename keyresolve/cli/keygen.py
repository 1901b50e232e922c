"""Key pair generation for mailboxes (`keyresolve keygen`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, x448, x25519

from ..client import keyfile
from ..client.seal import HYBRID_SEED_SIZE, HybridIdentity, hybrid_seed_to_pem
from ..protocol.codes import RType
from ..protocol.errors import KeyresolveError
from ..protocol.names import Name
from ..protocol.records import KEY, KEY_ALGORITHMS, KeyAlgorithm, Record

_GENERATORS = {
    KeyAlgorithm.X25519: x25519.X25519PrivateKey.generate,
    KeyAlgorithm.ED25519: ed25519.Ed25519PrivateKey.generate,
    KeyAlgorithm.X448: x448.X448PrivateKey.generate,
    KeyAlgorithm.ED448: ed448.Ed448PrivateKey.generate,
}

#: Private key files are readable by their owner only.
PRIVATE_KEY_MODE = 0o600
#: A directory keygen creates for private keys: its owner's only.
KEY_DIR_MODE = 0o700
#: TTL of the KEY line keygen prints.
DEFAULT_KEY_TTL = 3600
#: What keygen makes without --algorithm: the pair an address registers
#: (issue #20), one key to encrypt to and one to sign with.
PAIR = (KeyAlgorithm.X25519, KeyAlgorithm.ED25519)
#: What keygen --pq makes: the same pair with the post-quantum hybrid
#: encryption key (docs/seal-format.md section 4), registrable as well.
PQ_PAIR = (KeyAlgorithm.MLKEM768X25519, KeyAlgorithm.ED25519)


def generate(algorithm: KeyAlgorithm) -> tuple[bytes, KEY]:
    """A new key pair: the private key as PKCS#8 PEM (for mlkem768x25519, its
    32-byte seed in the PEM of docs/seal-format.md), and the public KEY rdata."""
    if algorithm == KeyAlgorithm.MLKEM768X25519:
        seed = secrets.token_bytes(HYBRID_SEED_SIZE)
        return (hybrid_seed_to_pem(seed),
                KEY(algorithm, KEY_ALGORITHMS[algorithm][1], HybridIdentity(seed).public_key))
    private = _GENERATORS[algorithm]()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes_raw()
    return pem, KEY(algorithm, KEY_ALGORITHMS[algorithm][1], public)


def write_private_key(path: Path, pem: bytes) -> None:
    """Create `path` with mode 0600; refuse to overwrite an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
    except FileExistsError:
        raise KeyresolveError(f"{path} exists; refusing to overwrite a private key") from None
    except OSError as exc:
        raise KeyresolveError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def make_key_dir(path: Path) -> None:
    """Create the directory `path` with mode 0700 (its missing parents too,
    with the default mode) unless it exists; an existing one is left as is."""
    if path.is_dir():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, KEY_DIR_MODE)
        os.chmod(path, KEY_DIR_MODE)  # whatever the umask
    except FileExistsError:
        if not path.is_dir():
            raise KeyresolveError(f"{path} exists and is not a directory") from None
    except OSError as exc:
        raise KeyresolveError(f"cannot create directory {path}: {exc.strerror}") from None


def key_path(out_dir: Path, address: str, algorithm: KeyAlgorithm) -> Path:
    """Where keygen writes the private key of `address` for `algorithm`."""
    return out_dir / f"{address}.{algorithm.name.lower()}.pem"


def keygen(email: Name, algorithm: KeyAlgorithm, out_dir: Path) -> tuple[Path, Record]:
    """Write a new unencrypted private key for `email` into `out_dir`; return it
    and the KEY record (`make_keys` for a pair, or under a passphrase)."""
    [made] = make_keys(email, (algorithm,), out_dir)
    return made


def make_keys(email: Name, algorithms: tuple[KeyAlgorithm, ...], out_dir: Path,
              passphrase: str | None = None,
              params: keyfile.KdfParams = keyfile.DEFAULT_PARAMS) -> list[tuple[Path, Record]]:
    """Write new private keys of `algorithms` for `email` into `out_dir`
    (created 0700), each 0600 and, with `passphrase`, encrypted
    (docs/key-files.md, `params`); the files and KEY records. Writes nothing
    if any of the files exists."""
    if not email.is_mailbox:
        raise KeyresolveError(f"{email} is not a mailbox (expected user@domain)")
    if passphrase is not None and not passphrase:
        raise KeyresolveError("the passphrase is empty")
    address = email.to_text().rstrip(".")
    paths = [key_path(out_dir, address, algorithm) for algorithm in algorithms]
    for path in paths:
        if path.exists():
            raise KeyresolveError(f"{path} exists; refusing to overwrite a private key")
    made = []
    for algorithm, path in zip(algorithms, paths):
        pem, rdata = generate(algorithm)
        if passphrase is not None:
            pem = keyfile.encrypt(pem, passphrase, secrets.token_bytes(keyfile.SALT_SIZE), params)
        made.append((path, pem, Record(email, RType.KEY, DEFAULT_KEY_TTL, rdata)))
    make_key_dir(out_dir)
    for path, pem, _ in made:
        write_private_key(path, pem)
    return [(path, record) for path, _, record in made]
