"""Shared fixtures: daemon subprocesses, blocking socket clients, zone builders.

Daemons a test starts with `start_daemon` are checked at its teardown, as
BIND's system tests check theirs: each still running gets SIGTERM, and the
test fails if one exited with another code than expected (0 unless
`expect_exit=` says otherwise; None accepts any), or if its log holds a
traceback or an ERROR/CRITICAL record that the test did not declare. To
declare one, pass `expect_errors=[regex, ...]` to `start_daemon`, or call
`daemon.expect_error(regex)`; a regex is searched in the record's first line
and covers the whole record (a traceback logged with it included).
"""

from __future__ import annotations

import base64
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keyresolve.protocol.message import MAX_MESSAGE, FrameReader, Message, frame

#: How long a daemon may take to become ready or to exit before a test fails.
DAEMON_TIMEOUT = 30.0
_LISTEN_RE = re.compile(r"listening on (\S+) \(udp, tcp\)")
#: The first line of a log record (cli.setup_logging's format): ISO 8601 time
#: with milliseconds and offset, then level; or a JSON record (log_format = "json").
_RECORD_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ([A-Z]+) "
                        r'|^\{"time": "[^"]*", "level": "([A-Z]+)"')
_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})


def keyresolve_cmd(*args: str) -> list[str]:
    """The command line that runs the CLI from this checkout's interpreter."""
    return [sys.executable, "-m", "keyresolve", *args]


class Daemon:
    """A daemon subprocess; its stderr log is read line by line in a thread."""

    def __init__(self, args: list[str], cwd: Path, stdout: Path | None = None, *,
                 expect_errors: list[str] = (), expect_exit: int | None = 0) -> None:
        #: Patterns of the ERROR records (and tracebacks) this daemon may log.
        self.expected_errors = [re.compile(p) for p in expect_errors]
        #: The exit code teardown accepts (None: any).
        self.expect_exit = expect_exit
        with open(stdout or os.devnull, "w") as out:
            self.proc = subprocess.Popen(keyresolve_cmd(*args), cwd=cwd,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._closed = False  # the end of stderr was read from the queue
        self._terminated = False
        threading.Thread(target=self._pump, daemon=True).start()
        self.addresses: list[tuple[str, int]] = []

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = DAEMON_TIMEOUT) -> re.Match:
        """Block until a log line matches `pattern`; fail on exit or timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            if self._closed:
                raise AssertionError(f"daemon exited before {pattern!r}:\n" + self.log)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no log line matching {pattern!r}:\n" + self.log)
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._closed = True
                raise AssertionError(f"daemon exited before {pattern!r}:\n" + self.log)
            self.lines.append(line)
            if m := _LISTEN_RE.search(line):
                host, _, port = m.group(1).rpartition(":")
                self.addresses.append((host.strip("[]"), int(port)))
            if match := regex.search(line):
                return match

    def wait_logged(self, pattern: str, timeout: float = DAEMON_TIMEOUT) -> re.Match:
        """As `wait_for`, but a line an earlier wait already read counts too:
        for events whose order against the others is not fixed."""
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match
        return self.wait_for(pattern, timeout)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def address(self) -> tuple[str, int]:
        return self.addresses[0]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def terminate(self) -> None:
        """SIGTERM, once (a second one would kill a daemon shutting down)."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        self.terminate()
        try:
            code = self.proc.wait(timeout=DAEMON_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not exit on SIGTERM:\n" + self.log) from None
        self._drain()
        return code

    def _drain(self) -> None:
        """Collect the log lines written before the process exited."""
        while not self._closed:
            line = self._queue.get(timeout=DAEMON_TIMEOUT)
            if line is None:
                self._closed = True
            else:
                self.lines.append(line)

    def expect_error(self, pattern: str) -> None:
        """Declare an ERROR record (or traceback) this daemon may log."""
        self.expected_errors.append(re.compile(pattern))

    def records(self) -> list[list[str]]:
        """The log lines read so far, grouped into records (a record's first
        line, then its continuation lines, a traceback's among them)."""
        records: list[list[str]] = []
        for line in self.lines:
            if not records or _RECORD_RE.match(line):
                records.append([line])
            else:
                records[-1].append(line)
        return records

    def unexpected_errors(self) -> list[str]:
        """The records with a traceback or at ERROR level that no declared
        pattern covers."""
        found = []
        for record in self.records():
            level = _RECORD_RE.match(record[0])
            bad = (level is not None and (level.group(1) or level.group(2)) in _ERROR_LEVELS
                   or any("Traceback (most recent call last)" in line for line in record))
            if bad and not any(p.search(record[0]) for p in self.expected_errors):
                found.append("\n".join(record))
        return found

    def finish(self) -> list[str]:
        """Teardown: SIGTERM if still running, collect the whole log; the
        problems found (see the module docstring)."""
        problems = []
        self.terminate()
        try:
            code = self.proc.wait(timeout=DAEMON_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            problems.append("did not exit on SIGTERM")
        try:
            self._drain()
        except queue.Empty:
            problems.append(f"its stderr stayed open {DAEMON_TIMEOUT:.0f} s after it exited "
                            "(a child process left running?)")
        if self.expect_exit is not None and code != self.expect_exit and not problems:
            problems.append(f"exited with code {code}, not {self.expect_exit}")
        problems += [f"logged:\n{record}" for record in self.unexpected_errors()]
        if not problems:
            return []
        name = " ".join(self.proc.args[3:]) if isinstance(self.proc.args, list) else ""
        return [f"daemon `{name}` (pid {self.proc.pid}): {problem}" for problem in problems]


@pytest.fixture
def start_daemon(tmp_path):
    """Start `keyresolve ARGS...`; wait for its 'ready' line; stop it at teardown.
    With `stdout=PATH` its standard output goes to that file."""
    daemons: list[Daemon] = []

    def start(*args: str, ready: str = r"\bready\b", cwd: Path | None = None,
              stdout: Path | None = None, expect_errors: list[str] = (),
              expect_exit: int | None = 0) -> Daemon:
        daemon = Daemon(list(args), cwd or tmp_path, stdout, expect_errors=expect_errors,
                        expect_exit=expect_exit)
        daemons.append(daemon)
        daemon.wait_for(ready)
        return daemon

    yield start
    for daemon in daemons:  # all stop at once; then each is waited for
        daemon.terminate()
    problems = [problem for daemon in daemons for problem in daemon.finish()]
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def udp_exchange(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send a datagram and return the reply (real socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.send(data)
        return sock.recv(MAX_MESSAGE)


def udp_no_reply(address: tuple[str, int], data: bytes, then: bytes) -> bytes:
    """Send `data`, then `then`; return the first reply, which must answer `then`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        sock.connect(address)
        sock.send(data)
        sock.send(then)
        return sock.recv(MAX_MESSAGE)


def tcp_exchange(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send one framed message over a new connection; return the reply."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(frame(data))
        return tcp_read(sock)


def tcp_read(sock: socket.socket, reader: FrameReader | None = None) -> bytes:
    """Read one framed message from a blocking socket. To read several from
    one socket, pass the same `reader` each time: one read may bring more
    than a message, and the rest stays in the reader."""
    reader = FrameReader() if reader is None else reader
    while (message := reader.next_frame()) is None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        reader.receive_data(chunk)
    return message


def ask(address, message: Message, tcp: bool = False) -> Message:
    """Query a live server; return the decoded reply."""
    exchange = tcp_exchange if tcp else udp_exchange
    return Message.from_wire(exchange(address, message.to_wire()))


def b64key(seed: int, length: int = 32) -> str:
    """Deterministic key bytes for test zones."""
    return base64.b64encode(bytes((seed + i) % 256 for i in range(length))).decode()


def write_serve_config(directory: Path, zones: dict[str, str], *, listen: str = "127.0.0.1:0",
                       extra: str = "") -> Path:
    """Write zone files and a serve config into `directory`; return the config path."""
    lines = [f'listen = ["{listen}"]', 'data_dir = "data"', extra]
    for name, text in zones.items():
        filename = f"{name.strip('.') or 'root'}.zone"
        (directory / filename).write_text(text)
        lines += ["[[zones]]", f'name = "{name}"', f'file = "{filename}"']
    path = directory / "serve.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def compiler_pids(data_dir: Path) -> list[int]:
    """Live `keyresolve.daemons.compiler` children compiling into `data_dir`."""
    wanted = data_dir.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
            cwd = os.readlink(entry / "cwd")
        except (OSError, UnicodeDecodeError):
            continue  # gone, or not ours
        if "keyresolve.daemons.compiler" in argv:
            at = argv.index("keyresolve.daemons.compiler") + 1
            if at < len(argv) and (Path(cwd) / argv[at]).resolve() == wanted:
                found.append(int(entry.name))
    return found


def waiting_for_lmdb_lock(pid: int) -> bool:
    """Whether process `pid` has an LMDB environment open and sleeps on a
    futex (LMDB's write mutex): a compile child blocked on a held write lock."""
    try:
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return any(fd.endswith("/lock.mdb") for fd in fds) and "futex" in wchan


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    """Tests never talk to anything but loopback."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield


os.environ.setdefault("PYTHONUNBUFFERED", "1")


@pytest.fixture(autouse=True)
def _no_user_client_config(monkeypatch, tmp_path_factory):
    """`keyresolve dig` in tests never reads the developer's ~/.config/keyresolve/client.toml."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))


# -- a real SMTP server (aiosmtpd; tests/smtp.py) ---------------------------------

@pytest.fixture
def smtp_server():
    """A started `tests.smtp.SmtpServer` on 127.0.0.1 (stopped at teardown)."""
    from tests.smtp import SmtpServer

    server = SmtpServer()
    server.start()
    yield server
    server.stop()
