"""hmac: forged and broken signatures against a live `keyresolve serve` with real keys.

The server holds keys xfer (hmac-sha256) and ops (hmac-sha512), a zone
open to all (example.), one that requires signed queries (private.), and
allows transfers of example. to xfer. Each case sends one forged or broken
signed request over UDP or TCP and checks the reply against
docs/protocol.md 8.4-8.5: header rcode NOTAUTH and a trailer naming
BADSIG or BADKEY (unsigned, empty MAC) or BADTIME (signed over the
request's MAC, the server's time in `other`), while a correct signature,
also on a message whose id a forwarder changed, gets a verified answer.
After each case the known-good query must still be answered, and no log
line may hold a secret.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from pathlib import Path

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Opcode, Rcode, RType, rcode_to_text
from keyresolve.protocol.errors import PeerError
from keyresolve.protocol.message import Message, Signature, make_query
from keyresolve.protocol.names import Name

from .core import Run
from .daemons import (HOSTILE_SOURCES, OPS, PRIVATE_NAME, XFER, Servers, tcp_exchange,
                      udp_exchange)

CASES = {
    "wrongmac": "a MAC of the right length that does not verify: BADSIG",
    "truncmac": "the right MAC cut short (or empty): BADSIG",
    "longmac": "a MAC longer than the algorithm's: BADSIG",
    "wrongkey": "a key name the server does not know: BADKEY",
    "wrongalg": "a known key with another or an unknown algorithm: BADKEY",
    "badtime": "a correct MAC signed outside the fudge window: BADTIME, signed",
    "tampered": "a correctly signed query changed after signing: BADSIG",
    "idswap": "a correctly signed query whose id a forwarder changed: answered",
    "replay": "a signed query sent twice: the second answered as docs/protocol.md 8.4 "
              "allows (verified NOERROR) or refused (NOTAUTH)",
    "replay-strict": "a signed NOTIFY replayed inside the window must get NOTAUTH",
    "transfer": "zone transfers with forged, unlisted or missing signatures",
    "private": "a require_signed zone: unsigned REFUSED, forged NOTAUTH, signed answered",
}
#: The secrets, as they might leak into a log.
_SECRETS = [text for key in (XFER, OPS) for text in
            (base64.b64encode(key.secret).decode(), key.secret.hex())]


class Probe:
    """One case: its rng and the exchanges it made (for the reproducer)."""

    def __init__(self, servers: Servers, rng: random.Random) -> None:
        self.servers = servers
        self.rng = rng
        self.sent: list[str] = []
        self.tcp = rng.random() < 0.3

    def exchange(self, wire: bytes, tcp: bool | None = None) -> Message:
        self.sent.append(wire.hex())
        source = self.rng.choice(HOSTILE_SOURCES)
        over_tcp = self.tcp if tcp is None else tcp
        exchange = tcp_exchange if over_tcp else udp_exchange
        return Message.from_wire(exchange(self.servers.serve.address, wire, source=source))

    def query(self, name: Name | None = None, opcode: int = Opcode.QUERY) -> Message:
        name = name or self.rng.choice([Name.from_text("alice@example."), PRIVATE_NAME])
        rtype = RType.SOA if opcode == Opcode.NOTIFY else RType.KEY
        if opcode == Opcode.NOTIFY:
            name = Name.from_text("example.")
        return make_query(name, rtype, msg_id=self.rng.randrange(1 << 16), opcode=opcode)

    def key(self) -> tsig.SharedKey:
        return self.rng.choice([XFER, OPS])

    def now(self) -> int:
        return int(time.time())


def _sign_with_mac(query: Message, key: tsig.SharedKey, mac: bytes, *, now: int,
                   name: Name | None = None, algorithm: str | None = None) -> bytes:
    """A query whose trailer carries `mac` instead of its own."""
    tsig.sign(query, key, now)
    sig = query.signature
    query.signature = Signature(name or sig.key_name,
                                sig.algorithm if algorithm is None else algorithm,
                                sig.time_signed, sig.fudge, mac, sig.original_id)
    return query.to_wire()


def expect_error(reply: Message, query_id: int, error: int) -> str | None:
    """None if `reply` is the RFC 8945 5.3.2 report of `error` (BADSIG or
    BADKEY: NOTAUTH and an unsigned trailer); else what is wrong."""
    if reply.id != query_id:
        return f"reply id {reply.id}, query id {query_id}"
    if reply.rcode != Rcode.NOTAUTH:
        return f"rcode {rcode_to_text(reply.rcode)}, expected NOTAUTH"
    sig = reply.signature
    if sig is None:
        return "NOTAUTH without a trailer"
    if sig.error != error:
        return f"trailer error {rcode_to_text(sig.error)}, expected {rcode_to_text(error)}"
    if sig.mac != b"":
        return f"{rcode_to_text(error)} report carries a MAC (it must be unsigned)"
    if reply.answer:
        return "a NOTAUTH reply carries answers"
    return None


def expect_answer(reply: Message, query: Message, key: tsig.SharedKey) -> str | None:
    """None if `reply` answers `query` and is signed by `key` over its MAC."""
    if reply.rcode != Rcode.NOERROR or not reply.answer:
        return f"rcode {rcode_to_text(reply.rcode)} with {len(reply.answer)} answers"
    try:
        tsig.verify_response(reply, key, query.signature.mac, int(time.time()))
    except Exception as exc:
        return f"the answer does not verify: {exc}"
    return None


# -- the cases -------------------------------------------------------------------
def wrongmac(p: Probe) -> str | None:
    key, query = p.key(), p.query()
    wire = _sign_with_mac(query, key, p.rng.randbytes(key.mac_size), now=p.now())
    return expect_error(p.exchange(wire), query.id, Rcode.BADSIG)


def truncmac(p: Probe) -> str | None:
    key, query = p.key(), p.query()
    tsig.sign(query, key, p.now())
    mac = query.signature.mac[:p.rng.randrange(key.mac_size)]
    wire = _sign_with_mac(query, key, mac, now=query.signature.time_signed)
    return expect_error(p.exchange(wire), query.id, Rcode.BADSIG)


def longmac(p: Probe) -> str | None:
    query = p.query()
    tsig.sign(query, XFER, p.now())
    mac = query.signature.mac + p.rng.randbytes(p.rng.randint(1, 32))
    wire = _sign_with_mac(query, XFER, mac, now=query.signature.time_signed)
    return expect_error(p.exchange(wire), query.id, Rcode.BADSIG)


def wrongkey(p: Probe) -> str | None:
    query = p.query()
    name = Name.from_text(p.rng.choice(["nobody.", "xfer.example.", "xfer2.", "x" * 60 + "."]))
    forged = tsig.SharedKey(name, p.rng.choice(list(tsig.ALGORITHMS)), XFER.secret)
    return expect_error(p.exchange(tsig.sign(query, forged, p.now())), query.id, Rcode.BADKEY)


def wrongalg(p: Probe) -> str | None:
    key, query = p.key(), p.query()
    algorithm = p.rng.choice([a for a in tsig.ALGORITHMS if a != key.algorithm]
                             + ["hmac-md5", "", "HMAC-SHA256 ", "x" * 255])
    wire = _sign_with_mac(query, key, p.rng.randbytes(key.mac_size), now=p.now(),
                          algorithm=algorithm)
    return expect_error(p.exchange(wire), query.id, Rcode.BADKEY)


def badtime(p: Probe) -> str | None:
    key, query = p.key(), p.query()
    fudge = p.rng.choice([0, 1, 60, 300])
    skew = p.rng.choice([-1, 1]) * (fudge + p.rng.choice([5, 100, 400, 10**6]))
    signed_at = max(0, p.now() + skew)
    reply = p.exchange(tsig.sign(query, key, signed_at, fudge=fudge))
    if reply.rcode != Rcode.NOTAUTH or reply.signature is None:
        return f"rcode {rcode_to_text(reply.rcode)} to a query signed {skew:+d} s off"
    if reply.signature.error != Rcode.BADTIME or len(reply.signature.other) != 6:
        return (f"trailer error {rcode_to_text(reply.signature.error)} with "
                f"{len(reply.signature.other)} bytes of other, expected BADTIME and 6")
    try:  # signed over our MAC, with our time: verifies by our (skewed) clock
        tsig.verify_response(reply, key, query.signature.mac, signed_at)
    except PeerError as exc:
        if exc.rcode != Rcode.BADTIME:
            return f"the BADTIME report verifies as {rcode_to_text(exc.rcode)}"
        return None
    except Exception as exc:
        return f"the BADTIME report does not verify: {exc}"
    return "the BADTIME report verified as a plain answer"


def tampered(p: Probe) -> str | None:
    key, query = p.key(), p.query()
    tsig.sign(query, key, p.now())
    sig = query.signature
    changed = make_query(p.rng.choice([Name.from_text("bob@example."),
                                       Name.from_text("user3@example.")]),
                         RType.KEY, msg_id=query.id, rd=p.rng.random() < 0.5)
    changed.signature = sig  # the first query's trailer on another body
    return expect_error(p.exchange(changed.to_wire()), query.id, Rcode.BADSIG)


def idswap(p: Probe) -> str | None:
    key, query = p.key(), p.query(Name.from_text("alice@example."))
    wire = bytearray(tsig.sign(query, key, p.now()))
    new_id = (query.id + 1 + p.rng.randrange(1000)) & 0xFFFF
    wire[:2] = new_id.to_bytes(2, "big")
    reply = p.exchange(bytes(wire))
    if reply.id != new_id:
        return f"reply id {reply.id}, the forwarded query's {new_id}"
    return expect_answer(reply, query, key)


def replayed(p: Probe) -> str | None:
    key, query = p.key(), p.query(Name.from_text("alice@example."))
    wire = tsig.sign(query, key, p.now())
    first = p.exchange(wire)
    if (problem := expect_answer(first, query, key)) is not None:
        return f"first copy: {problem}"
    second = p.exchange(wire)
    if second.rcode == Rcode.NOERROR:
        problem = expect_answer(second, query, key)
        return None if problem is None else f"replayed copy: {problem}"
    if second.rcode == Rcode.NOTAUTH:
        return None
    return f"replayed copy got rcode {rcode_to_text(second.rcode)}"


def replay_strict(p: Probe) -> str | None:
    """A signed NOTIFY replayed byte for byte inside its window is refused
    with NOTAUTH (docs/protocol.md 8.4: state-changing requests are accepted
    once; a signed query may be replayed, as it changes nothing)."""
    query = p.query(Name.from_text("alice@example."), opcode=Opcode.NOTIFY)
    wire = tsig.sign(query, XFER, p.now())
    p.exchange(wire)
    second = p.exchange(wire)
    if second.rcode != Rcode.NOTAUTH:
        return f"a replayed signed NOTIFY got {rcode_to_text(second.rcode)}, expected NOTAUTH"
    return None


def transfer(p: Probe) -> str | None:
    origin = Name.from_text("example.")
    query = make_query(origin, RType.AXFR, msg_id=p.rng.randrange(1 << 16),
                       opcode=Opcode.TRANSFER)
    kind = p.rng.choice(["forged", "unlisted", "unsigned", "udp"])
    if kind == "forged":
        wire = _sign_with_mac(query, XFER, p.rng.randbytes(32), now=p.now())
        return expect_error(p.exchange(wire, tcp=True), query.id, Rcode.BADSIG)
    if kind == "unlisted":  # ops is a known key the zone does not list
        reply = p.exchange(tsig.sign(query, OPS, p.now()), tcp=True)
    elif kind == "unsigned":
        reply = p.exchange(query.to_wire(), tcp=True)
    else:
        reply = p.exchange(tsig.sign(query, XFER, p.now()), tcp=False)
    if reply.rcode != Rcode.REFUSED or reply.answer:
        return f"{kind} transfer request got {rcode_to_text(reply.rcode)}, expected REFUSED"
    return None


def private(p: Probe) -> str | None:
    query = p.query(PRIVATE_NAME)
    kind = p.rng.choice(["unsigned", "forged", "signed"])
    if kind == "unsigned":
        reply = p.exchange(query.to_wire())
        if reply.rcode != Rcode.REFUSED or reply.answer:
            return f"unsigned query to a require_signed zone got {rcode_to_text(reply.rcode)}"
        return None
    key = p.key()
    if kind == "forged":
        wire = _sign_with_mac(query, key, p.rng.randbytes(key.mac_size), now=p.now())
        return expect_error(p.exchange(wire), query.id, Rcode.BADSIG)
    return expect_answer(p.exchange(tsig.sign(query, key, p.now())), query, key)


PROBES: dict[str, Callable[[Probe], str | None]] = {
    "wrongmac": wrongmac, "truncmac": truncmac, "longmac": longmac, "wrongkey": wrongkey,
    "wrongalg": wrongalg, "badtime": badtime, "tampered": tampered, "idswap": idswap,
    "replay": replayed, "replay-strict": replay_strict, "transfer": transfer,
    "private": private}


def run(state: Run, workdir: Path) -> None:
    with Servers(workdir, resolver=False) as servers:
        state.begin()
        while state.more():
            case, index, rng = state.next_case()
            if not probe(state, servers, case, index, rng):
                break
        else:
            check(state, servers, "end", state.index, [])


def probe(state: Run, servers: Servers, case: str, index: int, rng: random.Random) -> bool:
    p = Probe(servers, rng)
    try:
        problem = PROBES[case](p)
    except Exception as exc:  # no reply, or an undecodable one
        problem = f"{exc.__class__.__name__}: {exc}"
    state.done(case, len(p.sent), "messages")
    if problem is not None:
        state.finding(case, index, problem, {"messages": p.sent, "logs": servers.log_tails()})
        return check(state, servers, case, index, p.sent)
    return check(state, servers, case, index, p.sent, tcp=index % 10 == 0)


def check(state: Run, servers: Servers, case: str, index: int, sent: list[str], *,
          tcp: bool = True) -> bool:
    """The daemon alive, answering, and keeping its secrets out of the log."""
    problems = servers.problems() or servers.check(tcp=tcp)
    log = servers.serve.log
    problems += [f"{servers.serve.label} logged a secret" for s in _SECRETS if s in log][:1]
    for problem in problems:
        state.finding(case, index, problem, {"messages": sent, "logs": servers.log_tails()})
    return not problems


def replay(state: Run, workdir: Path, doc: dict) -> None:
    with Servers(workdir, resolver=False) as servers:
        probe(state, servers, doc["case"], doc["index"], state.rng(doc["case"], doc["index"]))

