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
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any

from ..protocol.errors import ConfigError, InvalidName
from ..protocol.names import Name
from ..files.private import read_private
from ..protocol.tsig import ALGORITHMS, DEFAULT_ALGORITHM, MAC_SIZES, MIN_SECRET, SharedKey

#: Largest secret file read: a base64 secret is a few dozen bytes, so a big
#: file is a wrong path, not a key.
MAX_SECRET_FILE = 4096
#: Largest key file read (one TOML table of a few lines).
MAX_KEY_FILE = 65536
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
    data = read_private(path, MAX_SECRET_FILE, f"{where}: secret_file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: secret_file {path} is not base64 text") from None
    return _decode_secret(text, f"{where}: secret_file {path}")


def key_from_table(name: str, table: Any, base_dir: Path, where: str | None = None) -> SharedKey:
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
    return SharedKey(key_name, algorithm, secret)


def shared_keys_from_config(keys_table: Any, base_dir: Path) -> dict[Name, SharedKey]:
    """The keyring of a parsed ``[keys]`` table; `base_dir` anchors secret_file paths."""
    if not isinstance(keys_table, dict):
        raise ConfigError("keys: must be a table of [keys.NAME] tables")
    keyring: dict[Name, SharedKey] = {}
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


def parse_y_option(text: str) -> SharedKey:
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
    return SharedKey(_key_name(name, "-y"), _algorithm(algorithm, "-y"), _decode_secret(secret, "-y"))


def load_key_file(path: Path) -> SharedKey:
    """The one key of a key file (`tsig_keygen` output) for dig's ``-k``.

    The file holds a secret, so, like a secret_file, it must not be
    accessible by group or others.
    """
    path = Path(path)
    data = read_private(path, MAX_KEY_FILE, "key file")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    keys = document.get("keys")
    if set(document) != {"keys"} or not isinstance(keys, dict) or len(keys) != 1:
        raise ConfigError(f"{path}: a key file holds exactly one [keys.NAME] table")
    ((name, table),) = keys.items()
    return key_from_table(name, table, path.parent, f"{path}: keys.{name}")


__all__ = ["MAX_SECRET_FILE", "key_from_table",
           "shared_keys_from_config", "load_key_file", "parse_y_option", "read_secret_file",
           "tsig_keygen"]
