#!/usr/bin/env python3
"""A full transfer's CPU work, this tree against another revision, in one
process: both sides of a transfer without the network, alternating the two
trees run by run, so that a loaded machine slows both alike.

    python benchmarks/xfr_ab.py --other /path/to/old/worktree --zone Z.zone --rounds 7

The other tree's `keyresolve` package is copied into a temporary directory
as `keyresolve_other` (its imports are relative) and imported next to this
tree's. For each tree the zone is compiled once into a primary store; each
round then times with `time.process_time()`, for each tree in turn:

- send: the messages of an AXFR built from the compiled zone
  (`OutboundTransfer`, `to_wire`; unsigned), the primary's side;
- apply: those messages decoded (`Message.from_wire`, raw answer, as
  `net.client.transfer`) and fed to `xfr.Inbound` writing into an empty
  store (`Store.zone_writer`), the secondary's side.

TSIG, TCP and trio are left out: the same code in both trees. Reported per
tree: the minimum and median of each, and the median of the per-round
ratios (this tree / other). `--profile DIR` writes a cProfile of one more
send and apply per tree there (their call counts are exact).

On a loaded machine even CPU times of the same code differ by 5-10 % between
rounds. Instruction counts do not: `--one TREE --step STEP --reps N` loads
only that tree and runs STEP N more times, so that under

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        python benchmarks/xfr_ab.py --other OLD --zone Z.zone --one other --step apply --reps 1

the difference of the "I refs" of --reps 3 and --reps 1, halved, is one
step's instructions (with PYTHONHASHSEED=0, equal to a few thousand).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent.parent
#: The two trees, by the name the report gives them: their package names here.
PACKAGES = {"this": "keyresolve", "other": "keyresolve_other"}


def load_tree(package: str) -> SimpleNamespace:
    """The parts used here of a `keyresolve` tree imported as `package`,
    before (eabf342) or after the split into packages."""
    def mod(*names: str) -> Any:
        for name in names:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError:
                continue
        raise ModuleNotFoundError(f"{package}: none of {names}")

    root = Path(importlib.import_module(package).__file__ or "").parent
    if package == PACKAGES["this"] and root != HERE / "keyresolve":
        raise SystemExit(f"keyresolve is imported from {root}, not this tree: use its venv")
    xfr = mod("authority.xfr", "xfr")
    store = mod("store.zones", "store")
    tree = SimpleNamespace(
        Inbound=xfr.Inbound, OutboundTransfer=xfr.OutboundTransfer,
        make_transfer_query=xfr.make_transfer_query, RType=mod("protocol.codes", "codes").RType,
        Message=mod("protocol.message", "message").Message,
        Name=mod("protocol.names", "names").Name, Store=store.Store)
    tree.compile = (store.Store.load_zone_file if hasattr(store.Store, "load_zone_file")
                    else store.Store.compile_zone)
    return tree


class Side:
    """One tree's primary store and the two timed steps."""

    def __init__(self, tree: SimpleNamespace, zone: str, base: Path) -> None:
        self.tree, self.base = tree, base
        self.origin = tree.Name.from_text("example.com.")
        self.primary = tree.Store(base / "primary")
        tree.compile(self.primary, zone, self.origin)
        self.query = tree.make_transfer_query(self.origin, tree.RType.AXFR, msg_id=1)
        self.wires = self.send()[1]
        self.runs = 0

    def send(self) -> tuple[float, list[bytes]]:
        gc.collect()
        cpu = time.process_time()
        with self.primary.snapshot() as snap:
            wires = [m.to_wire() for m in self.tree.OutboundTransfer(
                self.query, snap.get_zone(self.origin))]
        return time.process_time() - cpu, wires

    def apply(self) -> tuple[float, int]:
        tree = self.tree
        self.runs += 1
        path = self.base / f"secondary{self.runs}"
        store = tree.Store(path)
        try:
            gc.collect()
            cpu = time.process_time()
            writer = store.zone_writer(self.origin, primary="127.0.0.1:53")
            inbound = tree.Inbound(self.origin, tree.RType.AXFR, None, writer,
                                   query_id=self.query.id)
            done = False
            for wire in self.wires:
                done = inbound.process_message(
                    tree.Message.from_wire(wire, cache_names=False, raw_answer=True))
            elapsed = time.process_time() - cpu
            assert done
            return elapsed, inbound.records
        finally:
            store.close()
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", required=True, help="worktree of the other revision")
    parser.add_argument("--zone", required=True, help="zone file of example.com (genzone.py's)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", help="directory for cProfile outputs")
    parser.add_argument("--json", help="write the times and ratios here too")
    parser.add_argument("--one", choices=PACKAGES, help="only this tree: --step, --reps")
    parser.add_argument("--step", choices=("send", "apply"), default="apply")
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="xfrab-"))
    try:
        shutil.copytree(Path(args.other) / "keyresolve", base / "pkg" / "keyresolve_other",
                        ignore=shutil.ignore_patterns("__pycache__"))
        sys.path.insert(0, str(base / "pkg"))
        sys.path.insert(0, str(HERE))
        if args.one:
            side = Side(load_tree(PACKAGES[args.one]), args.zone, base / args.one)
            for _ in range(args.reps):
                getattr(side, args.step)()
            side.primary.close()
            print(f"{args.one}: {args.step} x {args.reps} done")
            return 0
        sides = {name: Side(load_tree(package), args.zone, base / name)
                 for name, package in PACKAGES.items()}
        if sides["this"].wires != sides["other"].wires:
            print("note: the two trees send different bytes", flush=True)
        print(f"{len(sides['this'].wires)} messages, "
              f"{sum(map(len, sides['this'].wires))} bytes", flush=True)
        times: dict[str, dict[str, list[float]]] = {
            name: {"send": [], "apply": []} for name in sides}
        for index in range(args.rounds):
            order = ("this", "other") if index % 2 else ("other", "this")
            for name in order:
                times[name]["send"].append(sides[name].send()[0])
                times[name]["apply"].append(sides[name].apply()[0])
            print(f"round {index}: " + ", ".join(
                f"{name} send {times[name]['send'][-1]:.3f} apply {times[name]['apply'][-1]:.3f}"
                for name in sides), flush=True)
        report: dict[str, Any] = {"messages": len(sides["this"].wires),
                                  "same_bytes": sides["this"].wires == sides["other"].wires,
                                  "cpu_s": times, "ratio_median": {}}
        for step in ("send", "apply"):
            for name in sides:
                values = times[name][step]
                print(f"{step} {name}: min {min(values):.3f} s, "
                      f"median {statistics.median(values):.3f} s")
            ratios = [a / b for a, b in zip(times["this"][step], times["other"][step])]
            report["ratio_median"][step] = statistics.median(ratios)
            print(f"{step} this/other per round: median {statistics.median(ratios):.3f}, "
                  f"range {min(ratios):.3f}-{max(ratios):.3f}")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        if args.profile:
            out = Path(args.profile)
            out.mkdir(parents=True, exist_ok=True)
            for name, side in sides.items():
                for step in ("send", "apply"):
                    profiler = cProfile.Profile()
                    profiler.enable()
                    getattr(side, step)()
                    profiler.disable()
                    profiler.dump_stats(out / f"{step}-{name}.prof")
        for side in sides.values():
            side.primary.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
