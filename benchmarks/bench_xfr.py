#!/usr/bin/env python3
"""Zone transfer benchmarks: a full transfer of an N-key zone, and one
changed key reaching the secondary.

    python benchmarks/bench_xfr.py --keys 1000000 --changes 1 --json xfr.json

A primary and a secondary `keyresolve serve` for example.com on pre-picked
loopback ports, with an HMAC transfer key, `notify` and `allow_transfer`
(docs/operations.md, "Replication"). The zone is genzone.py's, copied so it
can be edited.

1. Compile: the primary starts on a fresh data directory and compiles the
   zone; its logged compile time is the baseline of the full transfer. It is
   then restarted on the compiled store, so its memory before the transfer
   is that of a server answering, not of one that just compiled.
2. Full transfer: the secondary starts on an empty data directory; the time
   from its process start to its "transfer in ... full" log line, against
   the compile time (goal <= 2x). Memory of both sides (/proc/PID/status)
   before and after: growth of the peak (VmHWM) and of the anonymous memory
   (goal <= 100 MB each). A sample of names is then asked of both servers:
   the answers must be identical.
3. One changed key (--changes times): the zone file gets a new key and a
   bumped serial, the primary a SIGHUP; from its "reload done" line (seen by
   this process) the secondary is probed every millisecond until it answers
   the new key (goal <= 100 ms). The reload time itself is reported too, and
   the log timestamps of both daemons; and, from the SIGHUP to "reload
   done", how long the primary's answers to an existing name took
   (`primary_answers_during_reload`: one probe at a time, every millisecond).

Baselines measured in the same run: the compile time (for 1), and the same
procedure on a --baseline-keys zone (for 3: how the propagation time grows
with the zone). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import re
import secrets
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import HOST, LOAD_CORE, SERVER_CORE, Daemon, memory, ratio  # noqa: E402

#: Goals of the issue "bench".
GOAL_TRANSFER_RATIO = 2.0
GOAL_RSS_GROWTH_MB = 100
GOAL_PROPAGATION_MS = 100
#: Transfer key shared by the pair (a fixed, throwaway secret).
SECRET = base64.b64encode(bytes(range(32))).decode()
#: Longest wait for a compile, a full transfer or a reload (1M keys: ~30 s each).
LONG_TIMEOUT = 900.0
#: Longest a change may take to reach the secondary before the run fails.
PROPAGATION_TIMEOUT = 60.0
#: Time between two probes of the secondary: the resolution of the figure.
PROBE_INTERVAL = 0.001
#: Names asked of both servers after the full transfer.
CHECK_SAMPLE = 200
_SOA_RE = re.compile(r"^(@ SOA \S+ \S+ )(\d+)", re.MULTILINE)
_TRANSFER_RE = (r"transfer in example\.com\. .*: {kind}, serial (\S+) -> (\d+), (\d+) records, "
                r"(\d+) messages, (\d+) bytes, ([\d.]+) s")
_LOADED_RE = r"zone example\.com\. loaded: serial (\d+), (\d+) records in ([\d.]+) s"


class TimedDaemon(Daemon):
    """A Daemon that notes when each log line reached this process."""

    def __init__(self, *args, **kwargs) -> None:
        self.arrived: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.arrived[line] = time.perf_counter()
            self._queue.put(line)
        self._queue.put(None)

    def wait_timed(self, pattern: str, timeout: float = LONG_TIMEOUT) -> tuple[re.Match, float]:
        """wait_for, and the perf_counter time at which the line arrived."""
        match = self.wait_for(pattern, timeout)
        return match, self.arrived.get(match.string, time.perf_counter())

    def since(self, start: float) -> list[str]:
        """Every log line that arrived after perf_counter time `start` (so far)."""
        return [line for line, t in list(self.arrived.items()) if t >= start]


def log_time(line: str) -> float | None:
    """The daemon's own timestamp of a log line (ISO 8601, ms, offset), as epoch seconds."""
    try:
        return datetime.datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
    except ValueError:
        return None


def _transfer_info(match: re.Match) -> dict:
    return {"serials": f"{match.group(1)} -> {match.group(2)}", "records": int(match.group(3)),
            "messages": int(match.group(4)), "bytes": int(match.group(5)),
            "logged_s": float(match.group(6))}


def data_mb(directory: Path) -> float:
    """Disk use of an LMDB data directory (blocks actually allocated), in MB."""
    return round(sum(f.stat().st_blocks * 512 for f in directory.glob("*")) / 2**20, 1)


def _growth(before: dict, after: dict) -> dict:
    """Peak and anonymous growth between two memory() readings, in MB."""
    return {"peak_mb": round(after["VmHWM"] - before["VmRSS"], 1),
            "anon_mb": round(after.get("RssAnon", 0) - before.get("RssAnon", 0), 1),
            "file_mb": round(after.get("RssFile", 0) - before.get("RssFile", 0), 1)}


class Pair:
    """A primary and a secondary for example.com on pre-picked ports."""

    def __init__(self, base: Path, zone_source: Path) -> None:
        self.base = base
        shutil.rmtree(base, ignore_errors=True)
        self.pdir, self.sdir = base / "primary", base / "secondary"
        self.pdir.mkdir(parents=True)
        self.sdir.mkdir(parents=True)
        self.zone = self.pdir / "example.com.zone"
        shutil.copyfile(zone_source, self.zone)
        self.pport, self.sport = common.free_port(), common.free_port()
        keys = f'[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
        common_cfg = 'data_dir = "data"\nlog_level = "info"\n' + keys
        (self.pdir / "serve.toml").write_text(
            f'listen = ["{HOST}:{self.pport}"]\n{common_cfg}'
            f'[[zones]]\nname = "example.com"\nfile = "example.com.zone"\n'
            f'allow_transfer = ["xfer"]\nkey = "xfer"\nnotify = ["{HOST}:{self.sport}"]\n')
        (self.sdir / "serve.toml").write_text(
            f'listen = ["{HOST}:{self.sport}"]\n{common_cfg}'
            f'[[zones]]\nname = "example.com"\nprimaries = ["{HOST}:{self.pport}"]\n'
            f'key = "xfer"\n')
        self.primary: TimedDaemon | None = None
        self.secondary: TimedDaemon | None = None

    def start(self, side: str, core: int) -> TimedDaemon:
        directory = self.pdir if side == "primary" else self.sdir
        daemon = TimedDaemon(common.keyresolve_cmd("serve", "--config",
                                                   str(directory / "serve.toml")),
                             core=core, cwd=directory)
        setattr(self, side, daemon)
        return daemon

    def stop(self) -> None:
        for daemon in (self.secondary, self.primary):
            if daemon is not None:
                daemon.stop()

    def add_key(self, local: str) -> int:
        """Bump the zone's serial and add one KEY at `local`@; the new serial."""
        text = self.zone.read_text()
        m = _SOA_RE.search(text)
        if m is None:
            raise RuntimeError(f"{self.zone}: no '@ SOA' line (genzone.py changed?)")
        serial = int(m.group(2)) + 1
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        text = f"{text[:m.start(2)]}{serial}{text[m.end(2):]}"
        if not text.endswith("\n"):
            text += "\n"
        text += f"{local}@ KEY x25519 encrypt {key}\n"
        tmp = self.zone.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.zone)  # the primary never reads a half-written file
        return serial


def _query(name: str) -> bytes:
    from keyresolve.protocol.codes import RType
    from keyresolve.protocol.message import make_query
    from keyresolve.protocol.names import Name

    return make_query(Name.from_text(name), RType.KEY, msg_id=0).to_wire()


def _ask(sock: socket.socket, address, query: bytes) -> bytes | None:
    msg_id = secrets.token_bytes(2)
    sock.sendto(msg_id + query[2:], address)
    try:
        while True:
            data, peer = sock.recvfrom(65535)
            if data[:2] == msg_id and peer[:2] == address:
                return data
    except OSError:
        return None


#: Most probes of the primary while it reloads (bounds the loop: a minute
#: or more at one per PROBE_INTERVAL).
MAX_RELOAD_PROBES = 60_000


class ReloadProbe:
    """Asks the primary an existing name every PROBE_INTERVAL while it
    reloads, one at a time: how long its answers wait for the reload (a
    single-process server answers from the thread the compile shares)."""

    def __init__(self, address, query: bytes) -> None:
        self.address = address
        self.query = query
        self.latencies: list[float] = []  # seconds; timeouts count as 2 s
        self.lost = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReloadProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            while not self._stop.is_set() and len(self.latencies) < MAX_RELOAD_PROBES:
                sent = time.perf_counter()
                if _ask(sock, self.address, self.query) is None:
                    self.lost += 1
                    self.latencies.append(2.0)
                else:
                    self.latencies.append(time.perf_counter() - sent)
                time.sleep(PROBE_INTERVAL)

    def report(self) -> dict:
        values = sorted(self.latencies)
        def ms(v):
            return None if v is None else round(v * 1000, 2)

        return {"probes": len(values), "lost": self.lost,
                "p50_ms": ms(common.percentile(values, 50)),
                "p99_ms": ms(common.percentile(values, 99)),
                "max_ms": ms(values[-1] if values else None),
                "over_50ms": sum(1 for v in values if v > 0.05)}


def compare_answers(pair: Pair, names: list[str]) -> dict:
    """Ask both servers the same names: identical replies (the id aside)?"""
    differ = 0
    rcodes: dict[str, int] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        for n in names:
            q = _query(n)
            a = _ask(sock, (HOST, pair.pport), q)
            b = _ask(sock, (HOST, pair.sport), q)
            if a is None or b is None or a[2:] != b[2:]:
                differ += 1
            key = "timeout" if b is None else str(common.rcode_of(b))
            rcodes[key] = rcodes.get(key, 0) + 1
    return {"names": len(names), "differ": differ, "secondary_rcodes": rcodes}


def wait_answer(address, query: bytes, deadline: float) -> tuple[float, int]:
    """Probe every PROBE_INTERVAL until a NOERROR reply with an answer; its
    perf_counter time and the number of probes. Raises at `deadline`."""
    probes = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        while time.perf_counter() < deadline:
            probes += 1
            reply = _ask(sock, address, query)
            now = time.perf_counter()
            # NOERROR alone would also match NODATA: decode for the answer
            if reply is not None and common.rcode_of(reply) == 0 and _has_answer(reply):
                return now, probes
            time.sleep(PROBE_INTERVAL)
    raise RuntimeError(f"the secondary did not answer the new key within {PROPAGATION_TIMEOUT} s")


def _has_answer(reply: bytes) -> bool:
    from keyresolve.protocol.message import Message

    return bool(Message.from_wire(reply).answer)


def run_pair(keys: int, args, workdir: Path, label: str) -> dict:
    """Every scenario on one `keys`-key zone."""
    zone, names_file = common.ensure_zone(workdir, keys, args.seed)
    pair = Pair(workdir / f"xfr-{label}", zone)
    out: dict = {"keys": keys}
    try:
        # 1. the compile, and the primary restarted on the compiled store
        primary = pair.start("primary", SERVER_CORE)
        t0 = primary.started
        m, _ = primary.wait_timed(_LOADED_RE)
        primary.wait_for(r"\bready\b", LONG_TIMEOUT)
        out["compile"] = {"records": int(m.group(2)), "logged_s": float(m.group(3)),
                          "start_to_ready_s": round(time.perf_counter() - t0, 3),
                          "primary_peak_rss_mb": memory(primary.pid).get("VmHWM")}
        primary.stop()
        primary = pair.start("primary", SERVER_CORE)
        primary.wait_for(r"\bready\b", LONG_TIMEOUT)
        p_before = memory(primary.pid)
        # 2. full transfer into an empty secondary
        secondary = pair.start("secondary", LOAD_CORE)
        secondary.wait_for(r"listening on ", 60)
        s_before = memory(secondary.pid)  # imports done; the transfer starts now
        m, arrived = secondary.wait_timed(_TRANSFER_RE.format(kind="full"))
        took = arrived - secondary.started
        s_after, p_after = memory(secondary.pid), memory(primary.pid)
        out_line = primary.wait_for(r"transfer out example\.com\. .*full.*", 60).string
        compile_s = out["compile"]["logged_s"]
        full = {"secondary_start_to_transferred_s": round(took, 3), **_transfer_info(m),
                "compile_s": compile_s, "ratio_to_compile": ratio(took, compile_s),
                "goal": f"<= {GOAL_TRANSFER_RATIO} x compile",
                "primary_log": out_line.split(": ", 1)[-1],
                "primary_mb": {"before": p_before, "after": p_after,
                               "growth": _growth(p_before, p_after)},
                "secondary_mb": {"at_start": s_before, "after": s_after,
                                 "growth": _growth(s_before, s_after)}}
        full["met_time"] = full["ratio_to_compile"] <= GOAL_TRANSFER_RATIO
        full["met_rss"] = max(full["primary_mb"]["growth"]["peak_mb"],
                              full["secondary_mb"]["growth"]["peak_mb"]) <= GOAL_RSS_GROWTH_MB
        full["log"] = {"primary": primary.since(primary.started),
                       "secondary": secondary.since(secondary.started)}
        full["data_mb"] = {"primary": data_mb(pair.pdir / "data"),
                           "secondary": data_mb(pair.sdir / "data")}
        names = common.read_names(names_file, CHECK_SAMPLE)
        full["answers_compared"] = compare_answers(pair, names)
        out["full_transfer"] = full
        # 3. one changed key, --changes times
        changes = []
        for i in range(args.changes):
            local = f"bench-change-{i}-{secrets.token_hex(3)}"
            serial = pair.add_key(local)
            query = _query(f"{local}@example.com.")
            with ReloadProbe((HOST, pair.pport), _query(names[0])) as probe:
                hup = time.perf_counter()
                primary.proc.send_signal(signal.SIGHUP)
                loaded, _ = primary.wait_timed(_LOADED_RE, LONG_TIMEOUT)
                done, done_at = primary.wait_timed(r"reload done", LONG_TIMEOUT)
            seen, probes = wait_answer((HOST, pair.sport), query, done_at + PROPAGATION_TIMEOUT)
            m, _ = secondary.wait_timed(_TRANSFER_RE.format(kind=r"\w+"), 60)
            primary.wait_for(r"transfer out example\.com\. ", 60)
            p_log = log_time(done.string)
            s_log = log_time(m.string)
            changes.append({
                "serial": serial, "kind": m.string.split(": ")[-1].split(",")[0],
                "reload_s": round(done_at - hup, 3), "compile_logged_s": float(loaded.group(3)),
                "propagation_ms": round((seen - done_at) * 1000, 1),
                "propagation_from_sighup_ms": round((seen - hup) * 1000, 1),
                "probes": probes,
                "primary_answers_during_reload": probe.report(),
                "logged_transfer": _transfer_info(m),
                "log_reload_done_to_transfer_in_ms": (None if None in (p_log, s_log)
                                                      else round((s_log - p_log) * 1000)),
                "primary_peak_rss_mb": memory(primary.pid).get("VmHWM"),
                "log": {"primary": primary.since(hup), "secondary": secondary.since(hup)}})
        prop = sorted(c["propagation_ms"] for c in changes)
        out["change"] = {"runs": changes,
                         "propagation_ms_median": statistics.median(prop) if prop else None,
                         "propagation_ms_max": prop[-1] if prop else None,
                         "reload_s_median": (statistics.median(c["reload_s"] for c in changes)
                                             if changes else None),
                         "goal": f"<= {GOAL_PROPAGATION_MS} ms after the reload"}
        out["change"]["met"] = bool(prop) and prop[-1] <= GOAL_PROPAGATION_MS
        out["secondary_rss_end_mb"] = memory(secondary.pid)
    finally:
        pair.stop()
        if not args.keep:
            shutil.rmtree(pair.base, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="zone size")
    parser.add_argument("--baseline-keys", type=int, default=100,
                        help="zone size of the same-run baseline of the change scenario")
    parser.add_argument("--changes", type=int, default=3, help="one-key changes timed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="zones and data dirs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--src", help="keyresolve tree to measure (default: this repo)")
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    if args.changes < 1:
        parser.error("--changes must be at least 1")
    root = common.use_source(args.src)
    report = common.report_header("xfr", root, argv,
                                  cores={"primary": SERVER_CORE, "secondary": LOAD_CORE})
    started = time.perf_counter()
    with common.workdir(args.workdir) as workdir:
        base = run_pair(args.baseline_keys, args, workdir, "baseline")
        main_run = run_pair(args.keys, args, workdir, "main")
    change = main_run["change"]
    change["baseline_keys"] = args.baseline_keys
    change["baseline_propagation_ms_median"] = base["change"]["propagation_ms_median"]
    change["ratio_to_baseline"] = ratio(change["propagation_ms_median"],
                                        base["change"]["propagation_ms_median"])
    report["main"] = main_run
    report["baseline"] = base
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    common.emit(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
