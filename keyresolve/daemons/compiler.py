"""Zone compiles in a child process, so that the serving process keeps answering.

A compile holds the GIL for long stretches (the bulk compile's regex over a
4 MiB chunk, its sort of a million nodes: ~0.5 s at 1,000,000 keys), which
would stall every answer of a single-process server; its memory would also
add to the server's. `compile_in_child` runs `Store.compile_zone` in
``python -m keyresolve.daemons.compiler`` on the same LMDB environment:
LMDB serialises its write transactions with the server's, and the server's
next snapshot sees the new zone. The child prints one JSON line: the
zone's serial and record count, or its errors.

Cancelling `compile_in_child` (a server shutting down) kills the child:
a compile cut short leaves the served zone as it was, and its partly
written new version is cleared by the next compile (`Store.compile_zone`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from ..errors import KeyresolveError, StoreError, ZoneErrors, ZoneFileError
from ..names import Name
from ..store import Store

#: Longest a compile may take: far beyond any zone this store can hold
#: (1,000,000 keys take ~3-9 s), but a hung child must not block reloads.
COMPILE_TIMEOUT = 3600.0
#: Bytes of the child's stderr quoted when it fails without a report.
STDERR_TAIL = 2000
#: The directory holding the keyresolve package this process imported.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


async def compile_in_child(data_dir: str | Path, path: str, origin: Name,
                           include_dirs: Sequence[str | Path] = ()) -> tuple[int, int]:
    """Compile the zone file at `path` into the store at `data_dir` in a
    child process; (serial, records). Its includes may lie in its directory
    or in `include_dirs`. Raises ZoneErrors (every file:line
    error, as `Store.compile_zone`), or StoreError. Cancelled, it kills the
    child (SIGTERM, as `trio.run_process`) before it returns."""
    cmd = [sys.executable, "-m", "keyresolve.daemons.compiler", str(data_dir), path,
           origin.to_text(), *map(str, include_dirs)]
    # the child imports the package this process runs, wherever that is
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
    try:
        with trio.fail_after(COMPILE_TIMEOUT):
            proc = await trio.run_process(cmd, stdin=b"", capture_stdout=True,
                                          capture_stderr=True, check=False, env=env)
    except trio.TooSlowError:
        raise StoreError(f"compile of {origin} took longer than {COMPILE_TIMEOUT:g} s") from None
    except OSError as exc:
        raise StoreError(f"cannot start the compile process: {exc.strerror or exc}") from None
    stdout = proc.stdout.decode(errors="replace")
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        stderr = proc.stderr.decode(errors="replace")
        raise StoreError(f"compile process failed (exit {proc.returncode}): "
                         f"{stderr[-STDERR_TAIL:].strip() or 'no output'}") from None
    if "zone_errors" in report:
        raise ZoneErrors([ZoneFileError(*error) for error in report["zone_errors"]])
    if "error" in report:
        raise StoreError(report["error"])
    return report["serial"], report["records"]


def main(argv: list[str]) -> int:
    """``DATA_DIR PATH ORIGIN [INCLUDE_DIR...]``: compile, print the JSON report."""
    data_dir, path, origin, *include_dirs = argv
    try:
        with Store(data_dir) as store:
            compiled = store.compile_zone(path, Name.from_text(origin),
                                          include_dirs=include_dirs)
        report: dict = {"serial": compiled.serial, "records": compiled.records}
    except ZoneErrors as exc:
        report = {"zone_errors": [[e.filename, e.line, e.message] for e in exc.errors]}
    except KeyresolveError as exc:
        report = {"error": str(exc)}
    print(json.dumps(report), flush=True)
    return 0 if "serial" in report else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
