"""Helpers shared by the benchmark scripts: processes, CPU pinning, /proc
readings, query files, percentiles and report output.

Only loopback is ever used. Every wait here is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

#: The repository root (benchmarks/ lives directly under it).
REPO = Path(__file__).resolve().parent.parent
#: Loopback only: a benchmark never sends anywhere else.
HOST = "127.0.0.1"
#: The server (or ceiling) runs on this core, the load generator on the other.
SERVER_CORE = 0
LOAD_CORE = 1
#: Longest wait for a daemon's "ready" line (a 1M-key compile takes ~1 min).
DAEMON_TIMEOUT = 600.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_LISTEN_RE = re.compile(r"listening on (\S+) \(udp")

if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO))


# -- machine ---------------------------------------------------------------------
def machine_info() -> dict:
    """Date, core count, CPU model, kernel and Python: the RESULTS.md header."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def usable_cores() -> set[int]:
    """Cores this process may run on."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def pin(core: int) -> bool:
    """Pin the calling process to `core` if the machine has it; True if pinned."""
    cores = usable_cores()
    if core not in cores or len(cores) < 2:
        return False
    os.sched_setaffinity(0, {core})
    return True


def pin_preexec(core: int):
    """A `preexec_fn` that pins the child to `core` (no-op on a 1-core machine)."""
    return lambda: pin(core)


# -- /proc -----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (e.g. `keyresolve serve --workers`'s workers)."""
    pids = [pid]
    for parent in pids:
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    pids += [int(child) for child in f.read().split()]
        except OSError:
            continue  # exited meanwhile
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` summed over `pid` and its living descendants."""
    total = 0.0
    for each in process_tree(pid):
        try:
            total += cpu_seconds(each)
        except OSError:
            continue
    return total


def memory(pid: int) -> dict:
    """VmRSS, VmHWM (peak RSS), RssAnon and RssFile of a process, in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


# -- daemons ---------------------------------------------------------------------
class Daemon:
    """A subprocess whose stderr is read line by line in a thread."""

    def __init__(self, cmd: list[str], *, core: int | None = None, cwd: Path | None = None,
                 env: dict | None = None) -> None:
        self.cmd = cmd
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env,
            preexec_fn=None if core is None else pin_preexec(core))
        self.lines: list[str] = []
        self.addresses: list[tuple[str, int]] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = DAEMON_TIMEOUT) -> re.Match:
        """Block until a log line matches `pattern`; raise on exit or timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no line matching {pattern!r} from {self.cmd}:\n{self.log}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.cmd} exited before {pattern!r}:\n{self.log}")
            self.lines.append(line)
            if m := _LISTEN_RE.search(line):
                host, _, port = m.group(1).rpartition(":")
                self.addresses.append((host.strip("[]"), int(port)))
            if match := regex.search(line):
                return match

    @property
    def log(self) -> str:
        return "\n".join(self.lines[-40:])

    @property
    def address(self) -> tuple[str, int]:
        return self.addresses[0]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait (then SIGKILL); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def drain(self, timeout: float = 30.0) -> list[str]:
        """After `stop`: the lines it wrote since the last `wait_for`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return self.lines

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def add_load_arguments(parser) -> None:
    """The load options of the throughput benchmarks (bench_auth, bench_resolver)."""
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--max-queries", type=int, default=5_000_000, help="count bound per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="zones, queries and data dirs (default: a temp dir)")
    parser.add_argument("--generator", choices=("auto", "dnsperf", "python"), default="auto")
    parser.add_argument("--window", type=int,
                        help="queries in flight (dnsperf: 200; loadgen.py: 64 per process)")
    parser.add_argument("--procs", type=int, default=1, help="loadgen.py processes")


def keyresolve_cmd(*args: str) -> list[str]:
    """`python -m keyresolve ARGS` with this interpreter."""
    return [sys.executable, "-m", "keyresolve", *args]


def write_serve_config(directory: Path, zone_file: Path, *, origin: str = "example.com",
                       data_dir: str = "data", port: int = 0, extra: str = "") -> Path:
    """A serve config for one zone on 127.0.0.1:`port` (and the top-level
    settings in `extra`); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "serve.toml"
    path.write_text(f'listen = ["{HOST}:{port}"]\ndata_dir = "{data_dir}"\n'
                    f'log_level = "info"\n{extra}\n[[zones]]\nname = "{origin}"\n'
                    f'file = "{Path(zone_file).resolve()}"\n')
    return path


def start_serve(config: Path, *, core: int | None = SERVER_CORE,
                timeout: float = DAEMON_TIMEOUT, args: tuple[str, ...] = ()) -> Daemon:
    """Start `keyresolve serve` (with more `args`) and wait for "ready"."""
    daemon = Daemon(keyresolve_cmd("serve", "--config", str(config), *args), core=core,
                    cwd=config.parent)
    try:
        daemon.wait_for(r"\bready\b", timeout)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def ceiling_cmd(response: bytes, *, duration: float = 600, max_packets: int = 50_000_000,
                loop: str = "plain", data_dir: Path | None = None,
                listen: str | None = None) -> list[str]:
    """The command line of benchmarks/ceiling.py answering `response` (on
    `listen`, host:port, if given; else a port of its choosing)."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "ceiling.py"), "--response-hex",
           response.hex(), "--duration", str(duration), "--max-packets", str(max_packets),
           "--loop", loop]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if listen is not None:
        cmd += ["--listen", listen]
    return cmd


def start_ceiling(response: bytes, *, core: int | None = SERVER_CORE, duration: float = 600,
                  max_packets: int = 50_000_000, loop: str = "plain",
                  data_dir: Path | None = None) -> Daemon:
    """Start benchmarks/ceiling.py answering `response`; wait for "ready"."""
    daemon = Daemon(ceiling_cmd(response, duration=duration, max_packets=max_packets,
                                loop=loop, data_dir=data_dir), core=core)
    try:
        daemon.wait_for(r"\bready\b", 30)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (for fixed-port configs)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise OSError("no free port")


# -- queries ---------------------------------------------------------------------
def read_names(path: Path, limit: int | None = None) -> list[str]:
    """Query names, one per line (genzone.py --names)."""
    names = []
    with open(path) as f:
        for line in f:
            if line.strip():
                names.append(line.strip())
                if limit is not None and len(names) >= limit:
                    break
    return names


def build_queries(names: list[str], rtype: str = "KEY") -> list[bytes]:
    """Wire queries (id 0) for `names`, built with the project's own codec."""
    from keyresolve.protocol.codes import RType
    from keyresolve.protocol.message import make_query
    from keyresolve.protocol.names import Name

    qtype = RType[rtype]
    return [make_query(Name.from_text(n), qtype, msg_id=0).to_wire() for n in names]


def write_query_file(path: Path, queries: list[bytes]) -> None:
    """Length-prefixed raw queries: the format of `dnsperf -B` and loadgen.py."""
    with open(path, "wb") as f:
        for q in queries:
            f.write(struct.pack(">H", len(q)))
            f.write(q)


def read_query_file(path: Path, limit: int | None = None) -> list[bytes]:
    """Inverse of `write_query_file`."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos + 2 <= len(data) and (limit is None or len(out) < limit):
        (length,) = struct.unpack_from(">H", data, pos)
        out.append(data[pos + 2:pos + 2 + length])
        pos += 2 + length
    return out


def udp_ask(address: tuple[str, int], query: bytes, timeout: float = 2.0) -> bytes | None:
    """One datagram exchange; None on timeout or refusal."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            sock.send(query)
            return sock.recv(65535)
        except OSError:
            return None


def rcode_of(reply: bytes) -> int:
    """The full rcode of a raw response (docs/protocol.md header)."""
    return (reply[5] << 4) | (reply[3] & 0xF) if len(reply) >= 6 else -1


# -- statistics and output ---------------------------------------------------------
def percentile(sorted_values, p: float) -> float | None:
    """The p-th percentile (0..100, nearest rank) of an ascending sequence."""
    if not sorted_values:
        return None
    n = len(sorted_values)
    k = max(0, min(n - 1, math.ceil(p / 100 * n) - 1))
    return sorted_values[k]


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, rounded; None if either is missing or base is 0."""
    if value is None or not base:
        return None
    return round(value / base, 3)


def emit(report: dict, json_path: str | None) -> None:
    """Print the report as indented JSON and write it to `json_path` if given."""
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")


def have_matplotlib() -> bool:
    """True if plots can be drawn (matplotlib is optional: the `bench` extra)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


# -- the code under test -------------------------------------------------------------
def use_source(src: str | Path | None) -> Path:
    """Benchmark the keyresolve tree at `src` (default: this repository).

    Puts it first on sys.path and on the PYTHONPATH of every child process,
    so two trees can be compared in one run, and writes its bytecode cache,
    as an installed package has it (pip compiles it on install): where
    PYTHONDONTWRITEBYTECODE is set, as on the benchmark machine, a checkout
    never writes it, and every daemon started, compile child included, would
    compile all of keyresolve's modules from source (~0.1 s here). Returns
    the tree's root.
    """
    import compileall

    root = Path(src).resolve() if src else REPO
    if not (root / "keyresolve" / "__init__.py").is_file():
        raise SystemExit(f"{root} holds no keyresolve package")
    if not compileall.compile_dir(str(root / "keyresolve"), quiet=1):
        raise SystemExit(f"cannot compile {root / 'keyresolve'}")
    sys.path.insert(0, str(root))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(root) + (os.pathsep + old if old else "")
    return root


def source_info(root: Path) -> dict:
    """Which code was measured: path, commit, and how many files differ from it."""
    info: dict = {"path": str(root), "bytecode_cache": "written before measuring (use_source)"}
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no", "--", "keyresolve"],
                               capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
            info["modified_files"] = len(dirty.stdout.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# -- zones -----------------------------------------------------------------------------
def ensure_zone(workdir: Path, keys: int, seed: int) -> tuple[Path, Path]:
    """The zone file and names file for (keys, seed), generated once per workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    zone = workdir / f"zone-{keys}-s{seed}.zone"
    names = workdir / f"names-{keys}-s{seed}.txt"
    if not (zone.is_file() and names.is_file()):
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "genzone.py"), str(keys),
                        "--seed", str(seed), "--out", str(zone), "--names", str(names)],
                       check=True, timeout=600)
    return zone, names


# -- profiles ---------------------------------------------------------------------------
def have_pyspy() -> str | None:
    """The py-spy executable, if installed."""
    import shutil

    return shutil.which("py-spy")


def profile_summary(collapsed: Path, stages: list[tuple[str, str]], *,
                    only: str | None = None, top: int = 15) -> dict:
    """Attribute py-spy samples (``--format raw``) to stages.

    `stages` are (regex on the function name, label). Each sample goes to the
    label of the deepest frame that matches one (so a stage's share excludes
    the stages it calls); samples matching none go to "other". With `only`,
    samples whose stack has no frame matching that regex are ignored (e.g.
    another thread). Also returns the functions with the most self samples,
    and the inclusive share of each regex in `stages`.
    """
    compiled = [(re.compile(rx), label) for rx, label in stages]
    only_rx = re.compile(only) if only else None
    counts: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    self_counts: dict[str, int] = {}
    total = 0
    with open(collapsed) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            frames = [fr.rsplit(" (", 1)[0] for fr in stack.split(";")]
            if only_rx and not any(only_rx.search(fr) for fr in frames):
                continue
            count = int(n)
            total += count
            label = "other"
            hit = set()
            for fr in frames:
                for rx, lab in compiled:
                    if rx.search(fr):
                        label = lab
                        hit.add(lab)
                        break
            counts[label] = counts.get(label, 0) + count
            for lab in hit:
                inclusive[lab] = inclusive.get(lab, 0) + count
            leaf = stack.split(";")[-1]
            self_counts[leaf] = self_counts.get(leaf, 0) + count
    pct = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "by_stage_pct": {k: pct(v) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])},
        "inclusive_pct": {k: pct(v) for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])},
        "top_self_pct": {k: pct(v) for k, v in
                         sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]},
    }


@contextlib.contextmanager
def workdir(path: str | None) -> Iterator[Path]:
    """The benchmark's work directory: `path` if given, else a temporary one
    removed afterwards."""
    if path:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="keyresolve-bench-") as tmp:
        yield Path(tmp)


def report_header(benchmark: str, root: Path, argv: list[str] | None, **fields) -> dict:
    """The fields every report starts with: what ran, where, from which tree."""
    return {"benchmark": benchmark, "machine": machine_info(), "source": source_info(root),
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), **fields}
