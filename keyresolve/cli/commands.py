"""The `keyresolve` command line: parse arguments, call the library, print.

`trio.run` appears only here.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from pathlib import Path

import click
import trio

from ..protocol.codes import RType
from .config import LOG_LEVELS, MAX_WORKERS, fingerprint, load_serve_config
from ..protocol.transport import format_endpoint, parse_endpoint
from ..protocol.errors import (ConfigError, KeyresolveError, NetworkError, PeerError, ProtocolError,
                     ZoneErrors)
from ..protocol.names import Name
from ..protocol.records import KeyAlgorithm

#: dig's exit status when no reply arrived (timeout or refused), as BIND's dig.
EXIT_NO_REPLY = 9
#: Default server for dig: the resolver of `keyresolve demo`.
DEFAULT_SERVER = "127.0.0.1:5353"


#: The levels --log-level and log_level accept (config.LOG_LEVELS).
LOG_LEVEL_CHOICE = click.Choice(LOG_LEVELS, case_sensitive=False)


class IsoFormatter(logging.Formatter):
    """Log lines with the time in ISO 8601, with milliseconds and the UTC
    offset: ``2026-12-06T20:41:34.123+00:00 INFO keyresolve.serve: ready``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (as `IsoFormatter`), level, logger,
    message, and exception (the traceback) when the record has one."""

    def __init__(self, tag: str = "") -> None:
        super().__init__()
        self.tag = tag

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": iso_time(record.created), "level": record.levelname,
               "logger": record.name + self.tag, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def iso_time(created: float) -> str:
    """`created` (epoch seconds) as local ISO 8601 time with milliseconds and offset."""
    return datetime.datetime.fromtimestamp(created).astimezone().isoformat(
        timespec="milliseconds")


def setup_logging(level: str, *, style: str = "text", tag: str = "") -> None:
    """Log lines to stderr: ISO 8601 time, level, component + `tag`, message;
    with `style` "json", one JSON object per line (`JsonFormatter`)."""
    handler = logging.StreamHandler(sys.stderr)
    if style == "json":
        handler.setFormatter(JsonFormatter(tag))
    else:
        handler.setFormatter(IsoFormatter(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        handlers=[handler])
    # Neither format shows a record's caller, thread or process: not
    # collecting them makes each line cheaper, as the logging HOWTO's
    # "Optimization" section says (a registry logs a line per change).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


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


class _Commands(click.Group):
    """The `keyresolve` group. The client's and the registry owner's
    commands are imported when one of them is named (or help lists them):
    their modules pull in the seal format, key files, MIME and HPKE, which
    `serve`, `resolver` and `dig` never use, and a daemon's restart would
    pay for them (benchmarks/RESULTS.md, "layers (#19)")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        load = _LAZY_COMMANDS.get(cmd_name)
        if load is not None and cmd_name not in self.commands:
            load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyresolve")
def main() -> None:
    """Publish and resolve public encryption keys for email addresses."""


# -- serve ---------------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="TOML configuration file.")
@click.option("--log-level", type=LOG_LEVEL_CHOICE, default=None,
              help="debug, info, warning or error (default: the config's log_level).")
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
    from ..daemons import serve as daemon

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
    _run_daemon(configure, run, config_path, log_level, tag=f"[worker {index}]")


def _run_daemon(load_config, daemon_main, config_path: str, log_level: str | None, *,
                tag: str = "") -> None:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        fail(str(exc))
    setup_logging(log_level or config.log_level, style=config.log_format, tag=tag)
    try:
        run_trio(daemon_main, config)
    except KeyresolveError as exc:
        fail(str(exc))


# -- resolver --------------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="TOML configuration file.")
@click.option("--log-level", type=LOG_LEVEL_CHOICE, default=None,
              help="debug, info, warning or error (default: the config's log_level).")
def resolver(config_path: str, log_level: str | None) -> None:
    """Run the iterative caching resolver."""
    from .config import load_resolver_config
    from ..daemons import resolver as daemon

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
    from ..protocol.codes import ControlCommand, Opcode, Rcode, rcode_to_text
    from ..protocol.message import make_query
    from ..protocol.names import ROOT
    from ..net.client import query

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
    from .sharedkeys import load_key_file, parse_y_option

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
    zone-status ZONE, refresh ZONE, retransfer ZONE, notify ZONE, zone-export ZONE,
    mail-flush (retry the registry's queued mail now), stop."""
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
@main.command()
@click.option("--zones", "zones_dir", type=click.Path(file_okay=False), default=None,
              help="Directory with demo.toml and the zone files (default: the demo "
                   "hierarchy installed with keyresolve).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the LMDB data here (default: a temporary directory).")
@click.option("--log-level", type=LOG_LEVEL_CHOICE, default=None,
              help="debug, info, warning or error; default: info, or warning with --check.")
@click.option("--check", is_flag=True,
              help="Resolve every demo key through the resolver, print them, exit 0 if all did.")
@click.option("--ports", type=click.Choice(["fixed", "auto"]), default="fixed",
              show_default=True,
              help="fixed: the ports of demo.toml (5310-5353 for the installed demo); "
                   "auto: free ports the system picks, the zones' glue rewritten to match.")
def demo(zones_dir: str | None, data_dir: str | None, log_level: str | None,
         check: bool, ports: str) -> None:
    """Serve the demo hierarchy (root, com, org, example.com, ...) and a resolver."""
    from ..daemons import demo as daemon

    setup_logging(log_level or ("warning" if check else "info"))
    zones = Path(zones_dir) if zones_dir else daemon.demo_zones_dir()
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
#: dig's exit status for a usage error (BIND 9's dig(1); click's own is 2).
EXIT_USAGE = 1
#: dig's exit status for an internal error.
EXIT_INTERNAL = 10


class DigFailure(KeyresolveError):
    """Ends `keyresolve dig` with exit status `code`: a one-line message on
    stderr (or dig's `text` on stdout), or with --json the object `doc` on stdout."""

    def __init__(self, message: str, code: int, *, text: str | None = None,
                 doc: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.text = text
        self.doc = doc if doc is not None else {"error": message}


def _dig_help() -> str:
    from .clientconfig import client_config_path
    from .dig import DEFAULT_PORT, DEFAULT_SERVER, MAX_TIMEOUT, MAX_TRIES

    types = ", ".join(t.name for t in RType if t not in (RType.AXFR, RType.IXFR))
    return f"""Query a server as dig does: NAME [TYPE] [@HOST[:PORT]] [-p PORT] [+OPTION...].

    \b
    TYPE: {types}, or TYPEn; AXFR or IXFR=SERIAL for a zone
    transfer (over TCP). Default: KEY.

    \b
    Server: @HOST or @HOST:PORT (IPv6: @::1 or @[::1]:PORT); -p PORT sets the
    port. A HOST without a port uses port {DEFAULT_PORT}. The default server is
    {DEFAULT_SERVER[0]}:{DEFAULT_SERVER[1]} (the resolver of `keyresolve demo`), unless
    server = "HOST:PORT" is set in {client_config_path()}.

    \b
    Options, as dig's (the +form wins over the --form):
      +short           only the rdata of the answer, one record a line
      +tcp (+vc)       query over TCP (--tcp)
      +norecurse       clear the RD flag (--no-rd); +recurse sets it (default)
      +json            one JSON object on stdout, errors too (--json)
      +trace           iterate from the root hints by ourselves (--trace); the
                       hints: --root-hints FILE, else root_hints = "FILE" in
                       client.toml, else those of the installed demo hierarchy
      +timeout=S       seconds to wait for each reply, default 2, at most {MAX_TIMEOUT:g}
      +tries=N         tries in all (UDP or TCP), default 3, at most {MAX_TRIES}
      +retry=N         retries after the first try (--retries), default 2
    Every +option may be shortened while unambiguous (+norec) and turned
    off with +no (+notcp).

    \b
    Exit status, as dig's:
      0   a reply arrived (whatever its rcode)
      1   usage error (bad argument, option or client.toml)
      8   cannot open a batch file (no -f here: never)
      9   no reply from the server (timed out, refused, unreadable)
      10  internal error
    """


class _DigCommand(click.Command):
    """dig's exit status for a usage error, and a JSON error with --json."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if _dig_json_wanted(given, "--json" in given):
                click.echo(json.dumps({"error": exc.format_message()}))
                sys.exit(EXIT_USAGE)
            exc.exit_code = EXIT_USAGE
            raise


def _dig_json_wanted(args, as_json: bool) -> bool:
    """Whether errors go out as JSON: --json, or the last +json/+nojson."""
    wanted = as_json
    for arg in args:
        word = arg.lower()
        if word.startswith("+j"):
            wanted = True
        elif word.startswith("+noj"):
            wanted = False
    return wanted


@main.command(cls=_DigCommand, context_settings={"ignore_unknown_options": True},
              help=_dig_help(), short_help="Query a server as dig does.")
@click.argument("args", nargs=-1, required=True)
@click.option("--tcp", is_flag=True, help="Query over TCP (+tcp).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (+json).")
@click.option("--timeout", default=None, type=click.FloatRange(min=0.01),
              help="Seconds to wait for each reply (+timeout=S); default 2.")
@click.option("--retries", default=None, type=click.IntRange(min=0),
              help="Retries after the first try (+retry=N); default 2.")
@click.option("--rd/--no-rd", default=None,
              help="Ask for recursion, the default (+recurse/+norecurse).")
@click.option("-y", "key_text", metavar="[ALG:]NAME:SECRET", default=None,
              help="Sign the query with this HMAC key and verify the reply.")
@click.option("-k", "key_file", type=click.Path(dir_okay=False), default=None,
              help="Read the HMAC key from a file (tsig-keygen output, mode 0600).")
@click.option("--trace", is_flag=True, help="Iterate from the root hints by ourselves (+trace).")
@click.option("--root-hints", type=click.Path(dir_okay=False), default=None,
              help="Root hints for --trace (zone-file syntax).")
def dig(args: tuple[str, ...], tcp: bool, as_json: bool, timeout: float | None,
        retries: int | None, rd: bool | None, key_text: str | None, key_file: str | None,
        trace: bool, root_hints: str | None) -> None:
    """Query a server as dig does (the help text is _dig_help's)."""
    json_out = _dig_json_wanted(args, as_json)
    try:
        _dig(args, tcp, as_json, timeout, retries, rd, key_text, key_file, trace, root_hints)
    except DigFailure as exc:
        _dig_exit(exc, json_out)
    except BrokenPipeError:
        raise  # the reader went away (`| head`): click ends quietly, status 1
    except Exception as exc:  # dig's contract: status 10, one line, never a traceback
        _dig_exit(DigFailure(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL),
                  json_out)


def _dig_exit(failure: DigFailure, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(failure.doc))
    elif failure.text is not None:
        click.echo(failure.text)
    else:
        click.echo(f"keyresolve: {failure}", err=True)
    sys.exit(failure.code)


def _dig(args: tuple[str, ...], tcp: bool, as_json: bool, timeout: float | None,
         retries: int | None, rd: bool | None, key_text: str | None, key_file: str | None,
         trace: bool, root_hints: str | None) -> None:
    from . import dig as report
    from .clientconfig import client_config_path, load_client_config
    from ..protocol.message import make_query
    from ..net.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, NoReply, query

    try:
        user = load_client_config(client_config_path())
        parsed = report.parse_dig_args(args, user.server or report.DEFAULT_SERVER)
    except (ConfigError, report.DigUsageError) as exc:
        raise DigFailure(str(exc), EXIT_USAGE) from None
    pick = lambda plus, flag: flag if plus is None else plus  # noqa: E731
    as_json = pick(parsed.json, as_json)
    short = bool(parsed.short)
    timeout = pick(parsed.timeout, timeout) or DEFAULT_TIMEOUT
    tries = pick(parsed.tries, None if retries is None else retries + 1) or DEFAULT_RETRIES + 1
    server, name, rtype = parsed.server, parsed.name, parsed.rtype
    key = _dig_key(key_text, key_file)
    if rtype in (RType.AXFR, RType.IXFR):
        _dig_transfer(name, rtype, parsed.serial, server, key, as_json, timeout, short)
        return
    if pick(parsed.trace, trace):
        hints, source = _dig_trace_hints(root_hints, user)
        _dig_trace(name, rtype, hints, source, as_json, short)
        return
    message = make_query(name, rtype, rd=pick(parsed.recurse, pick(rd, True)))
    try:
        exchange = trio.run(lambda: query(server, message, timeout=timeout, retries=tries - 1,
                                          tcp=pick(parsed.tcp, tcp), key=key))
    except NoReply as exc:
        raise DigFailure(report.NO_SERVERS, EXIT_NO_REPLY,
                         text=report.timeout_text(exc.server, exc.tries, exc.elapsed, exc.tcp),
                         doc=report.timeout_json(exc.server, exc.tries, exc.elapsed,
                                                 exc.tcp)) from None
    except NetworkError as exc:
        raise DigFailure(str(exc), EXIT_NO_REPLY) from None
    except ProtocolError as exc:
        raise DigFailure(f"bad reply from {format_endpoint(server)}: {exc}",
                         EXIT_NO_REPLY) from None
    if as_json:
        doc = report.to_json(exchange.response)
        if key is not None:
            doc["signed"] = exchange.signed
            doc["verified"] = exchange.verified
        click.echo(json.dumps(doc, indent=None))
    elif short:
        for line in report.short_lines(exchange.response.answer):
            click.echo(line)
    else:
        click.echo(report.to_text(exchange.response, server=format_endpoint(server),
                                  tcp=exchange.tcp, elapsed=exchange.elapsed,
                                  size=len(exchange.wire), command=" ".join(args),
                                  verified=exchange.verified))


def _dig_key(key_text: str | None, key_file: str | None):
    from .sharedkeys import load_key_file, parse_y_option

    if key_text and key_file:
        raise DigFailure("use -y or -k, not both", EXIT_USAGE)
    try:
        return (parse_y_option(key_text) if key_text
                else load_key_file(Path(key_file)) if key_file else None)
    except ConfigError as exc:
        raise DigFailure(str(exc), EXIT_USAGE) from None


def _dig_trace_hints(root_hints: str | None, user) -> tuple[Path, str]:
    """The hints +trace starts from, and where they come from (said in its first line)."""
    if root_hints is not None:
        return Path(root_hints), "given by --root-hints"
    if user.root_hints is not None:
        return user.root_hints, f"named by root_hints in {user.path}"
    from ..daemons.demo import demo_root_hints

    return demo_root_hints(), "of the installed demo hierarchy"


def _dig_transfer(zone: Name, rtype: int, serial: int | None, server, key, as_json: bool,
                  timeout: float, short: bool = False) -> None:
    from . import dig as report
    from ..protocol.codes import rcode_to_text
    from ..net.transfer import run_transfer

    records = []

    def on_message(message) -> bool:
        if message.rcode:
            return True
        records.extend(message.answer)
        return False

    try:
        result = trio.run(lambda: run_transfer(server, zone, rtype, report.NullWriter(),
                                               serial=serial, key=key, idle_timeout=timeout,
                                               on_message=on_message))
    except NetworkError as exc:
        raise DigFailure(str(exc), EXIT_NO_REPLY) from None
    except (ProtocolError, PeerError) as exc:
        raise DigFailure(f"transfer from {format_endpoint(server)} failed: {exc}",
                         EXIT_NO_REPLY) from None
    inbound, elapsed = result.inbound, result.elapsed
    stats = {"messages": result.messages, "bytes": result.size, "rcode": result.rcode}
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
    if short:
        for line in report.short_lines(records):
            click.echo(line)
        return
    for record in records:
        click.echo(record.to_text())
    click.echo(f";; {rcode_to_text(stats['rcode'])}: {kind or 'no'} transfer of {zone} from "
               f"{format_endpoint(server)}: {len(records)} records, {stats['messages']} "
               f"messages, {stats['bytes']} bytes in {elapsed * 1000:.1f} ms"
               + ("; signatures verified" if key is not None else ""))


def _dig_trace(name: Name, rtype: int, hints_path: Path, source: str, as_json: bool,
               short: bool = False) -> None:
    from . import dig as report
    from ..resolver.cache import Cache
    from ..protocol.message import Question
    from ..net.upstream import run_resolution
    from ..resolver.resolution import Resolver
    from ..files.local import LOCAL_FILES
    from ..zonedata.zonefile import load_hints

    try:
        hints = load_hints(str(hints_path), files=LOCAL_FILES)
    except (ZoneErrors, KeyresolveError) as exc:
        raise DigFailure(f"the root hints {source}: {exc}", EXIT_USAGE) from None

    async def iterate():
        resolver = Resolver(hints, Cache())
        res = resolver.start(Question(name, rtype), trio.current_time())
        return res, await run_resolution(res)

    start = time.perf_counter()
    res, done = trio.run(iterate)
    elapsed = time.perf_counter() - start
    if as_json:
        doc = report.to_json(done.response)
        doc["root_hints"] = str(hints_path)
        doc["trace"] = [report.trace_entry_json(step) for step in res.trace]
        if done.reason:
            doc["reason"] = done.reason
        click.echo(json.dumps(doc))
        return
    if short:
        for line in report.short_lines(done.response.answer):
            click.echo(line)
        return
    click.echo(f";; using the root hints {source}: {hints_path}")
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
    from .sharedkeys import tsig_keygen as make_snippet

    try:
        click.echo(make_snippet(name, algorithm), nl=False)
    except ConfigError as exc:
        fail(str(exc))


# -- keygen --------------------------------------------------------------------
@main.command()
@click.argument("email")
@click.option("--algorithm", type=click.Choice([a.name.lower() for a in KeyAlgorithm]),
              default=None,
              help="Make one key of this algorithm (default: the pair an address "
                   "registers, x25519 to encrypt and ed25519 to sign).")
@click.option("--pq", is_flag=True,
              help="Make the pair with the post-quantum hybrid encryption key: "
                   "mlkem768x25519 to encrypt and ed25519 to sign (registrable too).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Directory for the private key files (created 0700).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), default=None,
              help="Encrypt the private keys under the first line of this 0600 file.")
@click.option("--passphrase", "ask_passphrase", is_flag=True,
              help="Encrypt the private keys under a passphrase asked for twice.")
def keygen(email: str, algorithm: str | None, pq: bool, out_dir: str,
           passphrase_file: str | None, ask_passphrase: bool) -> None:
    """Make keys for EMAIL: private keys to 0600 files, KEY lines to stdout."""
    from .keygen import PAIR, PQ_PAIR, make_keys
    from .privatekeys import read_passphrase_file

    if passphrase_file is not None and ask_passphrase:
        raise click.UsageError("give --passphrase or --passphrase-file, not both")
    if pq and algorithm is not None:
        raise click.UsageError("give --pq or --algorithm, not both")
    try:
        mailbox = Name.from_text(email)
        passphrase = None
        if passphrase_file is not None:
            passphrase = read_passphrase_file(Path(passphrase_file))
        elif ask_passphrase:
            passphrase = click.prompt("Passphrase for the new keys", hide_input=True,
                                      confirmation_prompt=True, err=True)
        algorithms = ((PQ_PAIR if pq else PAIR) if algorithm is None
                      else (KeyAlgorithm[algorithm.upper()],))
        made = make_keys(mailbox, algorithms, Path(out_dir), passphrase)
    except KeyresolveError as exc:
        fail(str(exc))
    for path, _ in made:
        click.echo(f"; private key written to {path}"
                   + (" (encrypted)" if passphrase is not None else ""), err=True)
    for _, record in made:
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
@click.option("--hints", is_flag=True,
              help="The files are root hints files (the resolver's root_hints), not zones.")
def zone_check(files: tuple[str, ...], origin: str | None, include_dirs: tuple[str, ...],
               hints: bool) -> None:
    """Check zone files (or hints files); print a summary, or every error as file:line."""
    from ..files.local import LOCAL_FILES, gc_paused
    from ..zonedata.bulkcompile import check_zone
    from ..zonedata.zonefile import summarize

    if hints:
        if origin is not None or include_dirs:
            raise click.UsageError("--hints takes no --origin or --include-dir")
        sys.exit(_check_hints(files))

    try:
        origin_name = None if origin is None else Name.from_text(
            origin if origin.endswith(".") else origin + ".")
    except ProtocolError as exc:
        raise click.UsageError(f"--origin: {exc}") from None
    def check(path: str):
        with gc_paused():  # the nodes are many objects and no cycles
            return check_zone(path, origin_name, files=LOCAL_FILES, include_dirs=include_dirs)

    sys.exit(_check_each(files, check, summarize))


def _check_hints(files: tuple[str, ...]) -> int:
    """`zone check --hints`: each file's summary or errors; the exit status."""
    from ..files.local import LOCAL_FILES
    from ..zonedata.zonefile import load_hints

    def summary(pairs) -> str:
        servers = len({server for server, _ in pairs})
        return (f"root hints, {servers} server{'s' if servers != 1 else ''}, "
                f"{len(pairs)} address{'es' if len(pairs) != 1 else ''}")

    return _check_each(files, lambda path: load_hints(path, files=LOCAL_FILES), summary)


def _check_each(files: tuple[str, ...], check, summary) -> int:
    """`check(path)` each file and print `summary` of what it returns, or
    every error as file:line; the exit status (1 if any file failed)."""
    failed = False
    for path in files:
        try:
            result = check(path)
        except ZoneErrors as exc:
            failed = True
            for error in exc.errors:
                click.echo(str(error), err=True)
            continue
        except KeyresolveError as exc:
            failed = True
            click.echo(f"{path}: {exc}", err=True)
            continue
        click.echo(f"{path}: {summary(result)}")
    return 1 if failed else 0


# -- the client's commands, loaded when named (`_Commands`) ----------------------
def _load_keyring() -> None:
    """`keyring` (cli/keyringcmd.py) with its `refresh` (cli/sealcmd.py)."""
    from .keyringcmd import keyring
    from .sealcmd import keyring_refresh

    keyring.add_command(keyring_refresh)
    main.add_command(keyring)


def _load_seal() -> None:
    """seal, open, sign, verify (cli/sealcmd.py)."""
    from .sealcmd import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


def _load_register() -> None:
    """register, unregister, recover: cli/registercmd.py adds them to `main`."""
    from . import registercmd  # noqa: F401


#: Command name -> what loads it.
_LAZY_COMMANDS = {"keyring": _load_keyring, "seal": _load_seal, "open": _load_seal,
                  "sign": _load_seal, "verify": _load_seal, "register": _load_register,
                  "unregister": _load_register, "recover": _load_register}

if __name__ == "__main__":
    main()
