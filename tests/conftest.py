"""Shared fixtures: daemon subprocesses, blocking socket clients, zone builders."""

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

from keyresolve.message import MAX_MESSAGE, FrameReader, Message, frame

#: How long a daemon may take to become ready or to exit before a test fails.
DAEMON_TIMEOUT = 30.0
_LISTEN_RE = re.compile(r"listening on (\S+) \(udp, tcp\)")


def keyresolve_cmd(*args: str) -> list[str]:
    """The command line that runs the CLI from this checkout's interpreter."""
    return [sys.executable, "-m", "keyresolve", *args]


class Daemon:
    """A daemon subprocess; its stderr log is read line by line in a thread."""

    def __init__(self, args: list[str], cwd: Path, stdout: Path | None = None) -> None:
        with open(stdout or os.devnull, "w") as out:
            self.proc = subprocess.Popen(keyresolve_cmd(*args), cwd=cwd,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
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
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no log line matching {pattern!r}:\n" + self.log)
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
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

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
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
        while (line := self._queue.get(timeout=DAEMON_TIMEOUT)) is not None:
            self.lines.append(line)


@pytest.fixture
def start_daemon(tmp_path):
    """Start `keyresolve ARGS...`; wait for its 'ready' line; stop it at teardown.
    With `stdout=PATH` its standard output goes to that file."""
    daemons: list[Daemon] = []

    def start(*args: str, ready: str = r"\bready\b", cwd: Path | None = None,
              stdout: Path | None = None) -> Daemon:
        daemon = Daemon(list(args), cwd or tmp_path, stdout)
        daemons.append(daemon)
        daemon.wait_for(ready)
        return daemon

    yield start
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


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


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    """Tests never talk to anything but loopback."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield


os.environ.setdefault("PYTHONUNBUFFERED", "1")
