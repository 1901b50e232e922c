"""The user's own keys: a key directory as keygen writes it, loaded with a
passphrase when its files are encrypted (docs/key-files.md, docs/client.md).

A key directory holds one file per key, ``ADDRESS.ALGORITHM.pem`` (mode
0600), each either the unencrypted PEM or that PEM under a passphrase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from ..client import keyfile
from ..client.seal import HybridIdentity, SigningKey, X25519Identity, identity_from_pem
from ..protocol.errors import (ConfigError, KeyFileError, KeyresolveError, NoKey, WrongPassphrase)
from ..protocol.records import KEY, KEY_ALGORITHMS, KeyAlgorithm
from ..files.private import read_private

#: Largest private key file read: an encrypted one's limit (the larger).
MAX_KEY_FILE = keyfile.MAX_FILE_SIZE
#: Largest passphrase file read: a passphrase is a line; 4 KiB is far more
#: than any (GnuPG's pinentry caps a passphrase at 2 KiB by default).
MAX_PASSPHRASE_FILE = 4096
#: Suffix of a private key file.
KEY_FILE_SUFFIX = ".pem"


class PassphraseSource:
    """Where a passphrase comes from: the first line of `file` (which must be
    0600), else one prompt on the terminal. Asked at most once, and only
    when `get` is called (that is, when an encrypted file is met)."""

    def __init__(self, file: Path | None = None, *,
                 prompt: Callable[[str], str] | None = None) -> None:
        self.file = None if file is None else Path(file)
        self._prompt = prompt or _prompt_hidden
        self._value: str | None = None

    @classmethod
    def from_option(cls, passphrase_file: str | None) -> PassphraseSource:
        """The source for a command's ``--passphrase-file`` (None: prompt)."""
        return cls(None if passphrase_file is None else Path(passphrase_file))

    def get(self, what: str) -> str:
        """The passphrase; `what` names the file it is asked for in a prompt.
        ConfigError if the file cannot be read or holds no passphrase."""
        if self._value is None:
            if self.file is not None:
                self._value = read_passphrase_file(self.file)
            else:
                self._value = self._prompt(f"Passphrase for {what}")
        return self._value


def _prompt_hidden(text: str) -> str:
    return click.prompt(text, hide_input=True, err=True)


def read_passphrase_file(path: Path) -> str:
    """The first line of `path` (an owner-only file), without its line end."""
    data = read_private(path, MAX_PASSPHRASE_FILE, "passphrase file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"passphrase file {path} is not UTF-8") from None
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line:
        raise ConfigError(f"passphrase file {path} is empty (the passphrase is its first line)")
    return line


@dataclass
class OwnKeys:
    """One address's private keys, loaded: its encryption identities, its
    Ed25519 signing key (or None), and the public KEY of every key loaded."""

    address: str
    identities: list[X25519Identity | HybridIdentity] = field(default_factory=list)
    signing: SigningKey | None = None
    keys: list[KEY] = field(default_factory=list)
    #: The files the keys came from, and those of them not encrypted.
    files: list[Path] = field(default_factory=list)
    unencrypted: list[Path] = field(default_factory=list)


def key_files(keys_dir: Path) -> dict[str, list[tuple[KeyAlgorithm, Path]]]:
    """The private key files of `keys_dir` by address: every
    ``ADDRESS.ALGORITHM.pem``; other files are ignored."""
    found: dict[str, list[tuple[KeyAlgorithm, Path]]] = {}
    for path in sorted(keys_dir.glob("*" + KEY_FILE_SUFFIX)):
        stem = path.name[:-len(KEY_FILE_SUFFIX)]
        address, _, algorithm = stem.rpartition(".")
        member = KeyAlgorithm.__members__.get(algorithm.upper())
        if not address or "@" not in address or member is None:
            continue
        found.setdefault(address, []).append((member, path))
    return found


def load_keys(keys_dir: Path, passphrase: PassphraseSource, *, address: str | None = None,
              warn: Callable[[str], None] | None = None) -> OwnKeys:
    """Load the private keys of `keys_dir` (of `address`, required when the
    directory holds several addresses' keys). NoKey when it holds none,
    WrongPassphrase naming the file when one does not open, KeyFileError or
    ConfigError for a file that cannot be used. `warn` (default: one line on
    stderr) is told once when some files are not encrypted."""
    keys_dir = Path(keys_dir)
    if not keys_dir.is_dir():
        raise NoKey(f"no key directory {keys_dir}")
    by_address = key_files(keys_dir)
    if address is not None:
        address = address.lower().rstrip(".")
        by_address = {a: files for a, files in by_address.items() if a == address}
    if not by_address:
        whose = f" for {address}" if address else ""
        raise NoKey(f"no private key{whose} in {keys_dir} (keyresolve keygen makes them)")
    if len(by_address) > 1:
        raise KeyresolveError(f"{keys_dir} holds keys of several addresses "
                              f"({', '.join(sorted(by_address))}): say which")
    [(owner, files)] = by_address.items()
    own = OwnKeys(owner)
    for algorithm, path in files:
        _load_one(own, algorithm, path, passphrase, f"the keys of {owner} in {keys_dir}")
    if own.unencrypted:
        warn_unencrypted(len(own.unencrypted), keys_dir, warn)
    return own


def warn_unencrypted(count: int, keys_dir: Path,
                     warn: Callable[[str], None] | None = None) -> None:
    """Tell the user (one line on stderr by default) that `count` private
    key files of `keys_dir` are not encrypted: they still load."""
    (warn or _warn)(f"warning: {count} private key file{'s are' if count > 1 else ' is'} not "
                    f"encrypted in {keys_dir} (keygen --passphrase writes encrypted ones)")


def _warn(line: str) -> None:
    click.echo(f"keyresolve: {line}", err=True)


def _load_one(own: OwnKeys, algorithm: KeyAlgorithm, path: Path,
              passphrase: PassphraseSource, what: str) -> None:
    data = read_private(path, MAX_KEY_FILE, "private key file")
    if keyfile.is_encrypted(data):
        try:
            pem = keyfile.decrypt(data, passphrase.get(what))
        except WrongPassphrase:
            raise WrongPassphrase(f"wrong passphrase for {path}") from None
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from None
    else:
        pem = data
        own.unencrypted.append(path)
    usage = KEY_ALGORITHMS[algorithm][1]
    try:
        if algorithm in (KeyAlgorithm.X25519, KeyAlgorithm.MLKEM768X25519):
            identity = identity_from_pem(pem)
            if identity.kind != algorithm:
                raise KeyFileError(f"not an {algorithm.name.lower()} private key")
            own.identities.append(identity)
            public = identity.public_key
        elif algorithm == KeyAlgorithm.ED25519:
            own.signing = SigningKey.from_pem(own.address, pem)
            public = own.signing.public_key
        else:
            public = _public_only(pem, algorithm)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    own.keys.append(KEY(algorithm, usage, public))
    own.files.append(path)


def _public_only(pem: bytes, algorithm: KeyAlgorithm) -> bytes:
    """The raw public key of an X448 or Ed448 file (keys seal does not use)."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
        public = private.public_key().public_bytes_raw()  # type: ignore[union-attr]
    except (ValueError, TypeError, AttributeError):
        raise KeyFileError(f"not an unencrypted {algorithm.name.lower()} private key") from None
    if len(public) != KEY_ALGORITHMS[algorithm][0]:
        raise KeyFileError(f"not an {algorithm.name.lower()} private key")
    return public


__all__ = ["warn_unencrypted", "MAX_KEY_FILE", "MAX_PASSPHRASE_FILE", "OwnKeys", "PassphraseSource", "key_files",
           "load_keys", "read_passphrase_file"]
