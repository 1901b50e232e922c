"""`keyresolve dig`: its argument language and its output, dig-style text and JSON (pure)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..protocol.codes import RType, opcode_to_text, rcode_to_text, rtype_from_text, rtype_to_text
from ..protocol.errors import KeyresolveError, ProtocolError
from ..protocol.message import Message
from ..protocol.names import Name
from ..protocol.records import KEY, Record


def to_json(response: Message) -> dict:
    """The JSON object `dig --json` prints."""
    question = None
    if response.question is not None:
        question = {"name": str(response.question.name),
                    "type": rtype_to_text(response.question.rtype)}
    return {
        "id": response.id,
        "opcode": opcode_to_text(response.opcode),
        "rcode": rcode_to_text(response.rcode),
        "flags": response.flags_text,
        "question": question,
        "answer": [r.to_json() for r in response.answer],
        "authority": [r.to_json() for r in response.authority],
        "additional": [r.to_json() for r in response.additional],
    }


def _record_line(record: Record) -> str:
    line = record.to_text()
    if isinstance(record.rdata, KEY):
        line += f" ; key_id {record.rdata.key_id}"
    return line


def to_text(response: Message, *, server: str, tcp: bool, elapsed: float, size: int,
            command: str = "", verified: str | None = None) -> str:
    """A dig-style report: header, sections, query time and server."""
    out = []
    if command:
        out.append(f"; <<>> keyresolve dig <<>> {command}")
    out.append(f";; ->>HEADER<<- opcode: {opcode_to_text(response.opcode)}, "
               f"status: {rcode_to_text(response.rcode)}, id: {response.id}")
    out.append(f";; flags: {' '.join(response.flags_text)}; "
               f"ANSWER: {len(response.answer)}, AUTHORITY: {len(response.authority)}, "
               f"ADDITIONAL: {len(response.additional)}")
    if response.question is not None:
        out += ["", ";; QUESTION SECTION:",
                f";{response.question.name}\t\t{rtype_to_text(response.question.rtype)}"]
    for title, section in (("ANSWER", response.answer), ("AUTHORITY", response.authority),
                           ("ADDITIONAL", response.additional)):
        if section:
            out += ["", f";; {title} SECTION:"] + [_record_line(r) for r in section]
    if verified is not None:
        sig = response.signature
        out += ["", f";; SIGNATURE: key {sig.key_name} {sig.algorithm}" if sig else
                ";; SIGNATURE: none (the reply is unsigned)",
                f";; VERIFIED: {verified}"]
    out += ["", f";; Query time: {elapsed * 1000:.1f} msec",
            f";; SERVER: {server} ({'TCP' if tcp else 'UDP'})",
            f";; MSG SIZE  rcvd: {size}"]
    return "\n".join(out)


def trace_entry_text(step) -> str:
    """One `dig --trace` line: who was asked as which zone, what came back, how fast."""
    indent = "  " * step.depth
    address = _endpoint(step.server)
    who = f"{step.server_name} ({address})" if step.server_name else address
    line = f";; {indent}{step.question} -> asked {who} for zone {step.zone_cut}: {step.outcome}"
    if step.referral is not None:
        line += f", referred to {step.referral}"
    if step.rtt is not None:
        line += f" in {step.rtt * 1000:.1f} ms"
    if step.detail:
        line += f" ({step.detail})"
    return line


def trace_entry_json(step) -> dict:
    """One `dig --trace --json` step."""
    return {"depth": step.depth, "question": str(step.question),
            "server": _endpoint(step.server),
            "server_name": None if step.server_name is None else str(step.server_name),
            "zone": str(step.zone_cut), "outcome": str(step.outcome),
            "referral": None if step.referral is None else str(step.referral),
            "rtt_ms": None if step.rtt is None else round(step.rtt * 1000, 3),
            "detail": step.detail}


def _endpoint(server: tuple) -> str:
    host, port = server[0], server[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NullWriter:
    """A transfer writer that keeps nothing: dig only checks the stream."""

    def begin_full(self) -> None: ...
    def begin_delta(self, old_soa) -> None: ...
    def begin_additions(self, new_soa) -> None: ...
    def delete(self, record) -> None: ...
    def add(self, record) -> None: ...
    def commit(self, soa) -> None: ...
    def abort(self) -> None: ...


# -- the argument language -------------------------------------------------------
#: The port of `@HOST` written without one, and of the default server: the
#: demo resolver's. The protocol has no well-known port (docs/protocol.md 1),
#: so dig's 53 would reach nothing of ours.
DEFAULT_PORT = 5353
#: The default server when neither `@HOST` nor the user config names one.
DEFAULT_SERVER = ("127.0.0.1", DEFAULT_PORT)
#: Boolean `+options` (each also as `+noOPTION`); `vc` is dig's old name for tcp.
BOOL_OPTIONS = ("short", "trace", "tcp", "vc", "recurse", "json")
#: `+OPTION=VALUE` options, as dig's: seconds per try, total tries, retries.
VALUE_OPTIONS = ("timeout", "tries", "retry")
#: Bounds on +timeout and +tries, so that a slip of the finger cannot keep dig
#: waiting for hours (dig's own defaults: 5 s and 3 tries).
MAX_TIMEOUT = 300.0
MAX_TRIES = 100


class DigUsageError(KeyresolveError):
    """A dig command line that cannot be understood (dig's exit status 1)."""


@dataclass(frozen=True)
class DigArgs:
    """A parsed dig command line. A `None` option was not given: the `--`
    form of the option, or the default, applies."""

    name: Name
    rtype: int = RType.KEY
    #: The serial of IXFR=SERIAL.
    serial: int | None = None
    server: tuple[str, int] = DEFAULT_SERVER
    short: bool | None = None
    trace: bool | None = None
    tcp: bool | None = None
    recurse: bool | None = None
    json: bool | None = None
    #: Seconds to wait for each reply.
    timeout: float | None = None
    #: Tries in all (UDP and TCP), at least 1: +tries=N, or +retry=N as N + 1.
    tries: int | None = None


def parse_dig_args(args: list[str] | tuple[str, ...],
                   default_server: tuple[str, int] = DEFAULT_SERVER) -> DigArgs:
    """Parse dig's words: NAME [TYPE] [@HOST[:PORT]] [-p PORT] [+option...],
    in any order after NAME's own place. Raises DigUsageError, one line."""
    name = rtype = serial = host = port = at_port = None
    options: dict[str, object] = {}
    words = list(args)
    i = 0
    while i < len(words):
        arg = words[i]
        i += 1
        if arg.startswith("+"):
            key, value = _plus_option(arg)
            options[key] = value
        elif arg.startswith("@"):
            host, at_port = _server(arg[1:])
        elif arg.startswith("-p"):
            text = arg[2:]
            if not text:
                if i == len(words):
                    raise DigUsageError("-p needs a port")
                text, i = words[i], i + 1
            port = _port(text, "-p")
        elif arg.startswith("-") and len(arg) > 1:
            raise DigUsageError(f"unknown option {arg!r} (see keyresolve dig --help)")
        elif name is None:
            try:
                name = Name.from_text(arg)
            except ProtocolError as exc:
                raise DigUsageError(f"NAME {arg!r}: {exc}") from None
        elif rtype is None:
            rtype, serial = _rtype(arg)
        else:
            raise DigUsageError(f"unexpected argument {arg!r}")
    if name is None:
        raise DigUsageError("missing NAME")
    if rtype == RType.IXFR and serial is None:
        raise DigUsageError("write IXFR=SERIAL (the serial you hold)")
    if port is not None and at_port is not None and port != at_port:
        raise DigUsageError(f"two ports: -p {port} and @{host}:{at_port}")
    if host is None:
        server = (default_server[0], port or default_server[1])
    else:
        server = (host, port or at_port or DEFAULT_PORT)
    return DigArgs(name=name, rtype=RType.KEY if rtype is None else rtype, serial=serial,
                   server=server, **options)  # type: ignore[arg-type]


def _plus_option(arg: str) -> tuple[str, object]:
    word, eq, value = arg[1:].partition("=")
    word = word.lower()
    negated = word.startswith("no") and _expand(word[2:], quiet=True) in BOOL_OPTIONS
    key = _expand(word[2:] if negated else word)
    if key in BOOL_OPTIONS:
        if eq:
            raise DigUsageError(f"{arg}: +{key} takes no value")
        return "tcp" if key == "vc" else key, not negated
    if negated or not eq:
        raise DigUsageError(f"{arg}: write +{key}=N")
    if key == "timeout":
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds <= MAX_TIMEOUT:
            raise DigUsageError(f"{arg}: +timeout needs seconds above 0, at most {MAX_TIMEOUT:g}")
        return key, seconds
    least, most = (1, MAX_TRIES) if key == "tries" else (0, MAX_TRIES - 1)
    if not value.isdigit() or not least <= int(value) <= most:
        raise DigUsageError(f"{arg}: +{key} needs a whole number {least}..{most}")
    return "tries", int(value) + (key == "retry")


def _expand(word: str, *, quiet: bool = False) -> str | None:
    """The option `word` names, or that it is the unique start of (as dig allows)."""
    known = BOOL_OPTIONS + VALUE_OPTIONS
    if word in known:
        return word
    matches = [k for k in known if word and k.startswith(word)]
    if len(matches) == 1:
        return matches[0]
    if quiet:
        return None
    if matches:
        raise DigUsageError(f"+{word} is ambiguous: {', '.join('+' + m for m in matches)}")
    raise DigUsageError(f"unknown option +{word} (see keyresolve dig --help)")


def _server(text: str) -> tuple[str, int | None]:
    """@HOST, @HOST:PORT, @[IPV6] or @[IPV6]:PORT; a bare IPv6 address has no port."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or rest and not rest.startswith(":"):
            raise DigUsageError(f"@{text}: write @[IPV6] or @[IPV6]:PORT")
        port = _port(rest[1:], f"@{text}") if rest else None
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest, f"@{text}")
    else:
        host, port = text, None
    if host.lower() == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise DigUsageError(f"@{text}: the server must be an IP address (or localhost)") from None
    if text.startswith("[") and address.version != 6:
        raise DigUsageError(f"@{text}: brackets are for IPv6 addresses")
    return host, port


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise DigUsageError(f"{where}: the port must be 1..65535, not {text!r}")
    return int(text)


def _rtype(arg: str) -> tuple[int, int | None]:
    if arg.upper().startswith("IXFR="):
        digits = arg[5:]
        if not digits.isdigit() or int(digits) > 0xFFFFFFFF:
            raise DigUsageError(f"IXFR=SERIAL needs a serial 0..4294967295, not {digits!r}")
        return RType.IXFR, int(digits)
    try:
        return rtype_from_text(arg), None
    except ValueError as exc:
        raise DigUsageError(f"{exc} (types: {', '.join(RType.__members__)})") from None


# -- short output and failures ------------------------------------------------------
def short_lines(records: list[Record]) -> list[str]:
    """`+short`: the rdata of each record, one a line."""
    return [r.rdata.to_text() for r in records]


#: dig's line when no reply came from any server.
NO_SERVERS = "connection timed out; no servers could be reached"


def timeout_text(server: tuple, tries: int, elapsed: float, tcp: bool) -> str:
    """What dig prints when every try timed out, with the tries and the total time."""
    return (f";; {NO_SERVERS}\n"
            f";; {tries} {'try' if tries == 1 else 'tries'} to {_endpoint(server)} "
            f"({'TCP' if tcp else 'UDP'}), {elapsed * 1000:.0f} msec in all")


def timeout_json(server: tuple, tries: int, elapsed: float, tcp: bool) -> dict:
    """The `--json` error object when every try timed out."""
    return {"error": NO_SERVERS, "server": _endpoint(server), "tcp": tcp, "tries": tries,
            "elapsed_ms": round(elapsed * 1000, 1)}
