"""The `keyresolve` command line: parse arguments, call the library, print.

`trio.run` appears only here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click
import trio

from .codes import RType, rtype_from_text
from .config import MAX_WORKERS, fingerprint, format_endpoint, load_serve_config, parse_endpoint
from .errors import (ConfigError, KeyresolveError, NetworkError, PeerError, ProtocolError,
                     ZoneErrors)
from .names import Name
from .records import KeyAlgorithm

#: dig's exit status when no reply arrived (timeout or refused), as BIND's dig.
EXIT_NO_REPLY = 9
#: Default server for dig: the resolver of `keyresolve demo`.
DEFAULT_SERVER = "127.0.0.1:5353"


def setup_logging(level: str, log_format: str | None = None) -> None:
    """Log lines to stderr: time, level, component, message (or `log_format`)."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format=log_format or "%(asctime)s %(levelname)s %(name)s: %(message)s")


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def run_trio(async_fn, *args):
    """trio.run, with our errors out of trio's exception groups for a one-line exit."""
    try:
        return trio.run(async_fn, *args)
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        ours = [e for e in leaves if isinstance(e, KeyresolveError)]
        if ours and len(ours) == len(leaves):
            raise ours[0] from None
        raise


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error to stderr and exit."""
    click.echo(f"keyresolve: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyresolve")
def main() -> None:
    """Publish and resolve public encryption keys for email addresses."""


# -- serve ---------------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="TOML configuration file.")
@click.option("--log-level", default=None, help="debug, info, warning or error.")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=None,
              help="Processes answering queries on the same addresses (SO_REUSEPORT); "
                   "default: the config's workers, 1.")
@click.option("--worker", "worker", default=None, hidden=True,
              help="Internal: run as worker INDEX:CHANNEL_FD of a main process.")
@click.option("--bound", multiple=True, hidden=True,
              help="Internal: an address the main process bound (for --worker).")
@click.option("--config-digest", default=None, hidden=True,
              help="Internal: the main process's config.fingerprint (for --worker).")
def serve(config_path: str, log_level: str | None, workers: int | None, worker: str | None,
          bound: tuple[str, ...], config_digest: str | None) -> None:
    """Run an authoritative server."""
    from .daemons import serve as daemon

    def configure(path: str):
        config = load_serve_config(path)
        if workers is not None:
            config.workers = workers
        if config_digest is not None and fingerprint(config) != config_digest:
            # a worker restarted after an edit must not answer from another config
            raise ConfigError(f"{path}: changed since the server started (or a key file "
                              "it names did); restart the server to apply the change")
        return config

    if worker is None:
        _run_daemon(configure, daemon.main, config_path, log_level)
        return
    index, _, fd = worker.partition(":")
    run = lambda config: daemon.worker_main(  # noqa: E731
        config, int(index), int(fd), [parse_endpoint(text) for text in bound])
    _run_daemon(configure, run, config_path, log_level,
                log_format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s")


def _run_daemon(load_config, daemon_main, config_path: str, log_level: str | None, *,
                log_format: str | None = None) -> None:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        fail(str(exc))
    setup_logging(log_level or config.log_level, log_format)
    try:
        run_trio(daemon_main, config)
    except KeyresolveError as exc:
        fail(str(exc))


# -- resolver --------------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="TOML configuration file.")
@click.option("--log-level", default=None, help="debug, info, warning or error.")
def resolver(config_path: str, log_level: str | None) -> None:
    """Run the iterative caching resolver."""
    from .config import load_resolver_config
    from .daemons import resolver as daemon

    _run_daemon(load_resolver_config, daemon.main, config_path, log_level)


@main.group()
def cache() -> None:
    """Resolver cache control."""


@cache.command("flush")
@click.argument("name", required=False)
@click.option("--resolver", "server_text", default=DEFAULT_SERVER, show_default=True,
              help="The resolver, HOST:PORT.")
@click.option("-y", "key_text", metavar="[ALG:]NAME:SECRET", default=None,
              help="Sign with this control key.")
@click.option("-k", "key_file", type=click.Path(dir_okay=False), default=None,
              help="Read the control key from a file.")
@click.option("--timeout", default=2.0, show_default=True, type=click.FloatRange(min=0.01))
def cache_flush(name: str | None, server_text: str, key_text: str | None,
                key_file: str | None, timeout: float) -> None:
    """Flush the whole cache, or only NAME."""
    from .codes import ControlCommand, Opcode, Rcode, rcode_to_text
    from .message import make_query
    from .names import ROOT
    from .net.client import query

    try:
        server = parse_endpoint(server_text)
        target = Name.from_text(name) if name else ROOT
    except (ValueError, ProtocolError) as exc:
        raise click.UsageError(str(exc)) from None
    command = ControlCommand.FLUSH_NAME if name else ControlCommand.FLUSH_ALL
    key = _load_key(key_text, key_file)
    message = make_query(target, command, opcode=Opcode.CONTROL)
    try:
        exchange = trio.run(lambda: query(server, message, timeout=timeout, retries=0, tcp=True,
                                          key=key))
    except (NetworkError, ProtocolError) as exc:
        fail(str(exc), EXIT_NO_REPLY)
    rcode = exchange.response.rcode
    if key is not None and exchange.verified != "ok":
        fail(f"reply not verified: {exchange.verified}")
    if rcode != Rcode.NOERROR:
        fail(f"resolver answered {rcode_to_text(rcode)}")
    click.echo(f"flushed {'the whole cache' if not name else target}")


def _load_key(key_text: str | None, key_file: str | None):
    from .keys import load_key_file, parse_y_option

    if key_text and key_file:
        raise click.UsageError("use -y or -k, not both")
    try:
        return (parse_y_option(key_text) if key_text
                else load_key_file(Path(key_file)) if key_file else None)
    except ConfigError as exc:
        fail(str(exc))


# -- ctl -----------------------------------------------------------------------
@main.command()
@click.argument("command")
@click.argument("zone", required=False)
@click.option("--server", "server_text", default=None, metavar="HOST:PORT",
              help="The server's address (default: the first listen address of --config).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The server's serve config, to find its address.")
@click.option("-y", "key_text", metavar="[ALG:]NAME:SECRET", default=None,
              help="Sign with this control key.")
@click.option("-k", "key_file", type=click.Path(dir_okay=False), default=None,
              help="Read the control key from a file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds to wait for the reply (a reload compiles zones first).")
def ctl(command: str, zone: str | None, server_text: str | None, config_path: str | None,
        key_text: str | None, key_file: str | None, as_json: bool, timeout: float) -> None:
    """Control a running server, as knotc and rndc do: status, reload [ZONE],
    zone-status ZONE, refresh ZONE, retransfer ZONE, notify ZONE, stop."""
    from . import ctl as client

    try:
        if server_text is None and config_path is None:
            raise ValueError("give --server HOST:PORT or --config FILE")
        zone_name = client.parse_zone(zone)
        client.request_for(command, zone_name)
        server = (parse_endpoint(server_text) if server_text
                  else client.server_from_config(config_path))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except client.CtlError as exc:
        fail(str(exc))
    key = _load_key(key_text, key_file)
    try:
        click.echo(trio.run(lambda: client.run(server, command, zone_name, key,
                                               timeout=timeout, as_json=as_json)))
    except client.CtlError as exc:
        if as_json and exc.status == client.EXIT_ERROR:
            click.echo(str(exc))
            sys.exit(exc.status)
        fail(f"ctl {exc}", exc.status)


# -- demo ----------------------------------------------------------------------
def default_zones_dir() -> Path:
    """zones/ of this checkout, else of the current directory."""
    here = Path(__file__).resolve().parent.parent / "zones"
    return here if (here / "demo.toml").exists() else Path("zones")


@main.command()
@click.option("--zones", "zones_dir", type=click.Path(file_okay=False), default=None,
              help="Directory with demo.toml and the zone files (default: zones/).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the LMDB data here (default: a temporary directory).")
@click.option("--log-level", default=None, help="Default: info, or warning with --check.")
@click.option("--check", is_flag=True,
              help="Resolve every demo key through the resolver, print them, exit 0 if all did.")
@click.option("--ports", type=click.Choice(["fixed", "auto"]), default="fixed",
              show_default=True,
              help="fixed: the ports of demo.toml (5310-5353 for zones/); auto: free ports "
                   "the system picks, the zones' glue rewritten to match.")
def demo(zones_dir: str | None, data_dir: str | None, log_level: str | None,
         check: bool, ports: str) -> None:
    """Serve the demo hierarchy (root, com, org, example.com, ...) and a resolver."""
    from .daemons import demo as daemon

    setup_logging(log_level or ("warning" if check else "info"))
    zones = Path(zones_dir) if zones_dir else default_zones_dir()
    data = Path(data_dir) if data_dir else None
    try:
        if check:
            ok = run_trio(daemon.check, zones, data, click.echo, ports)
            click.echo("all demo keys resolved" if ok else "some demo keys did not resolve")
            sys.exit(0 if ok else 1)
        run_trio(daemon.main, zones, data, click.echo, ports)
    except (KeyresolveError, ZoneErrors) as exc:
        busy = ports == "fixed" and str(exc).startswith("cannot listen")
        fail(str(exc) + (" (--ports auto picks free ones)" if busy else ""))


# -- dig -----------------------------------------------------------------------
def _parse_dig_args(args: tuple[str, ...]) -> tuple[Name, int, tuple[str, int], int | None]:
    name = rtype = server = serial = None
    for arg in args:
        if arg.startswith("@"):
            server = parse_endpoint(arg[1:])
        elif name is None:
            name = Name.from_text(arg)
        elif rtype is None:
            if arg.upper().startswith("IXFR="):
                digits = arg[5:]
                if not digits.isdigit() or int(digits) > 0xFFFFFFFF:
                    raise ValueError(f"IXFR=SERIAL needs a serial 0..4294967295, not {digits!r}")
                rtype, serial = RType.IXFR, int(digits)
            else:
                rtype = rtype_from_text(arg)
        else:
            raise ValueError(f"unexpected argument {arg!r}")
    if name is None:
        raise ValueError("missing NAME")
    if rtype == RType.IXFR and serial is None:
        raise ValueError("write IXFR=SERIAL (the serial you hold)")
    return (name, RType.KEY if rtype is None else rtype, server or parse_endpoint(DEFAULT_SERVER),
            serial)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=True)
@click.option("--tcp", is_flag=True, help="Query over TCP.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--timeout", default=2.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds to wait for each reply.")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(min=0),
              help="UDP retries after the first try.")
@click.option("--rd/--no-rd", default=True, show_default=True,
              help="Ask for recursion (resolvers need it).")
@click.option("-y", "key_text", metavar="[ALG:]NAME:SECRET", default=None,
              help="Sign the query with this HMAC key and verify the reply.")
@click.option("-k", "key_file", type=click.Path(dir_okay=False), default=None,
              help="Read the HMAC key from a file (tsig-keygen output, mode 0600).")
@click.option("--trace", is_flag=True, help="Iterate from the root hints by ourselves.")
@click.option("--root-hints", type=click.Path(dir_okay=False), default=None,
              help="Root hints for --trace (zone-file syntax).")
def dig(args: tuple[str, ...], tcp: bool, as_json: bool, timeout: float, retries: int,
        rd: bool, key_text: str | None, key_file: str | None, trace: bool,
        root_hints: str | None) -> None:
    """Query a server: NAME [TYPE] [@HOST:PORT] (TYPE defaults to KEY)."""
    from . import dig as report
    from .message import make_query
    from .net.client import query

    try:
        name, rtype, server, serial = _parse_dig_args(args)
    except (ValueError, ProtocolError) as exc:
        raise click.UsageError(str(exc)) from None
    if rtype in (RType.AXFR, RType.IXFR):
        _dig_transfer(name, rtype, serial, server, _load_key(key_text, key_file), as_json,
                      timeout)
        return
    if trace:
        if root_hints is None:
            raise click.UsageError("--trace needs --root-hints FILE")
        _dig_trace(name, rtype, Path(root_hints), as_json)
        return
    key = _load_key(key_text, key_file)
    message = make_query(name, rtype, rd=rd)
    try:
        exchange = trio.run(lambda: query(server, message, timeout=timeout, retries=retries,
                                          tcp=tcp, key=key))
    except NetworkError as exc:
        fail(str(exc), EXIT_NO_REPLY)
    except ProtocolError as exc:
        fail(f"bad reply from {format_endpoint(server)}: {exc}", EXIT_NO_REPLY)
    if as_json:
        doc = report.to_json(exchange.response)
        if key is not None:
            doc["signed"] = exchange.signed
            doc["verified"] = exchange.verified
        click.echo(json.dumps(doc, indent=None))
    else:
        click.echo(report.to_text(exchange.response, server=format_endpoint(server),
                                  tcp=exchange.tcp, elapsed=exchange.elapsed,
                                  size=len(exchange.wire), command=" ".join(args),
                                  verified=exchange.verified))


def _dig_transfer(zone: Name, rtype: int, serial: int | None, server, key, as_json: bool,
                  timeout: float) -> None:
    from . import dig as report
    from .codes import rcode_to_text
    from .net.client import transfer
    from .records import SOA, Record
    from .xfr import Inbound, make_transfer_query

    current = None
    if serial is not None:  # RFC 1995: only the serial of the client's SOA matters
        current = Record(zone, RType.SOA, 0, SOA(zone, Name(zone.labels, "hostmaster"),
                                                 serial, 0, 0, 0, 0))
    request = make_transfer_query(zone, rtype, current)
    inbound = Inbound(zone, rtype, serial, report.NullWriter(), query_id=request.id)
    records, stats = [], {"messages": 0, "bytes": 0, "rcode": 0}

    def on_message(message, size):
        stats["messages"] += 1
        stats["bytes"] += size
        stats["rcode"] = message.rcode
        if message.rcode:
            return True
        records.extend(message.answer)
        return inbound.process_message(message)

    start = time.perf_counter()
    try:
        trio.run(lambda: transfer(server, request, on_message, timeout=timeout, key=key))
    except NetworkError as exc:
        fail(str(exc), EXIT_NO_REPLY)
    except (ProtocolError, PeerError) as exc:
        fail(f"transfer from {format_endpoint(server)} failed: {exc}", EXIT_NO_REPLY)
    elapsed = time.perf_counter() - start
    kind = None if inbound.kind is None else inbound.kind.name.lower()
    if as_json:
        doc = {"rcode": rcode_to_text(stats["rcode"]), "kind": kind,
               "records": [r.to_json() for r in records], "messages": stats["messages"],
               "bytes": stats["bytes"], "serial": inbound.serial}
        if key is not None:
            doc["signed"] = True
            doc["verified"] = "ok"
        click.echo(json.dumps(doc))
        return
    for record in records:
        click.echo(record.to_text())
    click.echo(f";; {rcode_to_text(stats['rcode'])}: {kind or 'no'} transfer of {zone} from "
               f"{format_endpoint(server)}: {len(records)} records, {stats['messages']} "
               f"messages, {stats['bytes']} bytes in {elapsed * 1000:.1f} ms"
               + ("; signatures verified" if key is not None else ""))


def _dig_trace(name: Name, rtype: int, hints_path: Path, as_json: bool) -> None:
    from . import dig as report
    from .cache import Cache
    from .message import Question
    from .net.upstream import run_resolution
    from .resolution import Resolver
    from .zonefile import load_hints

    try:
        hints = load_hints(hints_path)
    except (ZoneErrors, KeyresolveError) as exc:
        fail(str(exc))

    async def iterate():
        resolver = Resolver(hints, Cache())
        res = resolver.start(Question(name, rtype), trio.current_time())
        return res, await run_resolution(res)

    start = time.perf_counter()
    res, done = trio.run(iterate)
    elapsed = time.perf_counter() - start
    if as_json:
        doc = report.to_json(done.response)
        doc["trace"] = [report.trace_entry_json(step) for step in res.trace]
        if done.reason:
            doc["reason"] = done.reason
        click.echo(json.dumps(doc))
        return
    for step in res.trace:
        click.echo(report.trace_entry_text(step))
    if done.reason:
        click.echo(f";; SERVFAIL: {done.reason}")
    click.echo("")
    click.echo(report.to_text(done.response, server="iterative from the root hints", tcp=False,
                              elapsed=elapsed, size=len(done.response.to_wire())))


@main.command("tsig-keygen")
@click.argument("name")
@click.option("--algorithm", type=click.Choice(["hmac-sha256", "hmac-sha512"]),
              default="hmac-sha256", show_default=True)
def tsig_keygen(name: str, algorithm: str) -> None:
    """Print a [keys.NAME] config snippet with a new random secret."""
    from .keys import tsig_keygen as make_snippet

    try:
        click.echo(make_snippet(name, algorithm), nl=False)
    except ConfigError as exc:
        fail(str(exc))


# -- keygen --------------------------------------------------------------------
@main.command()
@click.argument("email")
@click.option("--algorithm", type=click.Choice(["x25519", "ed25519", "x448", "ed448"]),
              default="x25519", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Directory for the private key file.")
def keygen(email: str, algorithm: str, out_dir: str) -> None:
    """Make a key pair for EMAIL: private key to a 0600 file, KEY line to stdout."""
    from .keygen import keygen as make_key

    try:
        mailbox = Name.from_text(email)
        path, record = make_key(mailbox, KeyAlgorithm[algorithm.upper()], Path(out_dir))
    except KeyresolveError as exc:
        fail(str(exc))
    click.echo(f"; private key written to {path}", err=True)
    click.echo(f"{record.name}\tKEY\t{record.rdata.to_text()}")


# -- zone ----------------------------------------------------------------------
@main.group()
def zone() -> None:
    """Zone file tools."""


@zone.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--origin", default=None, help="Zone name (default: the file's $ORIGIN).")
@click.option("--include-dir", "include_dirs", multiple=True,
              type=click.Path(file_okay=False, exists=True),
              help="A directory $INCLUDE may read besides the zone file's own "
                   "(as include_dirs in the serve config); repeatable.")
def zone_check(files: tuple[str, ...], origin: str | None, include_dirs: tuple[str, ...]) -> None:
    """Check zone files; print a summary, or every error as file:line."""
    from .bulkcompile import check_zone
    from .zonefile import summarize

    try:
        origin_name = None if origin is None else Name.from_text(
            origin if origin.endswith(".") else origin + ".")
    except ProtocolError as exc:
        raise click.UsageError(f"--origin: {exc}") from None
    failed = False
    for path in files:
        try:
            parsed = check_zone(path, origin_name, include_dirs=include_dirs)
        except ZoneErrors as exc:
            failed = True
            for error in exc.errors:
                click.echo(str(error), err=True)
            continue
        except KeyresolveError as exc:
            failed = True
            click.echo(f"{path}: {exc}", err=True)
            continue
        click.echo(f"{path}: {summarize(parsed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
