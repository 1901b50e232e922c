#!/usr/bin/env python3
"""The seal command as a user runs it (issue #21): latency of the whole command.

    python benchmarks/bench_client.py --runs 50 --json client.json

Starts `keyresolve demo --ports auto` (root, TLDs, example.com, a resolver),
warms the resolver with one lookup of alice@example.com, then times whole
`keyresolve seal --to alice@example.com` processes (1 KiB from stdin):

- **fetch**: each run with a new, empty key ring, so the key is asked of the
  warm resolver and stored: what issue #21 asks for (p50 and p99, no goal);
- **ring**: the key already in the ring: no network;
- **floor**: `keyresolve --version`, the interpreter and the CLI starting
  and stopping, which both carry.

The series alternate run by run, so a slower moment of the machine falls on
each alike.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

#: Longest the demo may take to print its banner, and one command to run.
START_TIMEOUT = 60
COMMAND_TIMEOUT = 60
#: Bytes sealed per run: a short mail.
MESSAGE = b"x" * 1024
SERIES = ("fetch", "ring", "floor")


def start_demo(work: Path) -> tuple[subprocess.Popen, str]:
    """The demo, and its resolver's ``ip:port`` from its banner."""
    proc = subprocess.Popen(common.keyresolve_cmd("demo", "--ports", "auto", "--log-level",
                                                  "warning", "--data-dir", str(work / "demo")),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=work)
    deadline = time.monotonic() + START_TIMEOUT
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := re.match(r"\s+resolver\s+(\S+)$", line):
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.terminate()
    raise SystemExit("the demo printed no resolver address")


def timed(args: list[str]) -> float:
    """Seconds the command took; it must succeed."""
    start = time.perf_counter()
    done = subprocess.run(common.keyresolve_cmd(*args), input=MESSAGE, capture_output=True,
                          timeout=COMMAND_TIMEOUT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {done.returncode}: "
                         f"{done.stderr.decode().strip()}")
    return elapsed


def measure(work: Path, resolver: str, runs: int) -> dict:
    seal = ["seal", "--to", "alice@example.com", "--resolver", resolver]
    timed([*seal, "--keyring", str(work / "warm")])  # warms the resolver
    kept = ["--keyring", str(work / "kept")]
    timed([*seal, *kept])
    times: dict[str, list[float]] = {name: [] for name in SERIES}
    for i in range(runs):
        times["fetch"].append(timed([*seal, "--keyring", str(work / f"ring-{i}")]))
        times["ring"].append(timed([*seal, *kept]))
        times["floor"].append(timed(["--version"]))
    report = {}
    for name, values in times.items():
        values.sort()
        report[name] = {"runs": len(values),
                        "p50_ms": round(common.percentile(values, 50) * 1000, 1),
                        "p99_ms": round(common.percentile(values, 99) * 1000, 1),
                        "max_ms": round(values[-1] * 1000, 1)}
    report["fetch_minus_ring_p50_ms"] = round(report["fetch"]["p50_ms"]
                                              - report["ring"]["p50_ms"], 1)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs of each series")
    parser.add_argument("--workdir", help="keep the rings and the demo's data here")
    parser.add_argument("--src", help="keyresolve tree to measure (default: this repo)")
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    root = common.use_source(args.src)
    report = common.report_header("client", root, argv, runs=args.runs,
                                  message_bytes=len(MESSAGE))
    with common.workdir(args.workdir) as work:
        demo, resolver = start_demo(work)
        try:
            report["seal"] = measure(work, resolver, args.runs)
        finally:
            demo.terminate()
            demo.wait(timeout=START_TIMEOUT)
    common.emit(report, args.json)


if __name__ == "__main__":
    main()
