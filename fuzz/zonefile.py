"""zonefile: mutated zone files through `keyresolve zone check` and the store compile.

The seeds are the demo zones (keyresolve/demo_zones/*.zone) and the test zone files
(tests/zonefiles/good and bad, with their $INCLUDEd files), copied to a
temporary directory. Each case mutates one seed (lines, tokens, bytes,
directives, sizes) and runs both the checker (`bulkcompile.check_zone`,
what `keyresolve zone check` runs) and `Store.load_zone_file` (what the
server's compile child runs) on it. Each must either succeed or raise
ZoneErrors whose every line is `FILE:LINE: message`; any other exception is
a finding, and so is a disagreement between the two (success against
failure, another serial or record count, other errors). The cli case runs
the real `keyresolve zone check` command and wants exit 0 or 1 and no
traceback. The include-escape case wants an $INCLUDE of a file outside
the zone's directory refused, with the error on the $INCLUDE line.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from keyresolve.files.local import LOCAL_FILES
from keyresolve.zonedata.bulkcompile import check_zone
from keyresolve.protocol.errors import KeyresolveError, ZoneErrors
from keyresolve.protocol.names import Name
from keyresolve.store.zones import Store

from .core import Run

CASES = {
    "lines": "delete, repeat, swap lines, or bring lines in from another seed",
    "tokens": "replace tokens with hostile ones (numbers, names, parentheses, quotes, "
              "unicode, directives)",
    "bytes": "flip bits, insert bytes, invalid UTF-8, NUL, CR, truncate",
    "directives": "$ORIGIN, $TTL and $INCLUDE with odd arguments, loops, missing files, "
                  "nested parentheses",
    "huge": "very long lines, names, keys and many records",
    "cli": "the real `keyresolve zone check` on a mutated file: exit 0 or 1, no traceback",
    "include-escape": "$INCLUDE of a file outside the zone's directory must be refused "
                      "on the $INCLUDE line",
}
#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT = 30.0
_ERROR_LINE = re.compile(r"^[^\n]+:\d+: [^\n]+$")
_ORIGIN = re.compile(r"^\$ORIGIN\s+(\S+)", re.MULTILINE)
#: The repository root (seed files live under it).
ROOT = Path(__file__).resolve().parent.parent

HOSTILE_TOKENS = [
    "(", ")", "((", "))", ";", '"', "\\", "\\(", "@", "*", "*.x", ".", "..", "a..b", "@@",
    "-1", "0", "4294967295", "4294967296", "99999999999999999999", "1w2d3h4m5s", "1h30",
    "2147483648", "1W", "3600s", "0x10", "1e9", "\u00e9xample", "\u2603@example.com.",
    "xn--", "a" * 63, "a" * 64, ".".join(["a" * 63] * 4), "x" * 70000, "\t", "\x00", "\x7f",
    "$ORIGIN", "$TTL", "$INCLUDE", "$GENERATE", "KEY", "SOA", "NS", "ADDR", "ALIAS", "ANY",
    "AXFR", "TYPE65535", "x25519", "ed448", "encrypt", "sign", "=", "====", "AAAA",
    "oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0", "127.0.0.1:99999", "[::1]:53",
    "::1:53", "256.1.1.1:53", "127.0.0.1:0", "alice@", "alice@@example.com.",
    "a@b@c.", "@example.com.", "hostmaster@", "ns1", "IN", "CH", "0.0.0.0:1",
]
DIRECTIVES = [
    "$ORIGIN .", "$ORIGIN alice@example.com.", "$ORIGIN " + "a." * 130, "$ORIGIN",
    "$ORIGIN a b", "$TTL", "$TTL -1", "$TTL 4294967296", "$TTL 1w1w", "$TTL 0",
    "$INCLUDE", "$INCLUDE missing.inc", "$INCLUDE {self}", "$INCLUDE {self} sub",
    "$INCLUDE inc/glue.inc", "$INCLUDE inc/deep.inc", "$INCLUDE inc", "$INCLUDE .",
    "$INCLUDE \x00", "$INCLUDE inc/glue.inc alice@example.com.", "$INCLUDE a b c",
    "( ( (", ") ) )", "@ ( SOA ns1 hostmaster@ 1 2 3 4 5", "$BOGUS x",
]


class CaseTimeout(Exception):
    """A case ran longer than CASE_TIMEOUT."""


def _alarm(signum, frame):  # noqa: ARG001
    raise CaseTimeout(f"no result in {CASE_TIMEOUT:g} s")


# -- seeds -------------------------------------------------------------------------
class Seed:
    """A seed zone file (in the copy) and its origin."""

    def __init__(self, path: Path, origin: Name) -> None:
        self.path = path
        self.origin = origin
        self.text = path.read_text(errors="surrogateescape")


def copy_seeds(workdir: Path) -> list[Seed]:
    """Copy the seed directories into `workdir`; the seeds found."""
    seeds = []
    for source, name in ((ROOT / "keyresolve" / "demo_zones", "zones"),
                         (ROOT / "tests" / "zonefiles" / "good", "good"),
                         (ROOT / "tests" / "zonefiles" / "bad", "bad")):
        if not source.is_dir():  # a seed set silently lost would weaken every run
            raise SystemExit(f"fuzz zonefile: no seed directory {source}")
        target = workdir / "seeds" / name
        shutil.copytree(source, target)
        for path in sorted(target.glob("*.zone")):
            seeds.append(Seed(path, _origin_of(path)))
    if not seeds:
        raise SystemExit(f"fuzz zonefile: no seed zone files under {ROOT}")
    return seeds


def _origin_of(path: Path) -> Name:
    if path.parent.name == "zones":
        stem = path.stem
        return Name.from_text("." if stem == "root" else stem + ".")
    try:
        return check_zone(str(path), files=LOCAL_FILES).origin
    except KeyresolveError:  # a bad seed: its first absolute $ORIGIN
        for match in _ORIGIN.finditer(path.read_text(errors="replace")):
            if match.group(1).endswith("."):
                try:
                    return Name.from_text(match.group(1))
                except KeyresolveError:
                    continue
        return Name.from_text("example.com.")


# -- mutators ------------------------------------------------------------------------
def mutate_lines(rng: random.Random, text: str, seeds: list[Seed]) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 6)):
        if not lines:
            lines = [""]
        at = rng.randrange(len(lines))
        action = rng.randrange(4)
        if action == 0:
            del lines[at]
        elif action == 1:
            lines.insert(at, lines[at])
        elif action == 2:
            other = rng.randrange(len(lines))
            lines[at], lines[other] = lines[other], lines[at]
        else:
            donor = rng.choice(seeds).text.split("\n")
            lines.insert(at, rng.choice(donor))
    return "\n".join(lines)


def mutate_tokens(rng: random.Random, text: str, seeds: list[Seed]) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 5)):
        at = rng.randrange(len(lines))
        tokens = lines[at].split(" ") or [""]
        slot = rng.randrange(len(tokens))
        token = rng.choice(HOSTILE_TOKENS)
        if rng.random() < 0.5:
            tokens[slot] = token
        else:
            tokens.insert(slot, token)
        lines[at] = " ".join(tokens)
    return "\n".join(lines)


def mutate_bytes(rng: random.Random, text: str, seeds: list[Seed]) -> str:
    data = bytearray(text.encode("utf-8", "surrogateescape"))
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data) + 1)
        action = rng.randrange(5)
        if action == 0 and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
        elif action == 1:
            data[at:at] = rng.choice([b"\x00", b"\r", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80",
                                      b"\t", b"\x0b", b"\x0c", b"\\", b'"', b"\xe2\x80\xa8"])
        elif action == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif action == 3:
            del data[at:at + rng.randint(1, 40)]
        else:
            del data[at:]
    return data.decode("utf-8", "surrogateescape")


def mutate_directives(rng: random.Random, text: str, seeds: list[Seed]) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(DIRECTIVES))
    return "\n".join(lines)


def mutate_huge(rng: random.Random, text: str, seeds: list[Seed]) -> str:
    kind = rng.randrange(5)
    lines = text.split("\n")
    at = rng.randrange(len(lines) + 1)
    if kind == 0:
        extra = ["x" * rng.choice([1000, 65535, 65536, 70000])]
    elif kind == 1:
        extra = [f"{'a' * rng.choice([63, 64, 200])}@ KEY x25519 encrypt "
                 "oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0="]
    elif kind == 2:
        extra = ["big@ KEY x25519 encrypt " + "A" * rng.choice([44, 1000, 70000])]
    elif kind == 3:
        extra = [f"u{i}@ KEY x25519 encrypt oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0="
                 for i in range(rng.choice([100, 5000]))]
    else:
        extra = ["many@ KEY x25519 encrypt ("] + ["  AAAA"] * rng.choice([10, 20000]) + [")"]
    lines[at:at] = extra
    return "\n".join(lines)


MUTATORS: dict[str, Callable[[random.Random, str, list[Seed]], str]] = {
    "lines": mutate_lines, "tokens": mutate_tokens, "bytes": mutate_bytes,
    "directives": mutate_directives, "huge": mutate_huge}


# -- running a case ---------------------------------------------------------------------
def outcome(run: Callable[[], object]) -> tuple[str, object]:
    """('ok', (serial, records)), ('errors', [lines]) or ('exception', traceback)."""
    try:
        compiled = run()
    except ZoneErrors as exc:
        return "errors", [str(e) for e in exc.errors]
    except Exception:
        return "exception", traceback.format_exc()
    return "ok", (compiled.serial, compiled.records)


def bad_lines(lines: list[str]) -> list[str]:
    """The error lines that are not one `FILE:LINE: message` line each."""
    return [line for line in lines if not _ERROR_LINE.match(line)]


def check_case(path: Path, origin: Name, store: Store) -> list[str]:
    """Check and compile `path`; what is wrong with the results."""
    checked = outcome(lambda: check_zone(str(path), origin, files=LOCAL_FILES))
    compiled = outcome(lambda: store.load_zone_file(str(path), origin))
    problems = []
    for who, (kind, value) in (("zone check", checked), ("store compile", compiled)):
        if kind == "exception":
            last = str(value).strip().splitlines()[-1]
            problems.append(f"{who} raised {last}")
        elif kind == "errors":
            if not value:
                problems.append(f"{who} raised ZoneErrors with no error")
            if bad := bad_lines(value):
                problems.append(f"{who} error not formatted FILE:LINE: message: {bad[0]!r}")
    if not problems and checked != compiled:
        problems.append(f"zone check and store compile disagree: {_brief(checked)} against "
                        f"{_brief(compiled)}")
    return problems


def _brief(result: tuple[str, object]) -> str:
    kind, value = result
    if kind == "ok":
        return f"ok serial {value[0]}, {value[1]} records"
    return f"{len(value)} errors, first {value[0][:120]!r}" if value else "no errors"


def check_cli(path: Path, origin: Name) -> list[str]:
    """The real command: exit 0 (a summary) or 1 (file:line errors), no traceback."""
    cmd = [sys.executable, "-m", "keyresolve", "zone", "check", str(path), "--origin",
           origin.to_text()]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                             timeout=CASE_TIMEOUT, cwd=path.parent)
    except subprocess.TimeoutExpired:
        return [f"keyresolve zone check gave no result in {CASE_TIMEOUT:g} s"]
    if "Traceback" in out.stderr or out.returncode not in (0, 1):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"keyresolve zone check exited {out.returncode}: {last[:200]}"]
    if out.returncode == 1:
        lines = out.stderr.strip().splitlines()
        if not lines:
            return ["keyresolve zone check failed without an error line"]
        if bad := bad_lines(lines):
            return [f"keyresolve zone check error not FILE:LINE: message: {bad[0][:200]!r}"]
    return []


def include_escape(rng: random.Random, seed: Seed, path: Path, workdir: Path) -> tuple[str, int]:
    """Text whose $INCLUDE reads a file outside the zone's directory, and
    the line of that $INCLUDE."""
    outside = workdir / "outside.inc"
    outside.write_text("outside@ KEY x25519 encrypt oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0=\n")
    link = path.parent / "link.inc"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(outside)
    target = rng.choice([str(outside), os.path.relpath(outside, path.parent), "link.inc",
                         "/etc/hostname", "/etc/passwd"])
    lines = seed.text.rstrip("\n").split("\n") + [f"$INCLUDE {target}"]
    return "\n".join(lines) + "\n", len(lines)


def run(state: Run, workdir: Path) -> None:
    seeds = copy_seeds(workdir)
    good = [s for s in seeds if s.path.parent.name in ("zones", "good")]
    # SIGALRM bounds each case; a timer already set (pytest-timeout's) is
    # set again at the end, less the time spent here
    previous = signal.signal(signal.SIGALRM, _alarm)
    pending, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    began = time.monotonic()
    try:
        with Store(workdir / "store") as store:
            state.begin()
            while state.more():
                case, index, rng = state.next_case()
                run_case(state, workdir, store, seeds, good, case, index, rng)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if pending:
            signal.setitimer(signal.ITIMER_REAL,
                             max(0.001, pending - (time.monotonic() - began)))


def run_case(state: Run, workdir: Path, store: Store, seeds: list[Seed], good: list[Seed],
             case: str, index: int, rng: random.Random) -> None:
    seed = rng.choice(good if case == "include-escape" else seeds)
    path = seed.path.parent / "fuzzcase.zone"
    include_line = 0
    if case == "include-escape":
        text, include_line = include_escape(rng, seed, path, workdir)
    else:
        mutator = MUTATORS[rng.choice(list(MUTATORS))] if case == "cli" else MUTATORS[case]
        text = mutator(rng, seed.text, seeds).replace("{self}", path.name)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT)
    try:
        if case == "cli":
            problems = check_cli(path, seed.origin)
        else:
            problems = check_case(path, seed.origin, store)
        if case == "include-escape" and not problems:
            problems = escape_problems(path, seed.origin, include_line)
    except CaseTimeout as exc:
        problems = [f"hang: {exc}"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    state.done(case)
    for problem in problems:
        state.finding(case, index, problem, {
            "seed_file": str(seed.path.relative_to(workdir / "seeds")),
            "origin": seed.origin.to_text(), "text": text, "include_line": include_line})


def escape_problems(path: Path, origin: Name, include_line: int) -> list[str]:
    kind, value = outcome(lambda: check_zone(str(path), origin, files=LOCAL_FILES))
    target = path.read_text(errors="replace").split("\n")[include_line - 1]
    if kind == "ok":
        return [f"{target!r} outside the zone's directory was accepted"]
    where = f"{path}:{include_line}:"
    if kind == "errors" and not any(line.startswith(where) for line in value):
        return [f"{target!r} outside the zone's directory: no error on its line, "
                f"first error {value[0][:150]!r}"]
    return []


def replay(state: Run, workdir: Path, doc: dict) -> None:
    """Check the saved text again, in a copy of its seed's directory."""
    copy_seeds(workdir)
    seed_path = workdir / "seeds" / doc["seed_file"]
    path = seed_path.parent / "fuzzcase.zone"
    path.write_bytes(doc["text"].encode("utf-8", "surrogateescape"))
    origin = Name.from_text(doc["origin"])
    with Store(workdir / "store") as store:
        problems = check_cli(path, origin) if doc["case"] == "cli" else check_case(
            path, origin, store)
        if doc["case"] == "include-escape" and not problems:
            problems = escape_problems(path, origin, doc["include_line"])
    state.done(doc["case"])
    for problem in problems:
        state.finding(doc["case"], doc["index"], problem, {
            "seed_file": doc["seed_file"], "origin": doc["origin"], "text": doc["text"],
            "include_line": doc.get("include_line", 0)})
