"""The one transfer driver (keyresolve/net/transfer.py) against a real primary
(`keyresolve serve` on port 0) and a primary that breaks the stream off; the
secondary and `keyresolve dig AXFR|IXFR=N` both go through it."""

from __future__ import annotations

import base64
import signal
from functools import partial

import pytest
import trio
from click.testing import CliRunner

import keyresolve.daemons.secondary
import keyresolve.net.transfer
from keyresolve.cli import commands as cli
from keyresolve.protocol import tsig
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.protocol.errors import NetworkError, PeerError
from keyresolve.protocol.message import FrameReader, Message, frame, make_response
from keyresolve.protocol.names import Name
from keyresolve.net.client import read_frame
from keyresolve.net.transfer import run_transfer
from keyresolve.authority.xfr import TransferKind, make_transfer_query
from keyresolve.zonedata.zonefile import parse_zone_text

from .conftest import b64key, write_serve_config

SECRET = base64.b64encode(bytes(range(32))).decode()
XFER = tsig.SharedKey(Name.from_text("xfer."), "hmac-sha256", bytes(range(32)))
ZONE = Name.from_text("example.com")


def zone_text(serial: int, mailboxes: list[str]) -> str:
    lines = ["$ORIGIN example.com.", "$TTL 60", f"@ SOA ns1 hostmaster@ {serial} 3600 60 3600 30",
             "@ NS ns1", "ns1 ADDR 127.0.0.1:9"]
    lines += [f"{m}@ KEY x25519 encrypt {b64key(len(m))}" for m in mailboxes]
    return "\n".join(lines) + "\n"


class Recorder:
    """A TransferWriter that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.added = 0

    def begin_full(self) -> None: self.calls.append("full")
    def begin_delta(self, old_soa) -> None: self.calls.append("delta")
    def begin_additions(self, new_soa) -> None: self.calls.append("additions")
    def delete(self, record) -> None: ...
    def add(self, record) -> None: self.added += 1
    def commit(self, soa) -> None: self.calls.append("commit")
    def abort(self) -> None: self.calls.append("abort")


@pytest.fixture
def primary(tmp_path, start_daemon):
    extra = (f'[keys.xfer]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n')
    config = write_serve_config(tmp_path, {"example.com": zone_text(1, ["alice", "bob"])},
                                extra=extra)
    config.write_text(config.read_text() + 'allow_transfer = ["xfer"]\n')
    daemon = start_daemon("serve", "--config", str(config))
    daemon.zone_file = tmp_path / "example.com.zone"
    return daemon


def transfer(server, rtype, **options):
    writer = Recorder()
    result = trio.run(lambda: run_transfer(server, ZONE, rtype, writer, idle_timeout=5.0,
                                           **options))
    return result, writer


def test_signed_axfr_and_ixfr_from_a_bare_serial(primary):
    result, writer = transfer(primary.address, RType.AXFR, key=XFER)
    assert result.inbound.kind == TransferKind.FULL and result.inbound.serial == 1
    assert writer.calls == ["full", "commit"] and writer.added == 4  # NS, ADDR, 2 KEY; the SOA with commit
    assert result.rcode == Rcode.NOERROR and result.messages >= 1 and result.size > 0
    primary.zone_file.write_text(zone_text(2, ["alice", "erin"]))
    primary.signal(signal.SIGHUP)
    primary.wait_for("reload done")
    result, writer = transfer(primary.address, RType.IXFR, serial=1, key=XFER)  # no SOA record
    assert result.inbound.kind == TransferKind.INCREMENTAL and result.inbound.serial == 2
    assert writer.calls[0] == "delta" and writer.calls[-1] == "commit"
    result, writer = transfer(primary.address, RType.IXFR, serial=2, key=XFER)
    assert result.inbound.kind == TransferKind.UP_TO_DATE and writer.calls == []


def test_unsigned_transfer_is_refused(primary):
    with pytest.raises(PeerError) as refused:
        transfer(primary.address, RType.AXFR)
    assert refused.value.rcode == Rcode.REFUSED
    seen = []
    result, writer = transfer(primary.address, RType.AXFR,
                              on_message=lambda m: seen.append(m.rcode) or bool(m.rcode))
    assert result.rcode == Rcode.REFUSED == seen[0] and result.inbound.kind is None
    assert writer.calls == []


def test_a_cut_stream_aborts_the_writer():
    records = sorted(parse_zone_text(zone_text(3, ["alice"])).records(),
                     key=lambda r: r.rtype != RType.SOA)  # the SOA first

    async def main():
        async def cut(stream):  # an AXFR without its closing SOA, then the end
            query = Message.from_wire(await read_frame(stream, FrameReader()))
            reply = make_response(query)
            reply.answer.extend(records)
            await stream.send_all(frame(reply.to_wire()))
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, cut, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            writer = Recorder()
            with pytest.raises(NetworkError, match="closed"):
                await run_transfer(("127.0.0.1", port), ZONE, RType.AXFR, writer,
                                   idle_timeout=5.0)
            nursery.cancel_scope.cancel()
        return writer

    assert trio.run(main).calls == ["full", "abort"]


def test_an_ixfr_query_from_a_bare_serial():
    query = make_transfer_query(ZONE, RType.IXFR, serial=7)
    [soa] = query.authority
    assert soa.rtype == RType.SOA and soa.name == ZONE and soa.rdata.serial == 7
    with pytest.raises(ValueError):
        make_transfer_query(ZONE, RType.IXFR, soa, serial=7)


def test_dig_and_the_secondary_share_the_driver(primary, monkeypatch, tmp_path):
    assert keyresolve.daemons.secondary.run_transfer is keyresolve.net.transfer.run_transfer
    calls = []
    original = keyresolve.net.transfer.run_transfer

    async def spy(server, zone, rtype, writer, **options):
        calls.append((rtype, options.get("serial")))
        return await original(server, zone, rtype, writer, **options)

    monkeypatch.setattr(keyresolve.net.transfer, "run_transfer", spy)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    host, port = primary.address
    out = CliRunner().invoke(cli.main, ["dig", "example.com", "IXFR=1", f"@{host}", "-p",
                                        str(port), "-y", f"xfer:{SECRET}", "--json"])
    assert out.exit_code == 0, out.output
    assert calls == [(RType.IXFR, 1)] and '"kind": "up_to_date"' in out.output
