"""Iterative resolution from the root hints (sans-IO decision logic).

A `Resolver` holds what outlives one question: the record `Cache`, what we
learned about servers (smoothed RTT, failures), the root hints and limits.
The root hints are pinned (no cache eviction touches them) and kept fresh by
priming (RFC 8109), which the shell drives as it drives any resolution:

    if resolver.priming_wait(now) == 0:
        res = resolver.start_priming(now)   # asks the root for ". NS"
        ...                                 # driven as below
        resolver.finish_priming(done, now)  # new hints, or the old kept
`Resolver.start` returns a `Resolution` for one client question; a shell
(the trio daemon) drives it:

    res = resolver.start(question, now)
    while not isinstance(action := res.next_action(now), Done):
        # send action.message to action.server (over TCP if action.tcp),
        # wait at most action.timeout, drop datagrams for which
        # response_matches(action, msg, source) is False, then either
        res.on_response(action, msg, now, source)   # or
        res.on_timeout(action, now)                 # or res.on_error(...)
    reply(action.response)   # copy the client's id and RD first

Nothing here does I/O or reads a clock: every `now` is passed in, random
numbers come from the injected `rng`, so a test replays a resolution exactly.
docs/resolver.md describes the algorithm, the limits and the bailiwick rules.
"""

from __future__ import annotations

import ipaddress
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .cache import Cache, Delegation, Rank
from ..protocol.codes import TRANSFER_TYPES, Opcode, Rcode, RType, rcode_to_text, rtype_to_text
from ..protocol.errors import KeyresolveError
from ..protocol.message import Message, Question
from ..protocol.names import ROOT, Name
from ..protocol.records import ADDR, ALIAS, NS, SOA, Record

# -- limits --------------------------------------------------------------------
#: ALIAS records followed for one question; as Unbound's MAX_RESTART_COUNT and
#: BIND's max-query-restarts (11). Longer chains are SERVFAIL.
MAX_ALIAS_CHAIN = 11
#: Nesting of sub-resolutions for glueless NS addresses; as Unbound's default
#: target-fetch-policy "3 2 1 0 0" (dependencies at most 4 deep).
MAX_DEPENDENCY_DEPTH = 4
#: Upstream queries one client question may cost, sub-resolutions included;
#: as Unbound's MAX_SENT_COUNT (32). Bounds amplification (NXNSAttack, 2020).
MAX_QUERIES = 32
#: Seconds one client question may take: a stub (dig) gives up after 5 s, so
#: an answer later than that helps nobody.
RESOLUTION_TIMEOUT = 5.0
#: Bounds of the per-query timeout derived from a server's RTO (RFC 6298).
MIN_QUERY_TIMEOUT = 0.2
MAX_QUERY_TIMEOUT = 2.0
#: Timeout for a server we have no RTT sample of (RFC 6298 2.1: initial RTO 1 s).
UNKNOWN_SERVER_TIMEOUT = 1.0
#: Ceiling of a backed-off RTO (RFC 6298 2.5 allows >= 60 s); used for ranking.
MAX_RTO = 60.0
#: Times one server address is tried per zone cut and question: a second try
#: survives one lost datagram; error answers exclude it at once.
MAX_ATTEMPTS_PER_SERVER = 2
#: Ranking value of a server never measured: a random 1..32 ms, as BIND gives
#: untried servers, so new servers get explored before slow known ones.
UNKNOWN_RTT_RANGE = (0.001, 0.032)
#: What we learned about a server is forgotten after this many idle seconds
#: (Unbound's infra-host-ttl, 900 s), so a server that was down is retried.
INFRA_TTL = 900.0
#: Half-life of a server's failure count (seconds): failures decay away.
FAILURE_HALF_LIFE = 60.0
#: A server whose decayed failure count reaches this is held down: ranked
#: after every other server until its failures decay.
HOLD_DOWN_FAILURES = 3.0
#: Added to a held-down server's ranking value (more than any real RTO).
HOLD_DOWN_PENALTY = 2 * MAX_RTO
#: Servers remembered at most (LRU); bounds memory under hostile delegations.
MAX_SERVER_STATS = 10_000
#: Per-server notes kept in a SERVFAIL reason (keeps log lines short).
MAX_REASON_NOTES = 6
#: Shortest time root hints learned by priming are kept before the next
#: priming, whatever the root NS TTL says, so a zero TTL cannot make the
#: resolver ask the root without end (Unbound's cache-min-ttl plays that role).
PRIMING_MIN_TTL = 60.0
#: Wait after a failed priming before the next try; the old hints are kept
#: meanwhile (RFC 8109 3: a resolver retries priming; Unbound retries on the
#: next query, which under load is at once: a minute bounds that).
PRIMING_RETRY = 60.0
#: RFC 6298 2.3 smoothing gains.
RTT_ALPHA = 1 / 8
RTT_BETA = 1 / 4


Server = tuple[str, int]


# -- actions -------------------------------------------------------------------
@dataclass(frozen=True, eq=False, slots=True)
class Send:
    """Send `message` to `server` and report the response or timeout.

    `zone_cut` is the zone the server was asked as (what `dig --trace` prints);
    `server_name` the NS name the address came from (None for an address
    shared by several names, the first one wins); `tcp` asks for TCP (after a
    truncated UDP answer). Identity matters: pass the very object back.
    """

    server: Server
    message: Message
    timeout: float
    zone_cut: Name
    server_name: Name | None
    tcp: bool
    sent_at: float


@dataclass(frozen=True, slots=True)
class Done:
    """The final answer for the stub: RA set, AA clear, id 0 (the shell copies
    the client's id and RD). `reason` says why on SERVFAIL (for the log)."""

    response: Message
    reason: str | None = None

    @property
    def rcode(self) -> int:
        """The response code of the answer."""
        return self.response.rcode


class TraceOutcome(StrEnum):
    """What one upstream exchange gave (its value is what `dig --trace` prints)."""

    ANSWER = "answer"  # the records asked for
    ALIAS = "alias"  # an ALIAS to follow (or that ended the resolution)
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists without records of the type
    REFERRAL = "referral"  # a delegation to a zone closer to the name
    TRUNCATED = "truncated"  # TC set: asked again over TCP
    TIMEOUT = "timeout"  # no answer in time
    ERROR = "error"  # a lame, failing or unusable server


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One upstream exchange, for `dig --trace` and logs.

    `outcome` says what it gave; `detail` says more (the rcode, why a server
    is lame, ...). `depth` is 0 for the client question, 1+ inside NS
    address lookups.
    """

    depth: int
    question: Question
    server: Server
    server_name: Name | None
    zone_cut: Name
    outcome: TraceOutcome
    rtt: float | None
    referral: Name | None = None
    detail: str = ""


def response_matches(send: Send, response: Message, source: Server | None = None) -> bool:
    """True if `response` answers `send`: QR set, same opcode, id and question
    (RFC 5452 9.1), and, when `source` is given, from the address asked.
    A shell drops anything else and keeps waiting."""
    if source is not None and not _same_server(source, send.server):
        return False
    query = send.message
    return (response.qr and response.opcode == query.opcode and response.id == query.id
            and response.question == query.question)


def _server_text(server: Server) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _same_server(a: Server, b: Server) -> bool:
    if a == b:
        return True  # the usual case (a connected socket): no address parsing
    if a[1] != b[1]:
        return False
    try:
        ip_a, ip_b = ipaddress.ip_address(a[0]), ipaddress.ip_address(b[0])
    except ValueError:
        return a[0] == b[0]
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    ip_a = getattr(ip_a, "ipv4_mapped", None) or ip_a
    ip_b = getattr(ip_b, "ipv4_mapped", None) or ip_b
    return ip_a == ip_b


# -- server statistics -----------------------------------------------------------
@dataclass(slots=True)
class ServerStats:
    """What we know about one server address: RTT estimate and failures."""

    srtt: float | None = None
    rttvar: float = 0.0
    #: Retransmission timeout (RFC 6298): srtt + 4 rttvar, doubled per timeout.
    rto: float = UNKNOWN_SERVER_TIMEOUT
    failures: float = 0.0
    failed_at: float = 0.0
    updated: float = 0.0

    def decayed_failures(self, now: float) -> float:
        """The failure count, halved every `FAILURE_HALF_LIFE` seconds."""
        age = max(0.0, now - self.failed_at)
        decay: float = 0.5 ** (age / FAILURE_HALF_LIFE)  # real: the base is positive
        return self.failures * decay

    def sample(self, rtt: float, now: float) -> None:
        """Fold in a measured round trip (RFC 6298 2.2, 2.3); resets backoff."""
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - RTT_BETA) * self.rttvar + RTT_BETA * abs(self.srtt - rtt)
            self.srtt = (1 - RTT_ALPHA) * self.srtt + RTT_ALPHA * rtt
        self.rto = min(self.srtt + 4 * self.rttvar, MAX_RTO)
        self.updated = now

    def fail(self, now: float) -> None:
        """Count a failure (timeout, error answer, lameness)."""
        self.failures = self.decayed_failures(now) + 1
        self.failed_at = now
        self.updated = now


# -- the resolver ----------------------------------------------------------------
class Resolver:
    """Long-lived resolver state: cache, server statistics, root hints, limits."""

    def __init__(self, root_hints: Sequence[tuple[Name, ADDR]], cache: Cache | None = None, *,
                 rng: random.Random | None = None, max_queries: int = MAX_QUERIES,
                 resolution_timeout: float = RESOLUTION_TIMEOUT) -> None:
        """`root_hints` pairs root server names with addresses; `rng` draws
        query ids and exploration jitter (default: the OS's CSPRNG, since ids
        are a defence against spoofed answers, RFC 5452)."""
        if not root_hints:
            raise KeyresolveError("the resolver needs at least one root hint")
        #: The root's NS names and addresses: pinned, never evicted, replaced
        #: only by a priming that gave at least one address.
        self.root_hints = list(root_hints)
        #: When the hints are due for priming (None: now, they come from a file).
        self.hints_expire: float | None = None
        self.cache = cache if cache is not None else Cache()
        self.rng = rng if rng is not None else random.SystemRandom()
        self.max_queries = max_queries
        self.resolution_timeout = resolution_timeout
        self._stats: OrderedDict[Server, ServerStats] = OrderedDict()

    def start(self, question: Question, now: float) -> Resolution:
        """Begin resolving `question` at time `now`."""
        return Resolution(self, question, now)

    def root_delegation(self) -> Delegation:
        """The root cut from the hints."""
        names: list[Name] = []
        addrs: dict[Name, list[ADDR]] = {}
        for name, addr in self.root_hints:
            if name not in addrs:
                names.append(name)
                addrs[name] = []
            addrs[name].append(addr)
        return Delegation(ROOT, names, addrs)

    # -- priming (RFC 8109) ---------------------------------------------------------
    def priming_wait(self, now: float) -> float:
        """Seconds until the root hints are due for priming (0: now)."""
        if self.hints_expire is None:
            return 0.0
        return max(0.0, self.hints_expire - now)

    def start_priming(self, now: float) -> Resolution:
        """A resolution of ". NS" at the root hints' servers, past the cache.
        Its `Done` carries the root servers' addresses in the additional
        section; hand it to `finish_priming`."""
        return Resolution(self, Question(ROOT, RType.NS), now, priming=True)

    def finish_priming(self, done: Done, now: float) -> bool:
        """Take the root NS set and the addresses of its servers from a
        priming answer as the new hints, until the lowest of their TTLs ends
        (at least `PRIMING_MIN_TTL`, at most the cache's `max_ttl`). A server
        named without an address keeps the one the old hints had. False, the
        old hints kept and priming due again in `PRIMING_RETRY`, if the
        answer gives no usable server."""
        response = done.response
        ns_records = [r for r in response.answer if r.name == ROOT and isinstance(r.rdata, NS)]
        targets = list(dict.fromkeys(r.rdata.target for r in ns_records
                                     if isinstance(r.rdata, NS)))
        glue = [r for r in response.additional if r.name in targets and isinstance(r.rdata, ADDR)]
        old = self.root_hints
        hints: list[tuple[Name, ADDR]] = []
        for target in targets:
            found = [r.rdata for r in glue if r.name == target and isinstance(r.rdata, ADDR)]
            hints += [(target, addr) for addr in found or
                      [addr for name, addr in old if name == target]]
        if done.rcode != Rcode.NOERROR or not hints:
            self.hints_expire = now + PRIMING_RETRY
            return False
        ttl = min(r.ttl for r in ns_records + glue)
        self.root_hints = hints
        self.hints_expire = now + min(max(ttl, PRIMING_MIN_TTL), self.cache.max_ttl)
        return True

    # -- server statistics --------------------------------------------------------
    def server_stats(self, server: Server, now: float) -> ServerStats | None:
        """What we know about `server`, or None (never seen, or forgotten)."""
        stats = self._stats.get(server)
        if stats is not None and now - stats.updated > INFRA_TTL:
            del self._stats[server]
            return None
        return stats

    def selection_key(self, server: Server, now: float) -> float:
        """Lower is preferred: the RTO (smoothed RTT plus variance, backed off
        on timeouts), a random small value for unknown servers, and a penalty
        while held down after repeated failures."""
        stats = self.server_stats(server, now)
        if stats is None:
            return self.rng.uniform(*UNKNOWN_RTT_RANGE)
        key = stats.rto
        if stats.decayed_failures(now) >= HOLD_DOWN_FAILURES:
            key += HOLD_DOWN_PENALTY
        return key

    def query_timeout(self, server: Server, now: float) -> float:
        """How long to wait for `server`: its RTO clamped to the query bounds."""
        stats = self.server_stats(server, now)
        rto = UNKNOWN_SERVER_TIMEOUT if stats is None else stats.rto
        return min(max(rto, MIN_QUERY_TIMEOUT), MAX_QUERY_TIMEOUT)

    def record_answer(self, server: Server, rtt: float, now: float) -> None:
        """A usable answer came back after `rtt` seconds."""
        stats = self._touch(server, now)
        stats.sample(rtt, now)
        stats.failures = 0.0

    def record_error(self, server: Server, rtt: float, now: float) -> None:
        """An answer came back but was useless (error rcode, lame, garbage)."""
        stats = self._touch(server, now)
        stats.sample(rtt, now)
        stats.fail(now)

    def record_timeout(self, server: Server, waited: float, now: float) -> None:
        """No answer within `waited` seconds: back off (RFC 6298 5.5)."""
        stats = self._touch(server, now)
        stats.rto = min(max(stats.rto, waited) * 2, MAX_RTO)
        stats.fail(now)

    def _touch(self, server: Server, now: float) -> ServerStats:
        stats = self.server_stats(server, now)
        if stats is None:
            stats = self._stats[server] = ServerStats(updated=now)
            while len(self._stats) > MAX_SERVER_STATS:
                self._stats.popitem(last=False)
        self._stats.move_to_end(server)
        return stats


# -- one resolution --------------------------------------------------------------
@dataclass(slots=True)
class _Budget:
    """Limits shared by a resolution and its sub-resolutions."""

    deadline: float
    timeout: float
    max_queries: int
    queries: int = 0
    trace: list[TraceEntry] = field(default_factory=list)


@dataclass(slots=True)
class _Cut:
    """The zone cut being asked and the state of its servers."""

    name: Name
    ns: list[Name]
    addrs: dict[Name, list[ADDR]]
    from_cache: bool
    attempts: dict[Server, int] = field(default_factory=dict)
    #: Some server answered uselessly (error rcode, lame referral).
    lame_seen: bool = False
    glueless_tried: set[Name] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def servers(self) -> dict[Server, Name]:
        """Every known server address, with the first NS name that has it."""
        out: dict[Server, Name] = {}
        for ns in self.ns:
            for addr in self.addrs.get(ns, ()):
                out.setdefault((addr.host, addr.port), ns)
        return out


class Resolution:
    """The resolution of one question: a state machine driven by a shell."""

    def __init__(self, resolver: Resolver, question: Question, now: float, *,
                 budget: _Budget | None = None, depth: int = 0,
                 stack: tuple[Question, ...] = (), priming: bool = False) -> None:
        """Use `Resolver.start` (or `Resolver.start_priming`); the keyword
        arguments are for sub-resolutions."""
        self.resolver = resolver
        self._priming = priming
        self.question = question
        self.depth = depth
        if budget is None:
            budget = _Budget(now + resolver.resolution_timeout, resolver.resolution_timeout,
                             resolver.max_queries)
        self._budget = budget
        self._stack = stack  # questions the enclosing resolutions are working on
        self._qname = question.name  # moves along ALIAS chains
        self._qtype = question.rtype
        self._chain: list[Record] = []
        self._seen: set[Name] = {question.name}
        self._cut: _Cut | None = None
        self._pending: Send | None = None
        self._tcp_retry: Server | None = None
        self._child: Resolution | None = None
        self._child_ns: Name | None = None
        self._done: Done | None = None
        if question.rtype in TRANSFER_TYPES:
            self._done = self._reply(Rcode.NOTIMP, reason="transfers are not resolved")

    # -- public ------------------------------------------------------------------
    @property
    def queries(self) -> int:
        """Upstream queries sent so far (sub-resolutions included)."""
        return self._budget.queries

    @property
    def trace(self) -> list[TraceEntry]:
        """Every upstream exchange so far, sub-resolutions included, in order."""
        return self._budget.trace

    @property
    def done(self) -> Done | None:
        """The final answer once there is one."""
        return self._done

    def next_action(self, now: float) -> Send | Done:
        """The next thing to do: send a query, or answer the client.

        Raises KeyresolveError if a query is still in flight (report its
        response or timeout first).
        """
        if self._done is not None:
            return self._done
        if self._pending is not None:
            raise KeyresolveError("a query is in flight: report its response or timeout first")
        while True:
            if self._child is not None:
                action = self._child.next_action(now)
                if isinstance(action, Send):
                    return action
                self._child_finished(action)
                continue
            step = self._step(now)
            if step is not None:
                return step

    def on_response(self, send: Send, response: Message, now: float,
                    source: Server | None = None) -> bool:
        """Feed the response to `send`. Returns False, changing nothing, if it
        does not match (`response_matches`) or `send` is not in flight."""
        if self._child is not None:
            return self._child.on_response(send, response, now, source)
        if send is not self._pending or not response_matches(send, response, source):
            return False
        self._pending = None
        self._handle(send, response, max(0.0, now - send.sent_at), now)
        return True

    def on_timeout(self, send: Send, now: float) -> bool:
        """`send` got no answer in time. False if it is not in flight."""
        if self._child is not None:
            return self._child.on_timeout(send, now)
        if send is not self._pending:
            return False
        self._pending = None
        self.resolver.record_timeout(send.server, send.timeout, now)
        if self._cut is not None:
            self._cut.notes.append(f"{_server_text(send.server)}: timeout")
        self._note(send, TraceOutcome.TIMEOUT, None, detail=f"no answer in {send.timeout:.3f} s")
        return True

    def on_error(self, send: Send, now: float, reason: str) -> bool:
        """`send` failed locally (unreachable, connection reset, undecodable
        TCP reply): the server is skipped for this question and penalised."""
        if self._child is not None:
            return self._child.on_error(send, now, reason)
        if send is not self._pending:
            return False
        self._pending = None
        self.resolver.record_timeout(send.server, send.timeout, now)
        self._exclude(send.server)
        if self._cut is not None:
            self._cut.notes.append(f"{_server_text(send.server)}: {reason}")
        self._note(send, TraceOutcome.ERROR, None, detail=reason)
        return True

    # -- the loop ------------------------------------------------------------------
    def _step(self, now: float) -> Send | Done | None:
        """One decision; None means state changed, decide again."""
        if self._cut is None:
            if not self._priming and (done := self._from_cache(now)) is not None:
                return done
            self._cut = self._cut_for(self._qname, now)
        cut = self._cut
        budget = self._budget
        if now >= budget.deadline:
            return self._fail(f"resolution time limit ({budget.timeout:g} s) exceeded")
        if budget.queries >= budget.max_queries:
            return self._fail(f"upstream query limit ({budget.max_queries}) reached")
        retry = self._tcp_retry
        if retry is not None:
            self._tcp_retry = None
            return self._send(retry, now, tcp=True)
        server = self._pick_server(now)
        if server is not None:
            return self._send(server, now, tcp=False)
        ns = self._pick_glueless()
        if ns is not None:
            self._child_ns = ns
            self._child = Resolution(
                self.resolver, Question(ns, RType.ADDR), now, budget=budget,
                depth=self.depth + 1, stack=self._stack + (Question(self._qname, self._qtype),))
            return None
        if cut.from_cache and cut.name != ROOT and (not cut.attempts or cut.lame_seen):
            # A cached cut whose servers are unusable (its glue expired before
            # its NS) or lame (re-delegated since): start again one level up,
            # which fetches the delegation afresh from the parent. Not after
            # timeouts only: the parent would name the same servers.
            self._cut = self._cut_for(cut.name.parent(), now)
            return None
        notes = cut.notes or ["no usable server address"]
        if len(notes) > MAX_REASON_NOTES:
            notes = notes[:MAX_REASON_NOTES] + [f"{len(notes) - MAX_REASON_NOTES} more"]
        return self._fail(f"no server of zone {cut.name} answered ({'; '.join(notes)})")

    def _from_cache(self, now: float) -> Done | None:
        """Answer from the cache, following cached ALIAS records."""
        cache = self.resolver.cache
        if self._qtype == RType.ANY:
            return None
        while True:
            found = cache.get(self._qname, self._qtype, now)
            if found:
                return self._finish_answer(found)
            if self._qtype != RType.ALIAS:
                alias = cache.get(self._qname, RType.ALIAS, now)
                if alias:
                    if not self._follow(alias[0]):
                        return self._done
                    continue
            negative = cache.get_negative(self._qname, self._qtype, now)
            if negative is not None:
                return self._finish_negative(negative.rcode, negative.soa)
            return None

    def _cut_for(self, name: Name, now: float) -> _Cut:
        """The deepest cached cut enclosing `name`, or the root hints."""
        delegation = self.resolver.cache.find_delegation(name, now)
        if delegation is None:
            return _Cut(*self.resolver.root_delegation(), from_cache=False)
        return _Cut(*delegation, from_cache=True)

    def _pick_server(self, now: float) -> Server | None:
        """The untried (or least tried) server with the best ranking."""
        cut = self._cut
        assert cut is not None
        best: tuple[int, float, Server] | None = None
        for server in cut.servers():
            tries = cut.attempts.get(server, 0)
            if tries >= MAX_ATTEMPTS_PER_SERVER:
                continue
            key = (tries, self.resolver.selection_key(server, now), server)
            if best is None or key < best:
                best = key
        return None if best is None else best[2]

    def _pick_glueless(self) -> Name | None:
        """An NS name without an address worth resolving, or None."""
        cut = self._cut
        assert cut is not None
        for ns in cut.ns:
            if cut.addrs.get(ns) or ns in cut.glueless_tried:
                continue
            cut.glueless_tried.add(ns)
            question = Question(ns, RType.ADDR)
            if ns.is_subdomain(cut.name):
                # Finding it would need this very zone's servers.
                cut.notes.append(f"{ns} is inside the zone but has no glue")
            elif self.depth + 1 > MAX_DEPENDENCY_DEPTH:
                cut.notes.append(f"{ns}: dependency depth limit ({MAX_DEPENDENCY_DEPTH})")
            elif question in self._stack or question == Question(self._qname, self._qtype):
                cut.notes.append(f"{ns}: circular dependency")
            else:
                return ns
        return None

    def _child_finished(self, done: Done) -> None:
        """A sub-resolution for an NS address ended."""
        ns, cut = self._child_ns, self._cut
        assert ns is not None and cut is not None
        self._child = self._child_ns = None
        addrs = [r.rdata for r in done.response.answer if isinstance(r.rdata, ADDR)]
        if done.rcode == Rcode.NOERROR and addrs:
            cut.addrs[ns] = addrs
        else:
            why = done.reason or rcode_to_text(done.rcode)
            cut.notes.append(f"{ns}: no address ({why})")

    def _send(self, server: Server, now: float, tcp: bool) -> Send:
        cut = self._cut
        assert cut is not None
        message = Message(id=self.resolver.rng.getrandbits(16), opcode=Opcode.QUERY,
                          question=Question(self._qname, self._qtype))
        timeout = min(self.resolver.query_timeout(server, now), self._budget.deadline - now)
        send = Send(server, message, timeout, cut.name, cut.servers().get(server), tcp, now)
        cut.attempts[server] = cut.attempts.get(server, 0) + 1
        self._budget.queries += 1
        self._pending = send
        return send

    # -- responses -----------------------------------------------------------------
    def _handle(self, send: Send, response: Message, rtt: float, now: float) -> None:
        """Classify a matching response and move on (RFC 1034 5.3.3 step 4)."""
        resolver, server = self.resolver, send.server
        if response.tc:
            if send.tcp:
                self._lame(send, rtt, now, "truncated answer over TCP")
                return
            resolver.record_answer(server, rtt, now)
            self._tcp_retry = server  # RFC 7766 5: retry the same server over TCP
            self._note(send, TraceOutcome.TRUNCATED, rtt, detail="retrying over TCP")
            return
        if response.rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
            self._lame(send, rtt, now, f"answered {rcode_to_text(response.rcode)}")
            return
        # Bailiwick: a server asked as zone Z speaks only for names at or
        # below Z; anything else in any section is dropped unseen.
        zone = send.zone_cut
        answer = [r for r in response.answer if r.name.is_subdomain(zone)]
        authority = [r for r in response.authority if r.name.is_subdomain(zone)]
        additional = [r for r in response.additional if r.name.is_subdomain(zone)]
        cache = resolver.cache
        # AA speaks for the query name only; records further down an ALIAS
        # chain rank as non-authoritative answer data (RFC 2181 5.4.1).
        rank = Rank.AUTH_ANSWER if response.aa else Rank.NONAUTH_ANSWER
        qtype = self._qtype
        followed = False
        while True:  # walk the ALIAS chain inside this answer
            if followed:
                rank = Rank.NONAUTH_ANSWER
            owned = [r for r in answer if r.name == self._qname]
            final = owned if qtype == RType.ANY else [r for r in owned if r.rtype == qtype]
            if final:
                resolver.record_answer(server, rtt, now)
                if self._priming:
                    self._note(send, TraceOutcome.ANSWER, rtt)
                    self._finish_priming(final, additional)
                    return
                if qtype != RType.ANY:
                    # A sub-resolution finds a name server's address: infrastructure.
                    cache.put(final, rank, now, infra=self.depth > 0)
                self._note(send, TraceOutcome.ANSWER, rtt)
                self._finish_answer(final)
                return
            aliases = [r for r in owned if r.rtype == RType.ALIAS]
            if qtype == RType.ALIAS or not aliases:
                break
            cache.put(aliases, rank, now, infra=self.depth > 0)
            followed = True
            if not self._follow(aliases[0]):
                resolver.record_answer(server, rtt, now)
                reason = (self._done.reason or "") if self._done else ""
                self._note(send, TraceOutcome.ALIAS, rtt, detail=reason)
                return
        name = self._qname
        # RFC 2308 2: the SOA of the zone holding the name proves a negative.
        soas = [r for r in authority if r.rtype == RType.SOA and isinstance(r.rdata, SOA)
                and name.is_subdomain(r.name)]
        soa = soas[0] if soas else None
        if response.rcode == Rcode.NXDOMAIN and (soa is not None or response.aa):
            # After an ALIAS, NXDOMAIN is about the last target (RFC 6604 2.1).
            resolver.record_answer(server, rtt, now)
            if soa is not None:
                cache.put_nxdomain(name, soa, now)
            self._note(send, TraceOutcome.NXDOMAIN, rtt)
            self._finish_negative(Rcode.NXDOMAIN, soa and self._negative_soa(soa))
            return
        if response.rcode == Rcode.NOERROR and soa is not None:
            resolver.record_answer(server, rtt, now)
            cache.put_nodata(name, qtype, soa, now)
            self._note(send, TraceOutcome.NODATA, rtt)
            self._finish_negative(Rcode.NOERROR, self._negative_soa(soa))
            return
        ns_records = [r for r in authority if r.rtype == RType.NS and isinstance(r.rdata, NS)]
        if response.rcode == Rcode.NOERROR and ns_records and not response.aa:
            problem = self._referral_problem(zone, ns_records)
            if problem is None:
                self._referral(send, rtt, now, ns_records, additional)
                return
            if not followed:
                self._lame(send, rtt, now, problem)
                return
        if followed:
            # The target lies outside this server's zone: iterate for it anew.
            resolver.record_answer(server, rtt, now)
            self._note(send, TraceOutcome.ALIAS, rtt, detail=f"continuing at {name}")
            return
        if response.rcode == Rcode.NOERROR and response.aa:
            # NODATA without SOA: believable, but nothing says for how long.
            resolver.record_answer(server, rtt, now)
            self._note(send, TraceOutcome.NODATA, rtt, detail="no SOA, not cached")
            self._finish_negative(Rcode.NOERROR, None)
            return
        self._lame(send, rtt, now, "neither answer, referral nor SOA")

    def _referral_problem(self, zone: Name, ns_records: list[Record]) -> str | None:
        """Why a referral is unacceptable, or None if it is fine."""
        owners = {r.name for r in ns_records}
        if len(owners) != 1:
            return "referral to several zones"
        cut = owners.pop()
        if cut.is_mailbox:
            return f"referral to mailbox {cut}"
        # Only downward: strictly below the zone asked, and enclosing the
        # name (an upward or sideways referral is lame, RFC 1034 5.3.3 4c).
        if cut == zone or not cut.is_subdomain(zone):
            return f"upward or sideways referral to {cut}"
        if not self._qname.is_subdomain(cut):
            return f"referral to {cut}, which does not enclose {self._qname}"
        return None

    def _referral(self, send: Send, rtt: float, now: float, ns_records: list[Record],
                  additional: list[Record]) -> None:
        """Descend to the delegated zone; cache its NS and in-zone glue."""
        resolver, cache = self.resolver, self.resolver.cache
        cut = ns_records[0].name
        targets = list(dict.fromkeys(r.rdata.target for r in ns_records
                                     if isinstance(r.rdata, NS)))
        cache.put(ns_records, Rank.GLUE, now)
        addrs: dict[Name, list[ADDR]] = {}
        for target in targets:
            # Glue only for targets inside the delegated zone: the parent has
            # no say over addresses elsewhere (sibling glue is ignored too).
            glue = [r for r in additional if r.name == target and r.rtype == RType.ADDR
                    and isinstance(r.rdata, ADDR)]
            if glue and target.is_subdomain(cut):
                cache.put(glue, Rank.GLUE, now)
                addrs[target] = [r.rdata for r in glue if isinstance(r.rdata, ADDR)]
            else:
                known = cache.get(target, RType.ADDR, now, min_rank=Rank.GLUE)
                if known:
                    addrs[target] = [r.rdata for r in known if isinstance(r.rdata, ADDR)]
        resolver.record_answer(send.server, rtt, now)
        self._note(send, TraceOutcome.REFERRAL, rtt, referral=cut)
        self._cut = _Cut(cut, targets, addrs, from_cache=False)
        self._tcp_retry = None

    def _lame(self, send: Send, rtt: float, now: float, why: str) -> None:
        """The server answered uselessly: penalise it, skip it for this cut."""
        self.resolver.record_error(send.server, rtt, now)
        self._exclude(send.server)
        if self._cut is not None:
            self._cut.lame_seen = True
            self._cut.notes.append(f"{_server_text(send.server)}: {why}")
        self._note(send, TraceOutcome.ERROR, rtt, detail=why)

    def _exclude(self, server: Server) -> None:
        if self._cut is not None:
            self._cut.attempts[server] = MAX_ATTEMPTS_PER_SERVER

    def _follow(self, alias: Record) -> bool:
        """Continue at the ALIAS target; False (and SERVFAIL) on a loop or a
        chain longer than `MAX_ALIAS_CHAIN`."""
        rdata = alias.rdata
        assert isinstance(rdata, ALIAS)
        target = rdata.target
        self._chain.append(alias)
        if len(self._chain) > MAX_ALIAS_CHAIN:
            self._fail(f"alias chain longer than {MAX_ALIAS_CHAIN} at {alias.name}")
            return False
        if target in self._seen:
            self._fail(f"alias loop: {alias.name} -> {target}")
            return False
        self._seen.add(target)
        self._qname = target
        self._cut = None
        self._tcp_retry = None
        return True

    def _note(self, send: Send, outcome: TraceOutcome, rtt: float | None, *,
              referral: Name | None = None, detail: str = "") -> None:
        question = send.message.question
        assert question is not None
        self._budget.trace.append(TraceEntry(self.depth, question, send.server,
                                             send.server_name, send.zone_cut, outcome, rtt,
                                             referral, detail))

    # -- final answers ---------------------------------------------------------------
    def _negative_soa(self, soa: Record) -> Record:
        ttl = self.resolver.cache.negative_ttl(soa)
        return Record(soa.name, RType.SOA, ttl, soa.rdata)

    def _capped(self, records: list[Record]) -> list[Record]:
        max_ttl = self.resolver.cache.max_ttl
        return [r if r.ttl <= max_ttl else Record(r.name, r.rtype, max_ttl, r.rdata)
                for r in records]

    def _finish_answer(self, records: list[Record]) -> Done:
        return self._reply(Rcode.NOERROR, answer=self._capped(self._chain + records))

    def _finish_priming(self, ns_records: list[Record], additional: list[Record]) -> Done:
        """The root NS set, with the addresses of its servers the answer gave
        (for `Resolver.finish_priming`; never cached, never sent to a stub)."""
        targets = {r.rdata.target for r in ns_records if isinstance(r.rdata, NS)}
        glue = [r for r in additional if r.name in targets and isinstance(r.rdata, ADDR)]
        return self._reply(Rcode.NOERROR, answer=ns_records, additional=glue)

    def _finish_negative(self, rcode: Rcode, soa: Record | None) -> Done:
        return self._reply(rcode, answer=self._capped(self._chain),
                           authority=[] if soa is None else [soa])

    def _fail(self, reason: str) -> Done:
        question = f"{self.question.name} {rtype_to_text(self.question.rtype)}"
        return self._reply(Rcode.SERVFAIL, reason=f"{question}: {reason}")

    def _reply(self, rcode: Rcode, *, answer: list[Record] | None = None,
               authority: list[Record] | None = None, reason: str | None = None,
               additional: list[Record] | None = None) -> Done:
        message = Message(qr=True, rd=True, ra=True, rcode=rcode, question=self.question,
                          answer=answer or [], authority=authority or [],
                          additional=additional or [])
        self._done = Done(message, reason)
        self._pending = None
        return self._done
