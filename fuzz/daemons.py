"""Daemon subprocesses on loopback, blocking socket clients, and the
known-good checks every live driver runs between its hostile batches.

(tests/conftest.py has the test suite's own version; fuzz/ does not import
tests/.)
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Rcode, RType, rcode_to_text
from keyresolve.protocol.message import MAX_MESSAGE, FrameReader, Message, frame, make_query
from keyresolve.protocol.names import Name

#: Longest a daemon may take to start, or to exit after SIGTERM.
DAEMON_TIMEOUT = 30.0
#: Seconds a known-good query may take (per try) before it counts as lost.
CHECK_TIMEOUT = 2.0
#: Tries of a known-good query over UDP before the daemon counts as not
#: answering (a datagram may be dropped under load, or rate-limited).
CHECK_TRIES = 3
#: Seconds a daemon that failed a known-good check is watched for recovery.
RECOVERY_WAIT = 5.0
#: The address known-good checks come from; hostile traffic comes from
#: HOSTILE_SOURCES, other loopback addresses, so that a per-address limit
#: on the attacker does not hit the checks (all of 127/8 is loopback).
CHECK_SOURCE = "127.0.0.1"
HOSTILE_SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
#: Where the daemons listen.
LOOPBACK = "127.0.0.1"
_LISTEN_RE = re.compile(r"listening on (\S+) \(udp, tcp\)")

SECRET = bytes(range(32))
#: The HMAC keys every driver's server is configured with.
XFER = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", SECRET)
OPS = tsig.SharedKey(Name.from_text("ops."), "hmac-sha512", bytes(range(1, 65)))
KEYS_TOML = "".join(
    f'[keys.{k.name.to_text().rstrip(".")}]\nalgorithm = "{k.algorithm}"\n'
    f'secret = "{base64.b64encode(k.secret).decode()}"\n' for k in (XFER, OPS))


#: The hostile sources are loopback addresses too: a message bit-flipped into an
#: unsigned `ctl stop` must not be obeyed, so control messages must be signed
#: (with `ops`: the valid ones among the signed queries are obeyed).
CONTROL_TOML = 'control_loopback = false\ncontrol_keys = ["ops"]\n'


def b64key(seed: int, length: int = 32) -> str:
    """Deterministic public-key bytes for the zones, base64."""
    return base64.b64encode(key_bytes(seed, length)).decode()


def key_bytes(seed: int, length: int = 32) -> bytes:
    return bytes((seed + i) % 256 for i in range(length))


class Daemon:
    """A `keyresolve` subprocess; its stderr log is read line by line in a thread."""

    def __init__(self, label: str, args: list[str], cwd: Path) -> None:
        self.label = label
        self.args = args
        self.cwd = cwd
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env.pop(var, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "keyresolve", *args], cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     errors="replace")
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self._closed = False
        self.addresses: list[tuple[str, int]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            with self._new:
                self.lines.append(line)
                if m := _LISTEN_RE.search(line):
                    host, _, port = m.group(1).rpartition(":")
                    self.addresses.append((host.strip("[]"), int(port)))
                self._new.notify_all()
        with self._new:
            self._closed = True
            self._new.notify_all()

    def wait_for(self, pattern: str, timeout: float = DAEMON_TIMEOUT, start: int = 0) -> int:
        """Block until a log line from number `start` on matches `pattern`;
        return the number after it. Raises DaemonError on exit or timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._new:
            at = start
            while True:
                while at < len(self.lines):
                    at += 1
                    if regex.search(self.lines[at - 1]):
                        return at
                if self._closed:
                    raise DaemonError(f"{self.label} exited before logging {pattern!r}"
                                      + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DaemonError(f"{self.label}: no log line {pattern!r} in {timeout:g} s"
                                      + self.tail())
                self._new.wait(left)

    def tail(self, lines: int = 15) -> str:
        return "\n" + "\n".join(self.lines[-lines:])

    @property
    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    @property
    def address(self) -> tuple[str, int]:
        return self.addresses[0]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tracebacks(self) -> list[str]:
        """The first lines of each traceback (or logged exception) so far."""
        with self._lock:
            found = []
            for i, line in enumerate(self.lines):
                if line.startswith("Traceback (most recent call last)"):
                    found.append(" | ".join(
                        [self.lines[i - 1] if i else ""]
                        + [x for x in self.lines[i + 1:i + 40] if not x.startswith(" ")][:1]))
            return found

    def problem(self) -> str | None:
        """'died ...' or 'logged a traceback ...', or None if healthy."""
        code = self.proc.poll()
        if code is not None:
            return f"{self.label} died (exit {code})" + _last_line(self)
        tracebacks = self.tracebacks()
        if tracebacks:
            return f"{self.label} logged a traceback: {tracebacks[0]}"
        return None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int | None:
        """SIGTERM, then wait (SIGKILL after DAEMON_TIMEOUT); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DAEMON_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, and wait for it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _last_line(daemon: Daemon) -> str:
    """The last log line that says something (an exception's own line, not
    the frames or the borders of an exception group)."""
    lines = [x.strip(" |") for x in daemon.lines[-60:]]
    lines = [x for x in lines if x and not x.startswith(("+", "File ", "^", "~"))
             and not x.startswith("Traceback")]
    return f"; last log line: {lines[-1][:200]}" if lines else ""


class DaemonError(Exception):
    """A daemon did not start, or left before it should have."""


def start(label: str, args: list[str], cwd: Path, ready: str = r"\bready\b") -> Daemon:
    """Start `keyresolve ARGS...` in `cwd` and wait for its ready line."""
    daemon = Daemon(label, args, cwd)
    try:
        daemon.wait_for(ready)
    except DaemonError:
        daemon.kill()
        raise
    return daemon


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise DaemonError("no free port")


# -- the zones and daemons the live drivers share ---------------------------------
#: Mailboxes of the example. zone, each with its key seed.
MAILBOXES = {f"user{i}": 10 + i for i in range(20)} | {"alice": 1}
GOOD_NAME = Name.from_text("alice@example.")
PRIVATE_NAME = Name.from_text("alice@private.")


def root_zone(port: int) -> str:
    return (f"$ORIGIN .\n$TTL 60\n@ SOA a.root. hostmaster@root. 1 60 60 600 60\n"
            f"@ NS a.root.\na.root. ADDR {LOOPBACK}:{port}\n"
            f"example. NS ns1.example.\nns1.example. ADDR {LOOPBACK}:{port}\n"
            f"private. NS ns1.private.\nns1.private. ADDR {LOOPBACK}:{port}\n")


def example_zone(port: int, origin: str = "example.") -> str:
    lines = [f"$ORIGIN {origin}", "$TTL 60", "@ SOA ns1 hostmaster@ 1 60 60 600 60", "@ NS ns1",
             f"ns1 ADDR {LOOPBACK}:{port}", "team@ ALIAS alice@",
             f"alice@ KEY ed25519 sign {b64key(2)}",
             "sub NS ns1.sub", f"ns1.sub ADDR {LOOPBACK}:9"]
    lines += [f"{m}@ KEY x25519 encrypt {b64key(seed)}" for m, seed in MAILBOXES.items()]
    return "\n".join(lines) + "\n"


class Servers:
    """An authoritative server (zones ., example., and private., which
    requires signed queries; keys xfer and ops) and, if asked, a resolver
    whose root hints point at it: the targets of the udp, tcp and hmac
    drivers. A context manager that stops them."""

    def __init__(self, directory: Path, *, resolver: bool = True, extra: str = "") -> None:
        self.directory = directory
        self.daemons: list[Daemon] = []
        auth_dir = directory / "serve"
        auth_dir.mkdir(parents=True)
        port = free_port()
        (auth_dir / "root.zone").write_text(root_zone(port))
        (auth_dir / "example.zone").write_text(example_zone(port))
        (auth_dir / "private.zone").write_text(example_zone(port, "private."))
        (auth_dir / "serve.toml").write_text(
            f'listen = ["{LOOPBACK}:{port}"]\ndata_dir = "data"\n{CONTROL_TOML}{extra}\n'
            f'{KEYS_TOML}'
            f'[[zones]]\nname = "."\nfile = "root.zone"\n'
            f'[[zones]]\nname = "example"\nfile = "example.zone"\n'
            f'allow_transfer = ["xfer"]\n'
            f'[[zones]]\nname = "private"\nfile = "private.zone"\nrequire_signed = true\n')
        self.serve = self._start("serve", ["serve", "--config", "serve.toml"], auth_dir)
        self.resolver: Daemon | None = None
        if resolver:
            res_dir = directory / "resolver"
            res_dir.mkdir()
            (res_dir / "root.hints").write_text(
                f"$ORIGIN .\n$TTL 3600\n. NS a.root.\na.root. ADDR {LOOPBACK}:{port}\n")
            (res_dir / "resolver.toml").write_text(
                f'listen = ["{LOOPBACK}:0"]\nroot_hints = "root.hints"\n{CONTROL_TOML}'
                f'{KEYS_TOML}')
            self.resolver = self._start("resolver", ["resolver", "--config", "resolver.toml"],
                                        res_dir)

    def _start(self, label: str, args: list[str], cwd: Path) -> Daemon:
        daemon = start(label, args, cwd)
        self.daemons.append(daemon)
        return daemon

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for daemon in self.daemons:
            daemon.stop()

    def log_tails(self, lines: int = 80) -> dict[str, list[str]]:
        """The last lines of each daemon's log, for a reproducer."""
        return {d.label: d.lines[-lines:] for d in self.daemons}

    def problems(self) -> list[str]:
        """What is wrong with any daemon now (dead, traceback)."""
        return [p for d in self.daemons if (p := d.problem()) is not None]

    def check(self, *, tcp: bool = True) -> list[str]:
        """The known-good checks: alice@example. KEY answered right by the
        server (UDP, and TCP if `tcp`) and by the resolver. Returns what
        failed, each as one line."""
        failed = []
        for daemon, rd in ((self.serve, False), (self.resolver, True)):
            if daemon is None or not daemon.alive():
                continue
            for over_tcp in ((False, True) if tcp else (False,)):
                error = check_answer(daemon.address, rd=rd, tcp=over_tcp)
                if error:
                    try:  # a daemon dying as it was asked: say so
                        daemon.proc.wait(timeout=1.0)
                    except subprocess.TimeoutExpired:
                        pass
                    if (problem := daemon.problem()) is not None:
                        failed.append(problem)
                        break
                    error += recovery(daemon.address, rd=rd, tcp=over_tcp)
                    failed.append(f"{daemon.label} no longer answers the known-good query "
                                  f"over {'TCP' if over_tcp else 'UDP'}: {error}")
        return failed


def recovery(address: tuple[str, int], *, rd: bool, tcp: bool) -> str:
    """Whether a daemon that failed the known-good check answers it again
    within RECOVERY_WAIT seconds (for the finding's line)."""
    began = time.monotonic()
    while time.monotonic() - began < RECOVERY_WAIT:
        time.sleep(0.5)
        if check_answer(address, rd=rd, tcp=tcp) is None:
            return f" (answers again after {time.monotonic() - began:.1f} s)"
    return f" (still failing after {RECOVERY_WAIT:g} s)"


def good_query(rd: bool = False) -> Message:
    return make_query(GOOD_NAME, RType.KEY, rd=rd)


def check_answer(address: tuple[str, int], *, rd: bool = False, tcp: bool = False,
                 source: str = CHECK_SOURCE) -> str | None:
    """None if alice@example. KEY gets its two keys (NOERROR); else why not.
    UDP tries CHECK_TRIES times; a TC reply is retried over TCP."""
    query = good_query(rd)
    try:
        if tcp:
            reply = Message.from_wire(tcp_exchange(address, query.to_wire(), source=source))
        else:
            reply = None
            for _ in range(CHECK_TRIES):
                try:
                    reply = Message.from_wire(udp_exchange(address, query.to_wire(),
                                                           source=source))
                    break
                except TimeoutError:
                    continue
            if reply is None:
                return f"no UDP reply in {CHECK_TRIES} tries of {CHECK_TIMEOUT:g} s"
            if reply.tc:
                reply = Message.from_wire(tcp_exchange(address, query.to_wire(),
                                                       source=source))
    except (OSError, ConnectionError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    except Exception as exc:  # an undecodable reply
        return f"bad reply: {exc.__class__.__name__}: {exc}"
    if reply.id != query.id:
        return f"reply id {reply.id} is not the query's {query.id}"
    if reply.rcode != Rcode.NOERROR:
        return f"rcode {rcode_to_text(reply.rcode)}"
    keys = sorted(r.rdata.key for r in reply.answer if r.rtype == RType.KEY)
    want = sorted([key_bytes(2), key_bytes(MAILBOXES["alice"])])
    if keys != want:
        return f"wrong answer: {[r.to_text() for r in reply.answer]}"
    return None


def udp_socket(source: str = CHECK_SOURCE) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    return sock


def udp_exchange(address: tuple[str, int], data: bytes, *, source: str = CHECK_SOURCE,
                 timeout: float = CHECK_TIMEOUT) -> bytes:
    """Send a datagram; return the reply to it (other datagrams are skipped)."""
    with udp_socket(source) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.send(data)
        deadline = time.monotonic() + timeout
        while True:
            reply = sock.recv(MAX_MESSAGE)
            if reply[:2] == data[:2] or time.monotonic() > deadline:
                return reply


def tcp_connect(address: tuple[str, int], *, source: str = CHECK_SOURCE,
                timeout: float = CHECK_TIMEOUT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def tcp_exchange(address: tuple[str, int], data: bytes, *, source: str = CHECK_SOURCE,
                 timeout: float = CHECK_TIMEOUT) -> bytes:
    """Send one framed message over a new connection; return the reply."""
    with tcp_connect(address, source=source, timeout=timeout) as sock:
        sock.sendall(frame(data))
        return tcp_read(sock)


def tcp_read(sock: socket.socket, reader: FrameReader | None = None) -> bytes:
    """Read one framed message (pass the same `reader` to read several)."""
    reader = FrameReader() if reader is None else reader
    while (message := reader.next_frame()) is None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        reader.receive_data(chunk)
    return message


def process_pids(marker: str, cwd: Path) -> list[int]:
    """Live processes whose command line holds `marker` and whose working
    directory is `cwd` (the children of daemons this run started)."""
    found = []
    wanted = str(cwd.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            where = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in argv and where == wanted:
            found.append(int(entry.name))
    return found
