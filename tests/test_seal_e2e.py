"""End to end: an mlkem768x25519 key from keygen, served by a real `serve`,
too big for a UDP answer, fetched over TCP and sealed to."""

from __future__ import annotations

import os

from keyresolve.client.seal import identity_from_pem, make_recipient, open_message, seal
from keyresolve.protocol.codes import Rcode, RType
from keyresolve.cli.keygen import keygen
from keyresolve.protocol.message import Message, make_query
from keyresolve.protocol.names import Name
from keyresolve.protocol.records import KEY, KeyAlgorithm

from .conftest import ask, udp_exchange, write_serve_config

ZONE = """$ORIGIN example.com.
$TTL 3600
@            SOA   ns1 hostmaster@example.com. 2026120601 3600 600 604800 300
@            NS    ns1
ns1          ADDR  127.0.0.1:5302
"""


def test_hybrid_key_is_truncated_over_udp_then_served_whole_over_tcp_and_sealed_to(
        tmp_path, start_daemon):
    pq = Name.from_text("pq@example.com.")
    path, record = keygen(pq, KeyAlgorithm.MLKEM768X25519, tmp_path / "keys")
    assert os.stat(path).st_mode & 0o777 == 0o600
    _, classic = keygen(pq, KeyAlgorithm.X25519, tmp_path / "keys")
    zone = ZONE + record.to_text() + "\n" + classic.to_text() + "\n"
    daemon = start_daemon("serve", "--config", str(write_serve_config(tmp_path, {"example.com": zone})))

    query = make_query(pq, RType.KEY)
    wire = udp_exchange(daemon.address, query.to_wire())
    udp = Message.from_wire(wire)
    assert len(wire) <= 1232 and udp.tc and udp.answer == []
    tcp = ask(daemon.address, query, tcp=True)
    assert tcp.rcode == Rcode.NOERROR and not tcp.tc
    keys = {r.rdata.algorithm: r.rdata for r in tcp.answer}
    assert set(keys) == {KeyAlgorithm.MLKEM768X25519, KeyAlgorithm.X25519}
    hybrid: KEY = keys[KeyAlgorithm.MLKEM768X25519]
    assert hybrid == record.rdata and len(hybrid.key) == 1216

    message = seal(b"post-quantum hello", [make_recipient(hybrid)])
    opened = open_message(message, [identity_from_pem(path.read_bytes())])
    assert opened.plaintext == b"post-quantum hello"
    assert opened.identity.key_id.hex() == hybrid.key_id
