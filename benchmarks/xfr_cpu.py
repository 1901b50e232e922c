#!/usr/bin/env python3
"""CPU time of a full transfer on both sides, for comparing two trees on a
loaded machine (wall-clock times of separate runs are not comparable there).

    python benchmarks/xfr_cpu.py --zone Z.zone --python TREE/.venv/bin/python --runs 3

A primary `keyresolve serve` compiles the zone (fresh data directory, once),
then for each run a secondary starts on an empty data directory and takes a
full transfer. Per run: the secondary's CPU time (utime + stime of it and
its descendants, /proc) from its "listening on" line to its "transfer in
... full" line, and the primary's from just before the secondary starts to
its "transfer out ... full" line. Only this process's own interpreter runs
this script; the daemons run `--python -m keyresolve` (any tree whose
`serve` takes this configuration), so one copy measures both trees.

`--profile FILE` runs the secondary of the last run under cProfile
(`-m cProfile -o FILE`) and stops it with SIGINT so the profile is written.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
#: A fixed, throwaway transfer secret.
SECRET = base64.b64encode(bytes(range(32))).decode()
#: Longest wait for a compile or a transfer (200k keys: a few seconds each).
TIMEOUT = 600.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    """utime + stime of `pid` and its living descendants, in seconds."""
    pids, total = [pid], 0.0
    for each in pids:
        try:
            with open(f"/proc/{each}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
            for task in os.listdir(f"/proc/{each}/task"):
                with open(f"/proc/{each}/task/{task}/children") as f:
                    pids += [int(child) for child in f.read().split()]
        except OSError:
            continue
    return total


def io(pid: int) -> dict[str, int]:
    """/proc/PID/io of `pid` (bytes written to storage, write calls) and its
    voluntary context switches (waits: for the primary, for a sync)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            name, value = line.split(":")
            if name in ("syscw", "write_bytes"):
                out[name] = int(value)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                out["voluntary_switches"] = int(line.split()[1])
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Proc:
    """A daemon whose stderr lines are queued by a thread."""

    def __init__(self, cmd: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, text=True,
                                     stdout=subprocess.DEVNULL)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no {pattern!r} within {timeout} s") from None
            if line is None:
                raise RuntimeError(f"exited before {pattern!r}:\n" + "\n".join(self.log[-20:]))
            self.log.append(line)
            if re.search(pattern, line):
                return line

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zone", required=True, help="zone file (genzone.py's)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the tree to measure (its venv's)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", help="cProfile output of the last run's secondary")
    parser.add_argument("--json", help="write the runs here too")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="xfrcpu-"))
    pdir, sdir = base / "primary", base / "secondary"
    pdir.mkdir()
    shutil.copyfile(args.zone, pdir / "example.com.zone")
    pport, sport = free_port(), free_port()
    keys = f'[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
    common = 'data_dir = "data"\nlog_level = "info"\n' + keys
    (pdir / "serve.toml").write_text(
        f'listen = ["{HOST}:{pport}"]\n{common}[[zones]]\nname = "example.com"\n'
        f'file = "example.com.zone"\nallow_transfer = ["xfer"]\nkey = "xfer"\n')
    serve = ["-m", "keyresolve", "serve", "--config"]
    primary = Proc([args.python, *serve, str(pdir / "serve.toml")], pdir)
    results = []
    try:
        primary.wait_for(r"\bready\b")
        for run in range(args.runs):
            shutil.rmtree(sdir, ignore_errors=True)
            sdir.mkdir()
            (sdir / "serve.toml").write_text(
                f'listen = ["{HOST}:{sport}"]\n{common}[[zones]]\nname = "example.com"\n'
                f'primaries = ["{HOST}:{pport}"]\nkey = "xfer"\n')
            profile = args.profile if args.profile and run == args.runs - 1 else None
            prefix = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
            p0 = cpu(primary.proc.pid)
            secondary = Proc([args.python, *prefix, *serve, str(sdir / "serve.toml")], sdir)
            try:
                secondary.wait_for(r"listening on ")
                s0, io0 = cpu(secondary.proc.pid), io(secondary.proc.pid)
                w0 = time.perf_counter()
                line = secondary.wait_for(r"transfer in example\.com\. .*: full")
                s1, io1 = cpu(secondary.proc.pid), io(secondary.proc.pid)
                wall = time.perf_counter() - w0
                primary.wait_for(r"transfer out example\.com\. .*full")
                p1 = cpu(primary.proc.pid)
            finally:
                secondary.stop(signal.SIGINT if profile else signal.SIGTERM)
            results.append({"secondary_cpu_s": round(s1 - s0, 3),
                            "secondary_start_cpu_s": round(s0, 3),
                            "primary_cpu_s": round(p1 - p0, 3),
                            "secondary_wall_s": round(wall, 3),
                            "secondary_io": {k: io1[k] - io0[k] for k in io1},
                            "logged": line.split(": ", 1)[-1]})
            print(json.dumps(results[-1]), flush=True)
    finally:
        primary.stop()
        shutil.rmtree(base, ignore_errors=True)
    for side in ("secondary_cpu_s", "primary_cpu_s"):
        values = sorted(r[side] for r in results)
        print(f"{side}: min {values[0]}, median {values[len(values) // 2]}, all {values}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
