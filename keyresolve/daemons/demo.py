"""`keyresolve demo`: the whole demo hierarchy from zones/ in one process.

Each server of zones/demo.toml gets its own LMDB environment under the data
directory, as separate machines would; they all listen on loopback.
"""

from __future__ import annotations

import logging
import signal
import tempfile
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path

import trio

from ..config import ServeConfig, ZoneConfig, Table, format_endpoint, read_toml
from ..errors import ConfigError
from ..store import Store
from . import serve as auth

log = logging.getLogger("keyresolve.demo")


@dataclass
class DemoServer:
    """One authoritative server of the demo."""

    label: str
    config: ServeConfig


def zone_file_name(zone: str) -> str:
    """zones/ naming: ``example.com.zone``, and ``root.zone`` for the root."""
    zone = zone.rstrip(".")
    return f"{zone or 'root'}.zone"


def load_demo(zones_dir: Path, data_dir: Path) -> list[DemoServer]:
    """Read zones/demo.toml into one ServeConfig per server."""
    path = zones_dir / "demo.toml"
    top = Table(read_toml(path), f"{path}: ")
    servers = []
    for i, raw in enumerate(top.get("servers", list)):
        table = Table(raw, f"{path}: servers[{i}].")
        label = table.get("label", str)
        listen = table.endpoints("listen", allow_zero=True)
        zones = [ZoneConfig(name=_zone_name(z, path), file=zones_dir / zone_file_name(z))
                 for z in table.get("zones", list)]
        table.finish()
        servers.append(DemoServer(label, ServeConfig(path=path, listen=listen,
                                                     data_dir=data_dir / label, zones=zones)))
    top.data.pop("resolver", None)  # read by the resolver part of the demo
    top.finish()
    return servers


def _zone_name(text: str, path: Path):
    from ..names import Name

    try:
        return Name.from_text(text if text.endswith(".") else text + ".")
    except Exception as exc:
        raise ConfigError(f"{path}: zone {text!r}: {exc}") from None


async def run(zones_dir: Path, data_dir: Path | None, *,
              task_status: trio.TaskStatus[dict[str, list]] = trio.TASK_STATUS_IGNORED) -> None:
    """Start every demo server; report {label: bound addresses}; run until cancelled."""
    with ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keyresolve-")))
        servers = load_demo(zones_dir, data_dir)
        async with trio.open_nursery() as nursery:
            bound: dict[str, list] = {}
            for server in servers:
                store = stack.enter_context(Store(server.config.data_dir))
                bound[server.label] = await nursery.start(auth.serve, server.config, store)
            task_status.started(bound)


def print_banner(bound: dict[str, list], echo) -> None:
    """What is running where, and commands to try."""
    echo("keyresolve demo: serving the hierarchy from zones/ on loopback")
    for label, addresses in bound.items():
        echo(f"  {label:<16} {', '.join(format_endpoint(a) for a in addresses)}")
    first = {label: format_endpoint(a[0]) for label, a in bound.items()}
    echo("")
    echo("Try:")
    if "example.com" in first:
        echo(f"  keyresolve dig alice@example.com @{first['example.com']}")
        echo(f"  keyresolve dig www-team@example.com KEY @{first['example.com']} --json")
        echo(f"  keyresolve dig carol@eng.example.com @{first['example.com']}   # a referral")
    echo("Ctrl-C stops it.")


async def main(zones_dir: Path, data_dir: Path | None, echo) -> None:
    """The `keyresolve demo` daemon: run until SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(run, zones_dir, data_dir)
            print_banner(bound, echo)
            log.info("ready")
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
