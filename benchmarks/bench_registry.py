#!/usr/bin/env python3
"""Registry benchmarks (issue #20): confirmations a second into a large
zone with a secondary following, and a confirmation's way to the secondary.

    python benchmarks/bench_registry.py --keys 1000000 --json registry.json

A primary `keyresolve serve` taking registrations for example.com (the
genzone.py zone of --keys keys), with `notify` to a secondary following it
by IXFR, and a local SMTP server (aiosmtpd, in this process) receiving the
registry's mails. The owners' requests are made with the pure builders of
`keyresolve.registry.messages` and sent over TCP, as `keyresolve register`
sends them.

1. Set-up: every owner (--confirmations + --latency-confirmations of them)
   registers; each confirmation mail is read, its challenge opened and the
   CONFIRM request built (the client's crypto, not timed).
2. Throughput: --clients threads send the first --confirmations CONFIRMs as
   fast as the primary answers them (each is one zone transaction, an
   update-log entry, NOTIFY); confirmations a second from the first send
   to the last answer.
   The primary's and the secondary's CPU per confirmation meanwhile, and
   how the confirmations were grouped into commits, are reported too.
3. Latency: the other --latency-confirmations CONFIRMs are sent at --rate a
   second; from each answer, the secondary is probed over UDP until it
   answers the new key: p50 and p99 (goals 50 and 200 ms at 100 a second).
4. Floor, in the same run, on the primary's store once the daemons are
   stopped: one LMDB write transaction per confirmation writing the node and
   its journal record (`Store.begin`, `replace_node`, `commit`), no
   network, no crypto; the throughput of 2 against it (goal >= 0.5).

Every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import common

from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keyresolve.protocol.codes import RType
from keyresolve.protocol.message import FrameReader, Message, frame, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, KeyAlgorithm, KeyFlag, KeyUsage, Record
from keyresolve.registry import messages as m
from keyresolve.registry.mails import attachment_from_mail
from keyresolve.store.zones import Store

ZONE = Name.from_text("example.com.")
#: Longest wait for one mail, one answer, or one key at the secondary.
WAIT = 60.0


class Mailbox:
    """aiosmtpd's handler: the mails received, by recipient."""

    def __init__(self) -> None:
        self.mails: dict[str, bytes] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.mails[rcpt] = envelope.original_content or envelope.content
        return "250 OK"


class Owner:
    def __init__(self, index: int) -> None:
        self.address = Name.from_text(f"bench-owner-{index}@example.com")
        self.x = X25519PrivateKey.generate()
        self.ed = Ed25519PrivateKey.generate()
        self.encrypt = KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT,
                           self.x.public_key().public_bytes_raw())
        self.sign = KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN,
                        self.ed.public_key().public_bytes_raw())
        self.confirm: bytes | None = None


class Connection:
    """One TCP connection to the primary, kept open."""

    def __init__(self, address: tuple[str, int]) -> None:
        import socket
        self.sock = socket.create_connection(address, timeout=WAIT)
        self.reader = FrameReader()

    def exchange(self, data: bytes) -> Message:
        self.sock.sendall(frame(data))
        while (message := self.reader.next_frame()) is None:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.reader.receive_data(chunk)
        return Message.from_wire(message)


def update(conn: Connection, envelope: bytes, msg_id: int) -> Message:
    reply = conn.exchange(m.make_update(ZONE, envelope, msg_id).to_wire())
    if reply.rcode != 0:
        raise RuntimeError(f"UPDATE answered rcode {reply.rcode}")
    return reply


def registry_keys(address: tuple[str, int]) -> tuple[KEY, KEY]:
    reply = Message.from_wire(common.udp_ask(address, make_query(ZONE, RType.KEY).to_wire()))
    keys = {r.rdata.algorithm: r.rdata for r in reply.answer if r.rtype == RType.KEY}
    return keys[KeyAlgorithm.X25519], keys[KeyAlgorithm.ED25519]


def published(address: tuple[str, int], owner: Owner) -> bool:
    raw = common.udp_ask(address, make_query(owner.address, RType.KEY).to_wire(), timeout=1.0)
    if raw is None:
        return False
    reply = Message.from_wire(raw)
    return any(r.rtype == RType.KEY and r.rdata.key == owner.encrypt.key for r in reply.answer)


def set_up(owners: list[Owner], primary: tuple[str, int], mailbox: Mailbox) -> None:
    """Register every owner, open its challenge, build its CONFIRM."""
    encrypt_key, sign_key = registry_keys(primary)
    conn = Connection(primary)
    for i, owner in enumerate(owners):
        envelope = m.make_request(m.Kind.REGISTER, ZONE,
                                  m.register_fields(owner.address, owner.encrypt, owner.sign),
                                  registry_key=encrypt_key, time=int(time.time()),
                                  signer=owner.ed, random=secrets.token_bytes)
        update(conn, envelope, i & 0xFFFF)
    deadline = time.monotonic() + WAIT + len(owners) * 0.05
    for owner in owners:
        recipient = owner.address.to_text().rstrip(".")
        while recipient not in mailbox.mails:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no mail for {recipient}")
            time.sleep(0.01)
        challenge = m.open_challenge(attachment_from_mail(mailbox.mails[recipient]), owner.x,
                                     sign_key)
        owner.confirm = m.make_request(m.Kind.CONFIRM, ZONE,
                                       m.token_fields(challenge.request_id, challenge.token),
                                       registry_key=encrypt_key, time=int(time.time()),
                                       signer=owner.ed, random=secrets.token_bytes)


def throughput(owners: list[Owner], primary: tuple[str, int], clients: int) -> float:
    """Send every owner's CONFIRM from `clients` threads; confirmations a second."""
    work = list(owners)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            conn = Connection(primary)
            while True:
                with lock:
                    if not work:
                        return
                    owner = work.pop()
                update(conn, owner.confirm, 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT + len(owners))
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(owners) / elapsed


def latency(owners: list[Owner], primary: tuple[str, int], secondary: tuple[str, int],
            rate: float) -> list[float]:
    """Send the CONFIRMs at `rate` a second; for each, seconds from its
    answer to the secondary answering the key."""
    pending: dict[Owner, float] = {}
    done: list[float] = []
    lock = threading.Lock()
    finished = threading.Event()

    def poll() -> None:
        deadline = time.monotonic() + WAIT + len(owners) / rate
        while not (finished.is_set() and not pending) and time.monotonic() < deadline:
            with lock:
                waiting = list(pending.items())
            for owner, answered in waiting:
                if published(secondary, owner):
                    now = time.perf_counter()
                    with lock:
                        pending.pop(owner, None)
                    done.append(now - answered)
            time.sleep(0.0005)

    poller = threading.Thread(target=poll)
    poller.start()
    conn = Connection(primary)
    start = time.perf_counter()
    for i, owner in enumerate(owners):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        update(conn, owner.confirm, 2)
        with lock:
            pending[owner] = time.perf_counter()
    finished.set()
    poller.join(WAIT + len(owners) / rate)
    if pending:
        raise RuntimeError(f"{len(pending)} keys never reached the secondary")
    return sorted(done)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a daemon and its workers."""
    return sum(common.cpu_seconds(p) for p in common.process_tree(pid))


def commit_groups(data_dir: Path, count: int) -> dict:
    """How the throughput's `count` confirmations were committed: the
    commits (distinct serials in the update log) and their mean size."""
    with Store(data_dir) as store:
        entries = [m.LogEntry.from_wire(raw) for raw in store.update_log(ZONE)]
    serials = [entry.serial for entry in entries if entry.op == m.LogOp.PUBLISH][:count]
    commits = len(set(serials))
    return {"commits": commits, "mean_group": round(len(serials) / max(commits, 1), 2)}


def floor(data_dir: Path, count: int) -> float:
    """One write transaction per confirmation (node + journal record, the
    update log too), in process: confirmations a second."""
    keys = [KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, bytes([i % 256]) * 31 + b"\x01",
                int(KeyFlag.REGISTERED)) for i in range(count)]
    with Store(data_dir) as store:
        start = time.perf_counter()
        for i, key in enumerate(keys):
            owner = Name.from_text(f"floor-{i}@example.com")
            with store.begin(ZONE) as txn:
                txn.replace_node(owner, [Record(owner, RType.KEY, 3600, key)])
                txn.log_update(b"x" * 200)
                txn.commit(serial_policy="increment")
        return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--confirmations", type=int, default=300)
    parser.add_argument("--latency-confirmations", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1,
                        help="the primary's `serve --workers` (default 1: one process)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-registry-"))
    zone_file, _ = common.ensure_zone(work / "zones", args.keys, args.seed)
    pdir, sdir = work / "primary", work / "secondary"
    for d in (pdir, sdir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    shutil.copy(zone_file, pdir / "example.com.zone")
    mailbox = Mailbox()
    smtp_port = common.free_port()
    smtp = Controller(mailbox, hostname=common.HOST, port=smtp_port)
    smtp.start()
    pport, sport = common.free_port(), common.free_port()
    secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    keys = f'[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret = "{secret}"\n'
    (pdir / "serve.toml").write_text(
        f'listen = ["{common.HOST}:{pport}"]\ndata_dir = "data"\nlog_level = "info"\n'
        f'max_tcp_per_address = {args.clients + 32}\n{keys}'  # every client is 127.0.0.1
        f'[registry]\nsmtp = "{common.HOST}:{smtp_port}"\nfrom = "keys@example.com"\n'
        f'mail_interval = "1s"\nrate_limit = 100000\n'
        f'[[zones]]\nname = "example.com"\nfile = "example.com.zone"\nregistration = true\n'
        f'allow_transfer = ["xfer"]\nkey = "xfer"\nnotify = ["{common.HOST}:{sport}"]\n')
    (sdir / "serve.toml").write_text(
        f'listen = ["{common.HOST}:{sport}"]\ndata_dir = "data"\nlog_level = "info"\n{keys}'
        f'[[zones]]\nname = "example.com"\nprimaries = ["{common.HOST}:{pport}"]\n'
        f'key = "xfer"\n')
    owners = [Owner(i) for i in range(args.confirmations + args.latency_confirmations)]
    report: dict = {"scenario": "registry", "keys": args.keys, "machine": common.machine_info(),
                    "confirmations": args.confirmations,
                    "latency_confirmations": args.latency_confirmations, "rate": args.rate,
                    "clients": args.clients, "workers": args.workers}
    primary = secondary = None
    try:
        primary = common.start_serve(pdir / "serve.toml", core=None,
                                     args=("--workers", str(args.workers)))
        secondary = common.start_serve(sdir / "serve.toml", core=None)
        secondary.wait_for(r"transfer in example\.com\. .*full", common.DAEMON_TIMEOUT)
        paddr, saddr = (common.HOST, pport), (common.HOST, sport)
        started = time.perf_counter()
        set_up(owners, paddr, mailbox)
        report["set_up_seconds"] = round(time.perf_counter() - started, 2)
        cpu_before = tree_cpu(primary.pid), tree_cpu(secondary.pid)
        report["confirmations_per_second"] = round(
            throughput(owners[:args.confirmations], paddr, args.clients), 1)
        report["cpu_ms_per_confirmation"] = {
            name: round((tree_cpu(daemon.pid) - before) * 1000 / args.confirmations, 3)
            for name, daemon, before in (("primary", primary, cpu_before[0]),
                                         ("secondary", secondary, cpu_before[1]))}
        times = latency(owners[args.confirmations:], paddr, saddr, args.rate)
        report["to_secondary_ms"] = {
            "p50": round(common.percentile(times, 50) * 1000, 2),
            "p99": round(common.percentile(times, 99) * 1000, 2),
            "max": round(times[-1] * 1000, 2), "count": len(times)}
    finally:
        for daemon in (secondary, primary):
            if daemon is not None:
                daemon.stop()
        smtp.stop()
    report["commits"] = commit_groups(pdir / "data", args.confirmations)
    report["floor_per_second"] = round(floor(pdir / "data", args.confirmations), 1)
    report["ratio"] = common.ratio(report["confirmations_per_second"],
                                   report["floor_per_second"])
    report["goals"] = {"ratio >= 0.5": report["ratio"] >= 0.5,
                       "p50 <= 50 ms": report["to_secondary_ms"]["p50"] <= 50,
                       "p99 <= 200 ms": report["to_secondary_ms"]["p99"] <= 200}
    digest = hashlib.sha256(repr(sorted(report)).encode()).hexdigest()[:8]
    report["report_id"] = digest
    common.emit(report, args.json_path)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
