"""Rate decisions (sans-IO): response rate limiting and log rate limiting.

`ResponseRateLimiter` decides, for each UDP answer an authoritative server
is about to send, whether to send it, drop it, or send a truncated stand-in
(a "slip": TC set, the question, no records, so a real client retries over
TCP, which a spoofed source cannot). It counts answers per client prefix
(/24 for IPv4, /56 for IPv6) and answer class in one-second windows (Knot
refills `rate` tokens each second alike), with the classes of BIND's RRL. `LogLimiter` bounds the log lines per-packet faults
(bad signatures, malformed messages) write, and counts what it held back.

Clocks are passed in (seconds, any monotonic origin).
"""

from __future__ import annotations

import ipaddress

import msgpack

from ..protocol.codes import Rcode
from ..protocol.message import DEFAULT_UDP_SIZE, FLAG_SG, FLAG_TC, HEADER_SIZE

#: Answer classes (BIND's rate-limit categories: responses, nodata,
#: nxdomains, referrals, errors), each counted apart, so a flood of made-up
#: names (NXDOMAIN) does not use up a client's budget for real answers.
POSITIVE, NODATA, NXDOMAIN, REFERRAL, ERROR = range(5)
CLASS_NAMES = ("positive", "nodata", "nxdomain", "referral", "error")
#: Decisions.
SEND, DROP, SLIP = 0, 1, 2

#: Every Nth limited answer slips (is sent truncated): 2, as BIND's and
#: Knot's default slip; 0 drops every limited answer, 1 slips every one.
DEFAULT_SLIP = 2
#: Most `slip` may be: BIND allows 0-10.
MAX_SLIP = 10
#: Client prefixes tracked at once: BIND's default max-table-size (20,000
#: entries; Knot's rrl-table-size is 393,241 buckets of 32 bytes). One
#: prefix here, with every class and a client address, takes ~700 bytes:
#: 20,000 take ~14 MB. Past it, prefixes idle this second (which count as
#: fresh) are dropped, and if most are not idle the table starts over.
MAX_PREFIXES = 20_000
#: Prefix lengths a client is grouped by (BIND's ipv4-prefix-length 24 and
#: ipv6-prefix-length 56; Knot's are the same).
IPV4_PREFIX = 24
IPV6_PREFIX = 56

#: Lines of one kind of per-packet fault logged per period, and the period
#: (s): a flood writes 10 lines a minute, and a count of the rest, where one
#: line per packet filled logs (a fuzz run wrote 702 warnings).
DEFAULT_LOG_BURST = 10
DEFAULT_LOG_PERIOD = 60.0


def client_prefix(host: str) -> str:
    """The prefix `host` (an IP address as text) is counted under: its /24
    (IPv4, also IPv4-mapped IPv6) or /56 (IPv6), as text."""
    if ":" not in host:
        return host.rpartition(".")[0]
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host  # not an address the kernel gives; count it alone
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped).rpartition(".")[0]
    return address.packed[:IPV6_PREFIX // 8].hex()


def classify(rcode: int, aa: bool, answer_count: int, authority_count: int) -> int:
    """The answer class of a response."""
    if rcode == Rcode.NXDOMAIN:
        return NXDOMAIN
    if rcode != Rcode.NOERROR:
        return ERROR
    if answer_count:
        return POSITIVE
    if not aa and authority_count:
        return REFERRAL
    return NODATA


class ResponseRateLimiter:
    """At most `rate` answers of each class per second to each client
    prefix; of the answers over it, every `slip`-th is sent truncated
    (`SLIP`), the rest dropped (`DROP`); 0 drops them all.

    A window is one second of the clock passed in: the first answer of a
    new second starts its count over. Memory is bounded by `max_prefixes`.
    """

    __slots__ = ("rate", "slip", "max_prefixes", "limited", "_table", "_hosts", "_now",
                 "_second")

    def __init__(self, rate: int, slip: int = DEFAULT_SLIP,
                 max_prefixes: int = MAX_PREFIXES) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1")
        if not 0 <= slip <= MAX_SLIP:
            raise ValueError(f"slip must be 0..{MAX_SLIP}")
        self.rate = rate
        self.slip = slip
        self.max_prefixes = max_prefixes
        #: Answers dropped or slipped since the start, by class.
        self.limited = [0] * len(CLASS_NAMES)
        #: prefix -> a [window, count] bucket for each class.
        self._table: dict[str, list[list[int]]] = {}
        #: host -> its prefix's buckets (one lookup per answer), bounded as
        #: the table and cleared with it.
        self._hosts: dict[str, list[list[int]]] = {}
        self._now = self._second = -1

    def decide(self, host: str, answer_class: int, now: float) -> int:
        """SEND, DROP or SLIP for one answer of `answer_class` to `host`."""
        if now != self._now:
            self._now = now
            self._second = int(now)
        buckets = self._hosts.get(host)
        if buckets is None:
            buckets = self._buckets(host)
        bucket = buckets[answer_class]
        if bucket[0] != self._second:
            bucket[0] = self._second
            bucket[1] = 1
            return SEND
        count = bucket[1] = bucket[1] + 1
        if count <= self.rate:
            return SEND
        self.limited[answer_class] += 1
        if self.slip and (count - self.rate) % self.slip == 0:
            return SLIP
        return DROP

    def _buckets(self, host: str) -> list[list[int]]:
        """The buckets of `host`'s prefix, made if new; remembered for `host`."""
        table, hosts = self._table, self._hosts
        prefix = client_prefix(host)
        buckets = table.get(prefix)
        if buckets is None:
            if len(table) >= self.max_prefixes:
                # A prefix not counted this second is as good as absent.
                second = self._second
                for old in [p for p, b in table.items() if all(w != second for w, _ in b)]:
                    del table[old]
                if len(table) > self.max_prefixes // 2:
                    table.clear()  # a flood of this many prefixes in one second
                hosts.clear()
            buckets = table[prefix] = [[-1, 0] for _ in CLASS_NAMES]
        if len(hosts) >= self.max_prefixes:
            hosts.clear()
        hosts[host] = buckets
        return buckets

    def __len__(self) -> int:
        """Prefixes tracked."""
        return len(self._table)


def slipped(response: bytes) -> bytes | None:
    """The truncated stand-in for an unsigned response: its header with TC
    set, its question, empty sections (as BIND slips). None if `response`
    cannot be read that way."""
    if len(response) <= HEADER_SIZE:
        return None
    unpacker = msgpack.Unpacker(max_buffer_size=len(response))
    unpacker.feed(response[HEADER_SIZE:])
    try:
        if unpacker.read_array_header() != 5:
            return None
        unpacker.skip()  # the question
        end = HEADER_SIZE + unpacker.tell()
    except Exception:  # msgpack's own errors: not a response of ours
        return None
    flags = (response[2] << 8 | response[3]) & ~FLAG_SG | FLAG_TC
    return b"".join((response[:2], flags.to_bytes(2, "big"), response[4:HEADER_SIZE], b"\x95",
                     response[HEADER_SIZE + 1:end], b"\x90\x90\x90",
                     msgpack.packb(_udp_size(response, end))))


def _udp_size(response: bytes, question_end: int) -> int:
    """The udp_size a response states (its last body item), or the default."""
    unpacker = msgpack.Unpacker(max_buffer_size=len(response))
    unpacker.feed(response[question_end:])
    try:
        for _ in range(3):
            unpacker.skip()
        size = unpacker.unpack()
    except Exception:
        size = None
    return size if type(size) is int and 0 <= size <= 0xFFFF else DEFAULT_UDP_SIZE


class LogLimiter:
    """Bounds the log lines of faults one packet can cause (a bad signature,
    a malformed message): at most `burst` lines of each kind per `period`
    seconds. The lines held back are counted: `summaries` reports them
    ("N more in the last T s") once their period is over.
    """

    __slots__ = ("burst", "period", "_kinds", "_due")

    def __init__(self, burst: int = DEFAULT_LOG_BURST,
                 period: float = DEFAULT_LOG_PERIOD) -> None:
        self.burst = burst
        self.period = period
        #: kind -> [period start, lines logged, lines held back]
        self._kinds: dict[str, list] = {}
        #: Summaries of periods that ended, not yet reported.
        self._due: list[tuple[str, int, float]] = []

    def should_log(self, kind: str, now: float) -> bool:
        """True if a line of `kind` may be written now (it is counted);
        False if it is held back (counted for `summaries`)."""
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = [now, 0, 0]
        elif now - state[0] >= self.period:
            if state[2]:
                self._due.append((kind, state[2], now - state[0]))
            state[0], state[1], state[2] = now, 0, 0
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False

    def summaries(self, now: float, *, final: bool = False) -> list[tuple[str, int, float]]:
        """(kind, lines held back, over how many seconds) for each period
        that is over and held lines back (with `final`: every period, as
        at exit); those are reported once."""
        due, self._due = self._due, []
        for kind, state in self._kinds.items():
            if state[2] and (final or now - state[0] >= self.period):
                due.append((kind, state[2], now - state[0]))
                state[0], state[1], state[2] = now, 0, 0
        return due


#: Registry requests (UPDATE) a client prefix may send at once, and the
#: rate (per second) at which it may send more. A registration takes an
#: owner two requests (REGISTER, CONFIRM); 30 at once lets a few owners
#: behind one NAT register together, while a flood from one prefix is
#: REFUSED after 30, as BIND's rate-limit counts per /24 and /56.
UPDATE_BURST = 30
UPDATE_RATE = 1.0


class RequestLimiter:
    """A token bucket per client prefix (`client_prefix`): `burst` requests
    at once, refilled at `rate` a second. Memory is bounded by
    `max_prefixes`: past it, the full buckets (idle prefixes) are dropped,
    and if that frees too little, the table starts over."""

    __slots__ = ("rate", "burst", "max_prefixes", "refused", "_table")

    def __init__(self, rate: float = UPDATE_RATE, burst: int = UPDATE_BURST,
                 max_prefixes: int = MAX_PREFIXES) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_prefixes = max_prefixes
        #: Requests refused since the start.
        self.refused = 0
        self._table: dict[str, list[float]] = {}  # prefix -> [tokens, time]

    def allow(self, host: str, now: float) -> bool:
        """Whether a request from `host` at `now` (seconds) may be served
        (and count it)."""
        prefix = client_prefix(host)
        bucket = self._table.get(prefix)
        if bucket is None:
            if len(self._table) >= self.max_prefixes:
                self._prune(now)
            bucket = self._table[prefix] = [float(self.burst), now]
        tokens = min(float(self.burst), bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            self.refused += 1
            return False
        bucket[0] = tokens - 1.0
        return True

    def _prune(self, now: float) -> None:
        table = self._table
        for prefix in [p for p, (tokens, at) in table.items()
                       if tokens + (now - at) * self.rate >= self.burst]:
            del table[prefix]
        if len(table) > self.max_prefixes // 2:
            table.clear()

    def __len__(self) -> int:
        """Prefixes tracked."""
        return len(self._table)
