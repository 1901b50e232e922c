"""daemons.secondary.Notifier against a secondary played on a real loopback
UDP socket: one NOTIFY in flight per zone and target, the serials that
arrive meanwhile announced once, the newest, by the next NOTIFY or retry."""

from __future__ import annotations

import socket

import trio

from keyresolve.authority.xfr import notify_response, validate_notify
from keyresolve.daemons.secondary import NOTIFY_TIMEOUT, Notifier
from keyresolve.protocol.codes import RType
from keyresolve.protocol.message import Message
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import SOA, Record

ZONE = Name.from_text("example.com.")
#: Bound of each test (a NOTIFY retry waits NOTIFY_TIMEOUT).
BOUND = 10.0


def soa(serial: int) -> Record:
    return Record(ZONE, RType.SOA, 60, SOA(Name.from_text("ns1.example.com."),
                                           Name.from_text("hostmaster@example.com."),
                                           serial, 3600, 600, 86400, 60))


class Secondary:
    """A UDP socket receiving NOTIFYs; the test decides when to acknowledge."""

    def __init__(self) -> None:
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def bind(self) -> tuple[str, int]:
        await self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()

    async def receive(self) -> tuple[Message, int, tuple]:
        """The next NOTIFY, its serial hint, and where it came from."""
        data, peer = await self.sock.recvfrom(65535)
        query = Message.from_wire(data)
        return query, validate_notify(query).serial, peer

    async def ack(self, query: Message, peer: tuple) -> None:
        await self.sock.sendto(notify_response(query).to_wire(), peer)

    def nothing_waiting(self) -> bool:
        try:
            self.sock._sock.recv(65535, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        return False


async def wait_idle(notifier: Notifier) -> None:
    while notifier.running:
        await trio.sleep(0.001)


def run(body) -> tuple[Secondary, Notifier]:
    """Run `body(secondary, notifier, nursery)` against a fresh secondary
    (bounded by BOUND); the secondary and the notifier once it is done."""
    async def main() -> tuple[Secondary, Notifier]:
        secondary = Secondary()
        notifier = Notifier(ZONE, await secondary.bind())
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                await body(secondary, notifier, nursery)
        return secondary, notifier

    return trio.run(main)


def test_changes_during_a_notify_are_announced_once_by_the_newest_serial():
    async def body(secondary, notifier, nursery) -> None:
        notifier.changed(soa(1), None, nursery)
        query, serial, peer = await secondary.receive()
        assert serial == 1
        for later in (2, 3, 4):  # while the first is not acknowledged
            notifier.changed(soa(later), None, nursery)
        assert notifier.running and len(nursery.child_tasks) == 1
        await secondary.ack(query, peer)
        query, serial, peer = await secondary.receive()
        assert serial == 4  # one more NOTIFY, the newest serial only
        await secondary.ack(query, peer)
        await wait_idle(notifier)

    secondary, _ = run(body)
    assert secondary.nothing_waiting()


def test_a_retry_announces_the_newest_serial():
    async def body(secondary, notifier, nursery) -> None:
        notifier.changed(soa(1), None, nursery)
        _, serial, _ = await secondary.receive()  # not acknowledged
        assert serial == 1
        notifier.changed(soa(2), None, nursery)
        started = trio.current_time()
        query, serial, peer = await secondary.receive()  # the retry
        assert serial == 2 and trio.current_time() - started <= NOTIFY_TIMEOUT + 1
        await secondary.ack(query, peer)
        await wait_idle(notifier)

    secondary, _ = run(body)
    assert secondary.nothing_waiting()


def test_an_unreachable_target_costs_one_task_however_many_changes():
    async def body(secondary, notifier, nursery) -> None:
        for serial in range(1, 1001):
            notifier.changed(soa(serial), None, nursery)
        _, serial, _ = await secondary.receive()
        assert serial == 1000 and len(nursery.child_tasks) == 1
        nursery.cancel_scope.cancel()

    _, notifier = run(body)
    assert not notifier.running
