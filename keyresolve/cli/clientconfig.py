"""The user's settings for the client tools: ``client.toml`` for `keyresolve dig`.

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
    server = None
    if "server" in table.data:
        text = table.get("server", str, what='an "ip:port" string')
        try:
            server = parse_endpoint(text)
        except ValueError as exc:
            raise table._err("server", str(exc)) from None
    hints = table.get("root_hints", str, None, what="a file name")
    if hints is not None and not hints.strip():
        raise table._err("root_hints", "must name a file")
    table.finish()
    root_hints = None if hints is None else path.parent / Path(hints).expanduser()
    return ClientConfig(path, server, root_hints)
