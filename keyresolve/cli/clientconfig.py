"""The user's settings for the client tools: ``client.toml`` for `keyresolve dig`,
seal, open, verify and keyring refresh.

It lives at ``$XDG_CONFIG_HOME/keyresolve/client.toml`` (by default
``~/.config/keyresolve/client.toml``); without the file, every setting has
its default. Relative paths in it are relative to the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import Table, read_toml
from ..protocol.transport import Endpoint, parse_endpoint


@dataclass(frozen=True)
class ClientConfig:
    """What client.toml says; None for a setting it does not give."""

    path: Path
    #: The default server of dig, for a command line without @HOST.
    server: Endpoint | None = None
    #: The root hints of `dig +trace` without --root-hints.
    root_hints: Path | None = None
    #: The resolver seal, open, verify and keyring refresh ask without
    #: --resolver (else `server`, else DEFAULT_RESOLVER).
    resolver: Endpoint | None = None


#: The resolver the client commands ask when neither --resolver nor
#: client.toml names one: the one `keyresolve demo` runs (as dig's default).
DEFAULT_RESOLVER: Endpoint = ("127.0.0.1", 5353)


def client_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where client.toml is: under $XDG_CONFIG_HOME, or ~/.config when it is
    unset or relative (the XDG base directory spec ignores relative paths)."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "keyresolve" / "client.toml"


def load_client_config(path: Path) -> ClientConfig:
    """Read client.toml at `path` (a missing file gives the defaults); raises
    ConfigError naming the file and the setting."""
    if not path.exists():
        return ClientConfig(path)
    table = Table(read_toml(path), f"{path}: ")
    server, resolver = _endpoint(table, "server"), _endpoint(table, "resolver")
    hints = table.get("root_hints", str, None, what="a file name")
    if hints is not None and not hints.strip():
        raise table._err("root_hints", "must name a file")
    table.finish()
    root_hints = None if hints is None else path.parent / Path(hints).expanduser()
    return ClientConfig(path, server, root_hints, resolver)


def _endpoint(table: Table, setting: str) -> Endpoint | None:
    if setting not in table.data:
        return None
    text = table.get(setting, str, what='an "ip:port" string')
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise table._err(setting, str(exc)) from None


def client_resolver(config: ClientConfig) -> Endpoint:
    """The resolver to ask without --resolver: client.toml's `resolver`,
    else its `server`, else DEFAULT_RESOLVER."""
    return config.resolver or config.server or DEFAULT_RESOLVER
