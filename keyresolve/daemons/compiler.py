"""Zone compiles in a child process, so that the serving process keeps answering.

A compile holds the GIL for long stretches (the bulk compile's regex over a
4 MiB chunk, its sort of a million nodes: ~0.5 s at 1,000,000 keys), which
would stall every answer of a single-process server; its memory would also
add to the server's. `compile_in_child` runs `Store.load_zone_file` in
``python -m keyresolve.daemons.compiler`` on the same LMDB environment:
LMDB serialises its write transactions with the server's, and the server's
next snapshot sees the new zone. The child prints one JSON line: the
zone's serial and record count, or its errors.

Cancelling `compile_in_child` (a server shutting down) kills the child:
a compile cut short leaves the served zone as it was, and its partly
written new version is cleared by the next compile (`Store.load_zone_file`).

A child never outlives its parent, however the parent ends (``kill -9``
too). On Linux the child asks for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); that signal follows the *thread* that
started the child, so the child is started from the event loop's thread,
not from a worker thread as `trio.run_process` would (a worker thread ends
when idle). Elsewhere, and as a second line, its stdin is a pipe whose only
write end the parent holds, and a thread of the child exits the process
(`os._exit`) when it reads EOF there (it needs the GIL, which LMDB holds
while it waits for the write lock to open a database). The child also
checks, in the transaction that switches the zone, that its parent is
still alive, so a compile whose parent died never commits. An LMDB write
transaction dies with its process: the store keeps the old zone or the
new one, whole.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
import tempfile
import threading
from pathlib import Path

import msgpack
import trio

from ..protocol.errors import KeyresolveError, StoreError, ZoneErrors, ZoneFileError
from ..protocol.names import Name
from ..protocol.records import Record
from ..store.zones import Store

#: Longest a compile may take: far beyond any zone this store can hold
#: (1,000,000 keys take ~3-9 s), but a hung child must not block reloads.
COMPILE_TIMEOUT = 3600.0
#: Bytes of the child's stderr quoted when it fails without a report.
STDERR_TAIL = 2000
#: Seconds a cancelled child has to end after SIGTERM before SIGKILL (as
#: `trio.run_process`).
KILL_GRACE = 5.0
#: Environment variable telling the child its parent's pid.
PARENT_ENV = "KEYRESOLVE_COMPILER_PARENT"
#: Environment variable giving the child the zone's serial policy (none: no policy).
SERIAL_POLICY_ENV = "KEYRESOLVE_COMPILER_SERIAL_POLICY"
#: Environment variable giving the child the file of overlay records
#: (`Store.load_zone_file(overlay=)`): msgpack, an array of record arrays.
OVERLAY_ENV = "KEYRESOLVE_COMPILER_OVERLAY"
#: prctl(2) option: the signal this process gets when its parent thread ends.
PR_SET_PDEATHSIG = 1
#: The directory holding the keyresolve package this process imported.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


async def compile_in_child(data_dir: str | Path, path: str, origin: Name,
                           include_dirs: Sequence[str | Path] = (), *,
                           serial_policy: str | None = None,
                           overlay: Sequence[Record] = ()) -> tuple[int, int]:
    """Compile the zone file at `path` into the store at `data_dir` in a
    child process; (serial, records). Its includes may lie in its directory
    or in `include_dirs`. Raises ZoneErrors (every file:line
    error, as `Store.load_zone_file`), or StoreError (a refusal by
    `serial_policy` too, see `Store.load_zone_file`). Cancelled, it kills the
    child (SIGTERM, then SIGKILL) before it returns."""
    cmd = [sys.executable, "-m", "keyresolve.daemons.compiler", str(data_dir), path,
           origin.to_text(), *map(str, include_dirs)]
    # the child imports the package this process runs, wherever that is
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
    # the child's lifeline: it exits when the write end, ours only, closes
    lifeline_read, lifeline_write = os.pipe()
    env.pop(OVERLAY_ENV, None)
    overlay_path = None
    if overlay:
        fd, overlay_path = tempfile.mkstemp(prefix="overlay-", dir=data_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(msgpack.packb([record.to_wire() for record in overlay]))
        env[OVERLAY_ENV] = overlay_path
    try:
        with trio.fail_after(COMPILE_TIMEOUT):
            env[PARENT_ENV] = str(os.getpid())
            env.pop(SERIAL_POLICY_ENV, None)
            if serial_policy is not None:
                env[SERIAL_POLICY_ENV] = serial_policy
            proc = await _run_child(cmd, env, lifeline_read)
    except trio.TooSlowError:
        raise StoreError(f"compile of {origin} took longer than {COMPILE_TIMEOUT:g} s") from None
    except OSError as exc:
        raise StoreError(f"cannot start the compile process: {exc.strerror or exc}") from None
    finally:
        os.close(lifeline_read)
        os.close(lifeline_write)
        if overlay_path is not None:
            os.unlink(overlay_path)
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


#: Exit status of a child whose parent went away (no report: nobody reads it).
ORPHANED = 3


def _watch_lifeline(fd: int) -> None:
    """Read `fd` (the parent's pipe) to EOF, then end the process at once."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    os._exit(ORPHANED)


def _exit_if_orphaned(parent: int) -> None:
    """End the process at once if `parent`, which started it, is gone (this
    process then has another parent: init, or a subreaper)."""
    if os.getppid() != parent:
        os._exit(ORPHANED)


async def _run_child(cmd: list[str], env: dict[str, str], stdin: int
                     ) -> subprocess.CompletedProcess:
    """Run `cmd`, capturing its output. Started from this thread, whose end
    the child's parent-death signal watches; cancelled, the child gets
    SIGTERM, then SIGKILL after `KILL_GRACE` seconds."""
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, proc.stdout, out)
            nursery.start_soon(_drain, proc.stderr, err)
        await trio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)  # it closed both
    except BaseException:
        proc.terminate()
        with trio.CancelScope(shield=True), trio.move_on_after(KILL_GRACE):
            await trio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return subprocess.CompletedProcess(cmd, proc.returncode, b"".join(out), b"".join(err))


async def _drain(pipe, chunks: list[bytes]) -> None:
    """Read `pipe` (a file of the child's) to EOF into `chunks`."""
    async with trio.lowlevel.FdStream(os.dup(pipe.fileno())) as stream:
        while chunk := await stream.receive_some():
            chunks.append(chunk)


def _die_with_parent() -> int | None:
    """Ask for SIGKILL when the parent (`PARENT_ENV`) dies, where the system
    allows it; end now if it is gone already. The parent's pid, or None when
    this process was not started by `compile_in_child`."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not parent.isdigit():
        return None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the stdin lifeline still ends the process
    _exit_if_orphaned(int(parent))  # it may have died before the prctl
    return int(parent)


def _read_overlay(path: str | None) -> list[Record]:
    """The overlay records `compile_in_child` wrote to `path` (None: none)."""
    if path is None:
        return []
    try:
        with open(path, "rb") as f:
            return [Record.from_wire(fields) for fields in msgpack.unpackb(f.read(),
                                                                          use_list=False)]
    except (OSError, ValueError, TypeError, KeyresolveError) as exc:
        raise StoreError(f"overlay file {path}: {exc}") from None


def main(argv: list[str]) -> int:
    """``DATA_DIR PATH ORIGIN [INCLUDE_DIR...]``: compile (by the serial
    policy in `SERIAL_POLICY_ENV`, if any), print the JSON report. Started by
    `compile_in_child`, it ends as soon as its parent does, without
    committing."""
    data_dir, path, origin, *include_dirs = argv
    parent = _die_with_parent()
    if parent is not None:
        threading.Thread(target=_watch_lifeline, args=(sys.stdin.fileno(),),
                         daemon=True).start()
    try:
        overlay = _read_overlay(os.environ.get(OVERLAY_ENV))
        with Store(data_dir) as store:
            compiled = store.load_zone_file(
                path, Name.from_text(origin), include_dirs=include_dirs,
                before_commit=None if parent is None else lambda: _exit_if_orphaned(parent),
                serial_policy=os.environ.get(SERIAL_POLICY_ENV), overlay=overlay)
        report: dict = {"serial": compiled.serial, "records": compiled.records}
    except ZoneErrors as exc:
        report = {"zone_errors": [[e.filename, e.line, e.message] for e in exc.errors]}
    except KeyresolveError as exc:
        report = {"error": str(exc)}
    print(json.dumps(report), flush=True)
    return 0 if "serial" in report else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
