"""What every driver shares: options, seeded cases, bounds, findings, the summary."""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Default bound on a run's wall time (seconds) and on its cases: a short run.
DEFAULT_SECONDS = 10.0
DEFAULT_COUNT = 100_000
#: Where reproducers go unless --out says otherwise.
DEFAULT_OUT = Path("fuzz-findings")


@dataclass
class Options:
    """A driver's command line, parsed."""

    driver: str
    seconds: float = DEFAULT_SECONDS
    count: int = DEFAULT_COUNT
    seed: int = 0
    cases: list[str] = field(default_factory=list)
    out: Path = DEFAULT_OUT
    #: Driver-specific settings (--conns, --keys, ...), by name.
    extra: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False


@dataclass
class Finding:
    """One defect found: a one-line summary and the file holding its case."""

    driver: str
    case: str
    index: int
    summary: str
    saved: Path | None = None

    def line(self) -> str:
        where = f"; case saved to {self.saved}" if self.saved else ""
        return f"FINDING {self.driver}/{self.case} #{self.index}: {self.summary}{where}"


class Run:
    """One run of a driver: the clock and count bounds, the per-case counters
    and the findings. Case number `i` of kind `case` always gets the same
    random generator for a seed (`rng`), so a seed replays the same cases."""

    def __init__(self, options: Options, all_cases: dict[str, str]) -> None:
        self.options = options
        unknown = [c for c in options.cases if c not in all_cases]
        if unknown:
            raise SystemExit(f"fuzz {options.driver}: unknown case(s) {', '.join(unknown)}; "
                             f"known: {', '.join(all_cases)}")
        self.cases = list(options.cases or all_cases)
        self.started = time.monotonic()
        self.deadline = self.started + options.seconds
        self.counts: Counter[str] = Counter()
        #: Smaller units some drivers also count (packets, connections).
        self.units: Counter[str] = Counter()
        self.findings: list[Finding] = []
        self.index = 0
        self._seen: set[tuple[str, str]] = set()

    # -- bounds ------------------------------------------------------------
    def begin(self) -> None:
        """Start the clock: the drivers call this once their daemons are up
        (their start is bounded by daemons.DAEMON_TIMEOUT on its own)."""
        self.started = time.monotonic()
        self.deadline = self.started + self.options.seconds

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def more(self) -> bool:
        """True while neither bound is reached."""
        return self.total < self.options.count and time.monotonic() < self.deadline

    def next_case(self) -> tuple[str, int, random.Random]:
        """The next case kind (round robin over the selected ones), its
        number, and its random generator."""
        case = self.cases[self.index % len(self.cases)]
        index = self.index
        self.index += 1
        return case, index, self.rng(case, index)

    def rng(self, case: str, index: int) -> random.Random:
        """The generator of case `index` of kind `case` for this seed."""
        return random.Random(f"{self.options.seed}/{self.options.driver}/{case}/{index}")

    def done(self, case: str, units: int = 0, unit: str = "") -> None:
        """Count one case run (and `units` of `unit` sent within it)."""
        self.counts[case] += 1
        if unit:
            self.units[unit] += units

    # -- findings ----------------------------------------------------------
    def finding(self, case: str, index: int, summary: str,
                reproducer: dict[str, Any] | None = None) -> Finding:
        """Record a finding, save its case (JSON) and print its line. The
        same summary for the same case kind is reported once per run."""
        summary = " ".join(summary.split())[:300]
        finding = Finding(self.options.driver, case, index, summary)
        key = (case, summary.split(":")[0])
        if key in self._seen:
            return finding
        self._seen.add(key)
        if reproducer is not None:
            self.options.out.mkdir(parents=True, exist_ok=True)
            path = self.options.out / (f"{self.options.driver}-{case}-seed{self.options.seed}"
                                       f"-{index}.json")
            doc = {"driver": self.options.driver, "case": case, "index": index,
                   "seed": self.options.seed, "summary": summary, **reproducer}
            path.write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")
            finding.saved = path
        self.findings.append(finding)
        print(finding.line(), flush=True)
        return finding

    def summary(self) -> str:
        """The last line: cases run per kind, time, findings."""
        per_case = ", ".join(f"{c} {self.counts[c]}" for c in self.cases)
        units = "".join(f", {n} {u}" for u, n in sorted(self.units.items()))
        return (f"fuzz {self.options.driver}: seed {self.options.seed}, {self.total} cases "
                f"({per_case}){units} in {time.monotonic() - self.started:.1f} s, "
                f"{len(self.findings)} finding{'s' if len(self.findings) != 1 else ''}")

    def say(self, text: str) -> None:
        """Progress output (suppressed by --quiet)."""
        if not self.options.quiet:
            print(text, file=sys.stderr, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot save {type(value).__name__}")
