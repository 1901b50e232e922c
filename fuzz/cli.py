"""`python -m fuzz DRIVER [--seconds N] [--count N] [--seed S] [--cases A,B] ...`
and `python -m fuzz replay FILE`."""

from __future__ import annotations

import argparse
import importlib
import json
import secrets
import sys
import tempfile
from pathlib import Path

from .core import DEFAULT_COUNT, DEFAULT_OUT, DEFAULT_SECONDS, Options, Run

#: Driver name -> module of this package.
DRIVERS = {"udp": "udp", "tcp": "tcp", "hmac": "signatures", "zonefile": "zonefile",
           "crash": "crash"}


def driver_module(name: str):
    return importlib.import_module(f"fuzz.{DRIVERS[name]}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    subs = top.add_subparsers(dest="driver", required=True, metavar="DRIVER")
    for name in DRIVERS:
        module = driver_module(name)
        sub = subs.add_parser(name, help=module.__doc__.split("\n")[0],
                              description=module.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="cases:\n" + "\n".join(f"  {c:14} {d}" for c, d
                                                            in module.CASES.items()))
        sub.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                         help=f"bound on the run's time (default {DEFAULT_SECONDS:g})")
        sub.add_argument("--count", type=int, default=DEFAULT_COUNT,
                         help=f"bound on the cases run (default {DEFAULT_COUNT})")
        sub.add_argument("--seed", type=int, default=None,
                         help="random seed (default: a new one, printed)")
        sub.add_argument("--cases", default="",
                         help="comma-separated case kinds to run (default: all)")
        sub.add_argument("--out", type=Path, default=DEFAULT_OUT,
                         help=f"where reproducers are saved (default {DEFAULT_OUT}/)")
        sub.add_argument("--quiet", action="store_true", help="no progress lines")
        for flag, kind, default, text in getattr(module, "SETTINGS", ()):
            sub.add_argument(f"--{flag}", type=kind, default=default, help=text)
    replay = subs.add_parser("replay", help="replay a saved case file")
    replay.add_argument("file", type=Path)
    replay.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return top


def options_from(argv: list[str]) -> Options:
    args = parser().parse_args(argv)
    if args.driver == "replay":
        doc = json.loads(args.file.read_text())
        return Options(driver=doc["driver"], seconds=3600, count=1, seed=doc["seed"],
                       cases=[doc["case"]], out=args.out, extra={"replay": doc})
    module = driver_module(args.driver)
    extra = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_"))
             for flag, *_ in getattr(module, "SETTINGS", ())}
    return Options(driver=args.driver, seconds=args.seconds, count=args.count,
                   seed=secrets.randbelow(10**9) if args.seed is None else args.seed,
                   cases=[c for c in args.cases.split(",") if c], out=args.out, extra=extra,
                   quiet=args.quiet)


def run(options: Options) -> Run:
    """Run one driver in a fresh temporary directory; the finished Run."""
    module = driver_module(options.driver)
    state = Run(options, module.CASES)
    if "replay" in options.extra:
        doc = options.extra["replay"]
        print(f"fuzz {options.driver}: replaying case {doc['case']} #{doc['index']} of seed "
              f"{options.seed}", flush=True)
    else:
        print(f"fuzz {options.driver}: seed {options.seed} (the same run: --seed "
              f"{options.seed} --cases {','.join(state.cases)})", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{options.driver}-") as workdir:
        if "replay" in options.extra:
            module.replay(state, Path(workdir), options.extra["replay"])
        else:
            module.run(state, Path(workdir))
    print(state.summary(), flush=True)
    return state


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0 if nothing was found, 1 otherwise."""
    state = run(options_from(sys.argv[1:] if argv is None else argv))
    return 1 if state.findings else 0
