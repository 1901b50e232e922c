"""Shared-secret key configuration: keygen, config tables, key files, ``-y``.

A key is written as a TOML table (the form `tsig_keygen` prints)::

    [keys.xfer]
    algorithm = "hmac-sha256"
    secret = "<base64>"            # or: secret_file = "xfer.secret"

A `secret_file` (relative to the config file's directory) holds the base64
secret and must not be accessible by group or others. Every error is a
ConfigError naming the key, e.g. ``keys.xfer: secret is not valid base64``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import stat
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError, InvalidName
from .names import Name
from .tsig import ALGORITHMS, DEFAULT_ALGORITHM, MAC_SIZES, MIN_SECRET, Key

#: Largest secret file read: a base64 secret is a few dozen bytes, so a big
#: file is a wrong path, not a key.
MAX_SECRET_FILE = 4096
#: Largest key file read (one TOML table of a few lines).
MAX_KEY_FILE = 65536
#: Permission bits that must be clear on a file holding a secret (owner only).
SECRET_FILE_FORBIDDEN_BITS = 0o077
#: Fields of a ``[keys.NAME]`` table.
_KEY_FIELDS = frozenset({"algorithm", "secret", "secret_file"})
#: TOML bare keys (TOML 1.0 "Keys"); other names are written quoted.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _key_name(text: str, where: str) -> Name:
    try:
        return Name.from_text(text if text.endswith(".") else text + ".")
    except InvalidName as exc:
        raise ConfigError(f"{where}: invalid key name: {exc}") from None


def _algorithm(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in ALGORITHMS:
        raise ConfigError(f"{where}: unknown algorithm {value!r} "
                          f"(one of {', '.join(ALGORITHMS)})")
    return value.lower()


def _decode_secret(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ConfigError(f"{where}: secret must be a base64 string")
    try:
        secret = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: secret is not valid base64") from None
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"{where}: secret is {len(secret)} bytes; at least {MIN_SECRET} "
                          "are needed (make one with tsig-keygen)")
    return secret


def read_secret_file(path: Path, where: str) -> bytes:
    """Read a base64 secret from `path`, refusing a file others may read."""
    data = _read_private(path, MAX_SECRET_FILE, f"{where}: secret_file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: secret_file {path} is not base64 text") from None
    return _decode_secret(text, f"{where}: secret_file {path}")


def read_private_file(path: Path, limit: int, what: str) -> bytes:
    """The contents of `path`, a regular file of at most `limit` bytes that
    only its owner may read (else ConfigError naming `what` and the path,
    never the contents): for secrets such as a password file."""
    return _read_private(path, limit, what)


def _read_private(path: Path, limit: int, what: str) -> bytes:
    """The contents of a regular, owner-only file of at most `limit` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot open: {exc.strerror}") from None
    try:
        # fstat the open file, so the file checked is the file read.
        _check_private(os.fstat(fd), path, what)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit} bytes")
    return data


def _check_private(st: os.stat_result, path: Path, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if st.st_mode & SECRET_FILE_FORBIDDEN_BITS:
        raise ConfigError(f"{what} {path} is accessible by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o}; chmod 600 it)")


def key_from_table(name: str, table: Any, base_dir: Path, where: str | None = None) -> Key:
    """Build one key from its ``[keys.NAME]`` table."""
    where = where or f"keys.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - _KEY_FIELDS)
    if unknown:
        hint = ""
        if any(isinstance(table[u], dict) for u in unknown):
            hint = f' (quote names that contain dots: [keys."{name}.{unknown[0]}"])'
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}{hint}")
    key_name = _key_name(name, where)
    if "algorithm" not in table:
        raise ConfigError(f"{where}: algorithm is missing")
    algorithm = _algorithm(table["algorithm"], where)
    if ("secret" in table) == ("secret_file" in table):
        raise ConfigError(f"{where}: give exactly one of secret and secret_file")
    if "secret" in table:
        secret = _decode_secret(table["secret"], where)
    else:
        path = table["secret_file"]
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}: secret_file must be a path string")
        secret = read_secret_file(base_dir / path, where)
    return Key(key_name, algorithm, secret)


def keyring_from_config(keys_table: Any, base_dir: Path) -> dict[Name, Key]:
    """The keyring of a parsed ``[keys]`` table; `base_dir` anchors secret_file paths."""
    if not isinstance(keys_table, dict):
        raise ConfigError("keys: must be a table of [keys.NAME] tables")
    keyring: dict[Name, Key] = {}
    for name, table in keys_table.items():
        key = key_from_table(name, table, base_dir)
        if key.name in keyring:
            raise ConfigError(f"keys.{name}: key {key.name} is defined twice")
        keyring[key.name] = key
    return keyring


def tsig_keygen(name: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
    """A new random key as the TOML table a config or key file takes.

    The secret is as long as the algorithm's output (RFC 2104 3: longer adds
    no strength, shorter is discouraged).
    """
    algorithm = _algorithm(algorithm, "tsig-keygen")
    key_name = _key_name(name, "tsig-keygen")
    text = key_name.to_text()
    text = text[:-1] if text != "." else text
    # json.dumps gives a valid TOML basic string for these ASCII names.
    table = text if _BARE_KEY.match(text) else json.dumps(text)
    secret = base64.b64encode(secrets.token_bytes(MAC_SIZES[algorithm])).decode("ascii")
    return f'[keys.{table}]\nalgorithm = "{algorithm}"\nsecret = "{secret}"\n'


def parse_y_option(text: str) -> Key:
    """A key from dig's ``-y [ALGORITHM:]NAME:SECRET`` (secret in base64)."""
    parts = text.split(":")
    if len(parts) == 2:
        algorithm, (name, secret) = DEFAULT_ALGORITHM, parts
    elif len(parts) == 3:
        algorithm, name, secret = parts
    else:
        raise ConfigError("-y: expected [ALGORITHM:]NAME:SECRET")
    if not name:
        raise ConfigError("-y: the key name is empty")
    return Key(_key_name(name, "-y"), _algorithm(algorithm, "-y"), _decode_secret(secret, "-y"))


def load_key_file(path: Path) -> Key:
    """The one key of a key file (`tsig_keygen` output) for dig's ``-k``.

    The file holds a secret, so, like a secret_file, it must not be
    accessible by group or others.
    """
    path = Path(path)
    data = _read_private(path, MAX_KEY_FILE, "key file")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    keys = document.get("keys")
    if set(document) != {"keys"} or not isinstance(keys, dict) or len(keys) != 1:
        raise ConfigError(f"{path}: a key file holds exactly one [keys.NAME] table")
    ((name, table),) = keys.items()
    return key_from_table(name, table, path.parent, f"{path}: keys.{name}")


__all__ = ["MAX_SECRET_FILE", "SECRET_FILE_FORBIDDEN_BITS", "key_from_table",
           "keyring_from_config", "load_key_file", "parse_y_option", "read_secret_file",
           "tsig_keygen"]
