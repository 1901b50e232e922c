"""`keyresolve demo`: the whole demo hierarchy in one process.

The hierarchy ships inside the package (keyresolve/demo_zones, package data),
so the demo runs from any directory; `--zones DIR` serves another one. Each
server of demo.toml gets its own LMDB environment under the data
directory, as separate machines would; they all listen on loopback, on the
ports demo.toml gives or (`--ports auto`) on free ports the system picks, with
the glue of a copy of the zones rewritten to match.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import importlib.resources
import logging
import re
import shlex
import shutil
import signal
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import trio

from ..protocol.codes import Rcode, RType, rcode_to_text
from ..cli.config import ResolverConfig, ServeConfig, Table, ZoneConfig, load_keys, read_toml
from ..protocol.transport import format_endpoint, parse_endpoint
from ..protocol.errors import ConfigError, KeyresolveError
from ..protocol.message import make_query
from ..protocol.names import Name
from ..net.client import query
from ..net.server import open_endpoint
from ..store.zones import Store
from ..files.local import LOCAL_FILES
from ..zonedata.zonefile import load_zone
from . import resolver
from . import serve as auth

log = logging.getLogger("keyresolve.demo")


#: The package directory of the demo hierarchy: demo.toml, the zone files, root.hints.
DEMO_ZONES = "demo_zones"


@functools.cache
def demo_zones_dir() -> Path:
    """The installed demo hierarchy as a real directory (servers open its
    files by path): the package's own directory, or, when the package is not
    on the filesystem (run from a zip), a copy extracted once to a temporary
    directory removed at exit."""
    source = importlib.resources.files(__name__.split(".")[0]) / DEMO_ZONES
    if isinstance(source, Path):
        return source
    copy = Path(tempfile.mkdtemp(prefix="keyresolve-demo-zones-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    for entry in source.iterdir():
        if entry.is_file():
            (copy / entry.name).write_bytes(entry.read_bytes())
    return copy


def demo_root_hints() -> Path:
    """The root hints of the installed demo (its fixed ports)."""
    return demo_zones_dir() / "root.hints"


def shown_path(path: Path) -> str:
    """`path` as the user can type it from the current directory: relative
    below it, absolute elsewhere; quoted for a shell if it needs it."""
    path = Path(path).absolute()
    cwd = Path.cwd()
    return shlex.quote(str(path.relative_to(cwd) if path.is_relative_to(cwd) else path))


@dataclass
class DemoServer:
    """One authoritative server of the demo."""

    label: str
    config: ServeConfig


def zone_file_name(zone: str) -> str:
    """Demo zone file naming: ``example.com.zone``, and ``root.zone`` for the root."""
    zone = zone.rstrip(".")
    return f"{zone or 'root'}.zone"


def load_demo(zones_dir: Path, data_dir: Path) -> tuple[list[DemoServer], ResolverConfig]:
    """Read `zones_dir`/demo.toml: one ServeConfig per server, and the resolver's config."""
    path = zones_dir / "demo.toml"
    top = Table(read_toml(path), f"{path}: ")
    keys = load_keys(top, path)
    servers = []
    for i, raw in enumerate(top.get("servers", list)):
        table = Table(raw, f"{path}: servers[{i}].")
        label = table.get("label", str)
        listen = table.endpoints("listen", allow_zero=True)
        key = table.key_names_one("key", keys) if "key" in table.data else None
        notify = table.endpoints("notify", allow_zero=False) if "notify" in table.data else []
        zones = [ZoneConfig(name=_zone_name(z, path), file=zones_dir / zone_file_name(z),
                            tsig_key=key, notify=notify, allow_transfer=[key] if key else [])
                 for z in table.get("zones", list, [])]
        if "secondary" in table.data:
            primary = _endpoint(table.get("primary", str), path, i)
            zones += [ZoneConfig(name=_zone_name(z, path), primaries=[primary], tsig_key=key,
                                 allow_transfer=[key] if key else [])
                      for z in table.get("secondary", list)]
        table.finish()
        servers.append(DemoServer(label, ServeConfig(path=path, listen=listen, keys=keys,
                                                     data_dir=data_dir / label, zones=zones)))
    table = Table(top.get("resolver", dict), f"{path}: resolver.")
    resolver = ResolverConfig(path=path, listen=table.endpoints("listen", allow_zero=True),
                              root_hints=zones_dir / table.get("root_hints", str))
    table.finish()
    top.finish()
    return servers, resolver


def _endpoint(text: str, path: Path, i: int):
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: servers[{i}].primary: {exc}") from None


def _zone_name(text: str, path: Path) -> Name:
    try:
        return Name.from_text(text if text.endswith(".") else text + ".")
    except Exception as exc:
        raise ConfigError(f"{path}: zone {text!r}: {exc}") from None


#: `--ports` values: the ports of demo.toml (they match the glue in the zone
#: files), or free ports the system picks, the glue rewritten to match.
PORTS_FIXED = "fixed"
PORTS_AUTO = "auto"
#: Where `--ports auto` writes the rewritten zone files and hints, under the data directory.
AUTO_ZONES_DIR = "zones-auto-ports"
#: An endpoint in a zone file, hints file or comment: ip:port or [ipv6]:port.
_ENDPOINT_RE = re.compile(r"(?<![\w.:\]])(\[[0-9A-Fa-f:.]+\]|\d{1,3}(?:\.\d{1,3}){3})"
                          r":(\d{1,5})(?!\d)")


@dataclass
class Running:
    """What `run` reports once every demo server answers."""

    #: {server label (and "resolver"): its bound addresses}
    bound: dict[str, list]
    #: The root hints the resolver uses (with the real ports).
    root_hints: Path
    #: The directory of demo.toml and the zone files served.
    zones_dir: Path


async def run(zones_dir: Path, data_dir: Path | None, *, ports: str = PORTS_FIXED,
              task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
    """Start every demo server; report a `Running`; run until cancelled."""
    with ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keyresolve-")))
        servers, resolver_config = load_demo(zones_dir, data_dir)
        for server in servers:
            make_dir(server.config.data_dir)
        if ports == PORTS_AUTO:
            servers, resolver_config = await move_to_free_ports(servers, resolver_config,
                                                                data_dir / AUTO_ZONES_DIR)
        elif ports != PORTS_FIXED:
            raise ConfigError(f"--ports must be {PORTS_FIXED} or {PORTS_AUTO}, not {ports!r}")
        async with trio.open_nursery() as nursery:
            bound: dict[str, list] = {}
            for server in servers:
                store = stack.enter_context(Store(server.config.data_dir))
                bound[server.label] = await nursery.start(auth.serve, server.config, store)
            bound["resolver"] = await nursery.start(resolver.serve, resolver_config)
            task_status.started(Running(bound, resolver_config.root_hints, zones_dir))


def make_dir(path: Path) -> None:
    """Create `path` and its parents if missing; a ConfigError naming it if that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or exc}") from None


async def move_to_free_ports(servers: list[DemoServer], resolver_config: ResolverConfig,
                             zones_copy: Path) -> tuple[list[DemoServer], ResolverConfig]:
    """The same demo on free ports: every listen address of demo.toml gets a
    port free for both UDP and TCP, and every mention of the old address (in
    listen, notify and primary settings, in the zone files' glue and in the
    root hints) becomes the new one; the rewritten files go to `zones_copy`.

    The ports are held until all are picked, then released for the servers
    to bind a moment later.
    """
    wanted = [e for server in servers for e in server.config.listen] + resolver_config.listen
    moved: dict[tuple[str, int], tuple[str, int]] = {}
    held = []
    try:
        for host, port in dict.fromkeys(wanted):
            udp, tcp = await open_endpoint(host, 0)
            held.append((udp, tcp))
            moved[(host, port)] = (host, udp.getsockname()[1])
    finally:
        for udp, tcp in held:
            udp.close()
            await tcp.aclose()

    def remap(endpoints: list) -> list:
        return [moved.get(tuple(e), e) for e in endpoints]

    make_dir(zones_copy)
    copies: dict[Path, Path] = {}

    def copy(path: Path) -> Path:
        if path not in copies:
            target = zones_copy / path.name
            try:  # bytes that are not UTF-8 pass through, for the zone compiler to report
                text = path.read_text(errors="surrogateescape")
                target.write_text(rewrite_endpoints(text, moved), errors="surrogateescape")
            except OSError as exc:
                raise ConfigError(f"{exc.filename or path}: {exc.strerror or exc}") from None
            copies[path] = target
        return copies[path]

    out = []
    for server in servers:
        zones = [dataclasses.replace(z, file=copy(z.file) if z.file else None,
                                     notify=remap(z.notify), primaries=remap(z.primaries))
                 for z in server.config.zones]
        config = dataclasses.replace(server.config, listen=remap(server.config.listen),
                                     zones=zones)
        out.append(DemoServer(server.label, config))
    resolver_config = dataclasses.replace(resolver_config, listen=remap(resolver_config.listen),
                                          root_hints=copy(resolver_config.root_hints))
    return out, resolver_config


def rewrite_endpoints(text: str, moved: dict[tuple[str, int], tuple[str, int]]) -> str:
    """`text` with every ip:port of `moved` replaced by its new address."""
    def replace(match: re.Match) -> str:
        try:
            endpoint = parse_endpoint(match.group(0))
        except ValueError:
            return match.group(0)
        new = moved.get(endpoint)
        return match.group(0) if new is None else format_endpoint(new)

    return _ENDPOINT_RE.sub(replace, text)


async def _check_secondaries(zones_dir: Path, data_dir: Path | None, bound, echo) -> bool:
    """Each secondary serves its zone's current serial (waits for the first transfer)."""
    servers, _ = load_demo(zones_dir, data_dir or Path())  # only the configs are read
    ok = True
    for server in servers:
        for zone in server.config.zones:
            if not zone.is_secondary:
                continue
            address = bound[server.label][0]
            want = load_zone(str(zone_file_for(zones_dir, zone.name)), files=LOCAL_FILES).serial
            serial = None
            with trio.move_on_after(SECONDARY_CHECK_TIMEOUT):
                while serial != want:
                    try:
                        reply = (await query(address, make_query(zone.name, RType.SOA))).response
                        serial = next((r.rdata.serial for r in reply.answer
                                       if r.rtype == RType.SOA), None)
                    except KeyresolveError:
                        serial = None
                    if serial != want:
                        await trio.sleep(0.05)
            good = serial == want
            ok = ok and good
            echo(f"{'ok  ' if good else 'FAIL'} secondary {server.label} serves {zone.name} "
                 f"serial {serial} (primary has {want})")
    return ok


def zone_file_for(zones_dir: Path, zone: Name) -> Path:
    """The demo zone file of `zone`."""
    return zones_dir / zone_file_name(zone.to_text())


#: How long `demo --check` waits for a secondary's first transfer.
SECONDARY_CHECK_TIMEOUT = 10.0


def print_banner(running: Running, echo) -> None:
    """What is running where, and commands to try (with the real ports)."""
    bound = running.bound
    hints = shown_path(running.root_hints)
    echo(f"keyresolve demo: serving the hierarchy from {shown_path(running.zones_dir)} "
         "on loopback")
    for label, addresses in bound.items():
        echo(f"  {label:<16} {', '.join(format_endpoint(a) for a in addresses)}")
    first = {label: format_endpoint(a[0]) for label, a in bound.items()}
    echo("")
    echo("Try (python3 -m keyresolve works wherever keyresolve is not on PATH):")
    echo(f"  keyresolve dig alice@example.com @{first['resolver']}")
    echo(f"  keyresolve dig carol@eng.example.com @{first['resolver']} --json")
    echo(f"  keyresolve dig alice-at-com@example.org @{first['resolver']}   # an alias across zones")
    echo(f"  keyresolve dig carol@eng.example.com @{first['example.com']}   # a referral")
    echo(f"  keyresolve dig alice@example.com --trace --root-hints {hints}")
    if "example.com" in first:
        echo(f"  keyresolve dig example.com AXFR @{first['example.com']} "
             "-y demo-xfer:ZGVtby1vbmx5LWtleS1mb3ItdGhlLWxvb3BiYWNrLWRlbW8=")
    echo("Ctrl-C stops it.")


def demo_mailboxes(zones_dir: Path) -> list[Name]:
    """Every mailbox in the demo zones that owns a KEY or an ALIAS."""
    names: set[Name] = set()
    for path in sorted(zones_dir.glob("*.zone")):
        zone = load_zone(str(path), files=LOCAL_FILES)
        for record in zone.records():
            if record.name.is_mailbox and record.rtype in (RType.KEY, RType.ALIAS):
                names.add(record.name)
    return sorted(names, key=Name.to_text)


async def check(zones_dir: Path, data_dir: Path | None, echo, ports: str = PORTS_FIXED) -> bool:
    """Start the demo, resolve every demo key through the resolver, report."""
    ok = True
    async with trio.open_nursery() as nursery:
        bound = (await nursery.start(functools.partial(run, ports=ports), zones_dir,
                                     data_dir)).bound
        resolver_address = bound["resolver"][0]
        ok = await _check_secondaries(zones_dir, data_dir, bound, echo) and ok
        for mailbox in demo_mailboxes(zones_dir):
            try:
                exchange = await query(resolver_address, make_query(mailbox, RType.KEY, rd=True))
            except KeyresolveError as exc:
                echo(f"FAIL {mailbox}: {exc}")
                ok = False
                continue
            response = exchange.response
            keys = [r for r in response.answer if r.rtype == RType.KEY]
            if response.rcode != Rcode.NOERROR or not keys:
                echo(f"FAIL {mailbox}: {rcode_to_text(response.rcode)}, {len(keys)} keys")
                ok = False
                continue
            via = [str(r.rdata.target) for r in response.answer if r.rtype == RType.ALIAS]
            ids = ", ".join(f"{r.rdata.algorithm.name.lower()} {r.rdata.key_id}" for r in keys)
            echo(f"ok   {mailbox}{' via ' + ' -> '.join(via) if via else ''}: {ids}")
        nursery.cancel_scope.cancel()
    return ok


async def main(zones_dir: Path, data_dir: Path | None, echo, ports: str = PORTS_FIXED) -> None:
    """The `keyresolve demo` daemon: run until SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(run, ports=ports), zones_dir,
                                          data_dir)
            print_banner(running, echo)
            log.info("ready")
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
