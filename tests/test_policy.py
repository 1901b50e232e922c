"""keyresolve.authority.policy: the opcode dispatch tables and `allowed`, the one
check of who may do what (docs/protocol.md 8C.4, 8A, 8D), for every action
x key x peer x zone setting; then the same table through `AuthServer.handle`,
so the daemon decides by it and by nothing else."""

from __future__ import annotations

import contextlib
import itertools
import time

import pytest
import trio

from keyresolve.protocol import tsig
from keyresolve.protocol.codes import ControlCommand, Opcode, Rcode, RType
from keyresolve.cli.config import ServeConfig, ZoneConfig
from keyresolve.protocol.errors import NotAuth, Refused, ServerFailure
from keyresolve.protocol.message import Message, make_query
from keyresolve.protocol.names import Name
from keyresolve.authority.policy import (ALLOW, AUTHORITATIVE_OPCODES, OPCODE_ACTIONS, RESOLVER_OPCODES,
                               Action, Decision, allowed, canonical_address, dispatch_table,
                               is_loopback, is_one_of, serving, transport)
from keyresolve.authority.xfr import make_notify, make_transfer_query
from keyresolve.registry.messages import make_update


def n(text: str) -> Name:
    return Name.from_text(text)


#: One key per list, so a key allowed one thing is tried at every other.
TRANSFER_KEY, NOTIFY_KEY, UPDATE_KEY, ZONE_KEY, CONTROL_KEY, STRANGER = (
    n("xfer."), n("notifier."), n("updater."), n("zone-key."), n("ops."), n("stranger."))
KEYS = {"unsigned": None, "transfer key": TRANSFER_KEY, "notify key": NOTIFY_KEY,
        "update key": UPDATE_KEY, "zone key": ZONE_KEY, "control key": CONTROL_KEY,
        "stranger": STRANGER}
PRIMARY = "192.0.2.53"
PEERS = {"loopback v4": "127.0.0.1", "loopback v6": "::1", "mapped v4": "::ffff:127.0.0.1",
         "other loopback": "127.8.9.10", "scoped v6": "::1%lo", "remote": "192.0.2.7",
         "mapped remote": "::ffff:192.0.2.7", "primary": PRIMARY,
         "mapped primary": f"::ffff:{PRIMARY}"}
LOOPBACK = {"loopback v4", "loopback v6", "mapped v4", "other loopback", "scoped v6"}


def _zone(kind: str, require_signed: bool) -> ZoneConfig | None:
    """'none': no zone of ours; 'primary'; 'registry primary' (registration
    = true); 'secondary' (with a zone key and allow_notify); 'open
    secondary' (neither: unsigned NOTIFY from a primary)."""
    if kind == "none":
        return None
    lists = dict(allow_transfer=[TRANSFER_KEY],
                 require_signed=require_signed)
    if kind in ("primary", "registry primary"):
        return ZoneConfig(name=n("example.com."), allow_notify=[NOTIFY_KEY],
                          registration=kind == "registry primary", **lists)
    if kind == "secondary":
        return ZoneConfig(name=n("example.com."), allow_notify=[NOTIFY_KEY], tsig_key=ZONE_KEY,
                          primaries=[(PRIMARY, 53)], **lists)
    return ZoneConfig(name=n("example.com."), primaries=[(PRIMARY, 53)], **lists)


ZONES = ["none", "primary", "registry primary", "secondary", "open secondary"]


def expected(action: Action, zone: str, require_signed: bool, key: str, peer: str,
             control_loopback: bool) -> Rcode:
    """The rule, restated as the docs state it (8D, 8C.4, 8A)."""
    if action is Action.QUERY:
        signed_only = zone != "none" and require_signed
        return Rcode.REFUSED if signed_only and key == "unsigned" else Rcode.NOERROR
    if action is Action.CONTROL:
        if key == "control key" or (key == "unsigned" and control_loopback and peer in LOOPBACK):
            return Rcode.NOERROR
        return Rcode.REFUSED
    if action is Action.NOTIFY:
        if zone not in ("secondary", "open secondary"):
            return Rcode.NOTAUTH
        if zone == "secondary":
            return Rcode.NOERROR if key in ("zone key", "notify key") else Rcode.REFUSED
        from_primary = peer in ("primary", "mapped primary")
        return Rcode.NOERROR if key == "unsigned" and from_primary else Rcode.REFUSED
    if action is Action.UPDATE:  # anyone, in a registration zone (8E.7 step 2)
        return Rcode.NOERROR if zone == "registry primary" else Rcode.NOTAUTH
    if zone == "none":
        return Rcode.NOTAUTH
    return Rcode.NOERROR if key == "transfer key" else Rcode.REFUSED


CASES = list(itertools.product(Action, ZONES, [False, True], KEYS, PEERS, [True, False]))


@pytest.mark.parametrize(("action", "zone", "require_signed"),
                         list(itertools.product(Action, ZONES, [False, True])))
def test_allowed_follows_the_rule_for_every_key_and_peer(action, zone, require_signed):
    config = _zone(zone, require_signed)
    for key, peer, control_loopback in itertools.product(KEYS, PEERS, [True, False]):
        decision = allowed(config, action, KEYS[key], (PEERS[peer], 5353),
                           control_keys=[CONTROL_KEY], control_loopback=control_loopback)
        want = expected(action, zone, require_signed, key, peer, control_loopback)
        assert decision.rcode == want, (key, peer, control_loopback, decision)
        assert decision.ok == (want == Rcode.NOERROR)
        if decision.ok:
            assert decision is ALLOW
        else:
            assert decision.reason
            assert isinstance(decision.error(), NotAuth if want == Rcode.NOTAUTH else Refused)
            assert decision.error().rcode == want


def test_every_action_is_allowed_to_someone_and_refused_to_someone():
    outcomes = {action: set() for action in Action}
    for action, zone, require_signed, key, peer, loop in CASES:
        outcomes[action].add(expected(action, zone, require_signed, key, peer, loop))
    for action, rcodes in outcomes.items():
        refusal = Rcode.NOTAUTH if action is Action.UPDATE else Rcode.REFUSED
        assert Rcode.NOERROR in rcodes and refusal in rcodes, action


def test_refusal_reasons_name_the_zone_and_the_sender():
    zone = _zone("secondary", True)
    assert allowed(zone, Action.QUERY, None, ("192.0.2.7", 1)).reason == \
        "zone example.com. requires signed queries"
    assert allowed(zone, Action.TRANSFER, None, ("192.0.2.7", 1)).reason == \
        "transfer of example.com. refused to an unsigned request from 192.0.2.7"
    assert allowed(zone, Action.NOTIFY, STRANGER, ("192.0.2.7", 1)).reason == \
        "NOTIFY for example.com. refused to key stranger. from 192.0.2.7"
    assert allowed(None, Action.CONTROL, STRANGER, ("127.0.0.1", 1)).reason == \
        "key stranger. is not in control_keys"
    assert allowed(None, Action.CONTROL, None, ("192.0.2.7", 1)).reason == "unsigned"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.255.0.3", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("::1%lo", True), ("192.0.2.7", False), ("::ffff:192.0.2.7", False), ("2001:db8::1", False),
    ("::", False), ("0.0.0.0", False), ("localhost", False), ("", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


#: (a peer's address text, a configured one, the same address?)
SAME_ADDRESS = [
    ("::1", "0:0:0:0:0:0:0:1", True), ("::1", "0000::0001", True), ("::1%lo", "::1", True),
    ("::ffff:127.0.0.1", "127.0.0.1", True), ("127.0.0.1", "::ffff:127.0.0.1", True),
    ("::ffff:7f00:1", "127.0.0.1", True), ("::ffff:127.0.0.1", "0:0:0:0:0:ffff:7f00:1", True),
    ("2001:DB8::53", "2001:db8:0:0:0:0:0:53", True), ("fe80::1%eth0", "fe80::1", True),
    ("192.0.2.53", "192.0.2.53", True),
    ("127.0.0.1", "::1", False), ("::127.0.0.1", "127.0.0.1", False),  # IPv4-compatible: not mapped
    ("192.0.2.53", "192.0.2.54", False), ("::ffff:192.0.2.53", "192.0.2.54", False),
    ("localhost", "localhost", False), ("", "", False), ("127.0.0.1", "localhost", False),
]


@pytest.mark.parametrize(("peer", "configured", "same"), SAME_ADDRESS)
def test_addresses_are_compared_as_addresses_not_as_text(peer, configured, same):
    assert is_one_of(peer, [configured]) is same
    assert is_one_of(peer, ["198.51.100.1", configured]) is same
    assert is_one_of(peer, []) is False


@pytest.mark.parametrize(("peer", "configured", "same"), SAME_ADDRESS)
def test_an_unsigned_notify_is_accepted_from_a_primary_in_any_spelling(peer, configured, same):
    zone = ZoneConfig(name=n("example.com."), primaries=[(configured, 53)])
    decision = allowed(zone, Action.NOTIFY, None, (peer, 5353))
    assert decision.ok is same
    if not same:
        assert decision.rcode == Rcode.REFUSED and peer in decision.reason


def test_canonical_address():
    assert str(canonical_address("::ffff:192.0.2.1")) == "192.0.2.1"
    assert str(canonical_address("0:0:0:0:0:0:0:1%lo")) == "::1"
    assert canonical_address("ns1.example.com") is None


def test_decision_defaults_to_allow():
    assert ALLOW == Decision() and ALLOW.ok and not Decision(Rcode.REFUSED, "x").ok


# -- the dispatch tables ----------------------------------------------------------------
@pytest.mark.parametrize("table", [OPCODE_ACTIONS, AUTHORITATIVE_OPCODES, RESOLVER_OPCODES])
def test_every_opcode_has_an_entry(table):
    assert set(table) == set(Opcode)


def test_the_servers_tables_agree_with_the_opcodes_actions():
    for table in (AUTHORITATIVE_OPCODES, RESOLVER_OPCODES):
        for opcode, action in table.items():
            assert action in (None, OPCODE_ACTIONS[opcode])
    # docs/protocol.md 8D step 3: UPDATE, NOTIFY and TRANSFER are NOTIMP at a
    # resolver; an authoritative server takes UPDATE for its registry (8E)
    assert AUTHORITATIVE_OPCODES[Opcode.UPDATE] is Action.UPDATE
    assert {o for o, a in RESOLVER_OPCODES.items() if a is None} == {
        Opcode.UPDATE, Opcode.NOTIFY, Opcode.TRANSFER}


def test_a_table_missing_an_opcode_or_a_handler_is_an_error():
    handlers = {action: action.name for action in Action}
    assert dispatch_table(AUTHORITATIVE_OPCODES, handlers) == {
        0: "QUERY", 4: "NOTIFY", 5: "UPDATE", 6: "TRANSFER", 7: "CONTROL"}
    partial = dict(AUTHORITATIVE_OPCODES)
    del partial[Opcode.CONTROL]
    with pytest.raises(ValueError, match="CONTROL"):
        dispatch_table(partial, handlers)
    with pytest.raises(ValueError, match="NOTIFY"):
        dispatch_table(AUTHORITATIVE_OPCODES, {a: a for a in Action if a is not Action.NOTIFY})


# -- the same table through the authoritative server's handler --------------------------
KEYRING = {name: tsig.SharedKey(name, "hmac-sha256", name.to_text().encode().ljust(32, b"k"))
           for name in (TRANSFER_KEY, NOTIFY_KEY, UPDATE_KEY, ZONE_KEY, CONTROL_KEY, STRANGER)}


def _server(tmp_path, zone: str, require_signed: bool, control_loopback: bool):
    from keyresolve.daemons.secondary import SecondaryZone
    from keyresolve.daemons.serve import AuthServer
    from keyresolve.store.zones import Store
    from keyresolve.zonedata.zonefile import parse_zone_text

    from .test_fastpath import EXAMPLE_COM

    store = Store(tmp_path / "db", map_size=1 << 26)
    store.replace_zone_reference(parse_zone_text(EXAMPLE_COM))
    config_zone = _zone(zone, require_signed)
    config = ServeConfig(path=tmp_path / "serve.toml", listen=[("127.0.0.1", 0)],
                         data_dir=tmp_path / "db", zones=[config_zone], keys=KEYRING,
                         control_keys=[CONTROL_KEY], control_loopback=control_loopback)
    handler = AuthServer(store, config)
    if config_zone.is_secondary:
        secondary = SecondaryZone(config_zone, store, KEYRING, trio.Lock(), lambda *_: None)
        secondary.state.expired = lambda now: False  # its data is the store's, loaded above
        handler.add_secondary(secondary)
    return store, handler


_REQUESTS = {
    Action.QUERY: lambda i: make_query(n("alice@example.com."), RType.KEY, msg_id=i),
    Action.TRANSFER: lambda i: make_transfer_query(n("example.com."), RType.AXFR, msg_id=i),
    Action.NOTIFY: lambda i: make_notify(n("example.com."), msg_id=i),
    Action.CONTROL: lambda i: make_query(n("."), ControlCommand.STATUS, msg_id=i,
                                         opcode=Opcode.CONTROL),
    Action.UPDATE: lambda i: make_update(n("example.com."), b"\x92", i),
}


def _rcode(reply) -> int:
    if not isinstance(reply, bytes):  # a transfer's stream: its first message
        reply = next(iter(reply))
    return Message.from_wire(reply).rcode


@pytest.mark.parametrize(("zone", "require_signed", "control_loopback"), [
    ("primary", False, True), ("primary", True, False), ("registry primary", False, True),
    ("secondary", True, True),
    ("open secondary", False, False)])
def test_the_authoritative_server_decides_by_the_table(tmp_path, zone, require_signed,
                                                       control_loopback):
    store, handler = _server(tmp_path, zone, require_signed, control_loopback)
    ids = itertools.count(1)
    with store:
        for action, key, peer, tcp in itertools.product(_REQUESTS, KEYS, PEERS, [True, False]):
            message = _REQUESTS[action](next(ids))
            signer = KEYRING.get(KEYS[key])
            data = (message.to_wire() if signer is None
                    else tsig.sign(message, signer, int(time.time())))
            with contextlib.nullcontext() if tcp else handler.batch():  # as net.server does
                got = _rcode(handler.handle(data, (PEERS[peer], 5353), tcp))
            want = expected(action, zone, require_signed, key, peer, control_loopback)
            if action is Action.TRANSFER and not tcp:
                want = Rcode.REFUSED  # 8D step 4, before the zone and the sender
            elif want == Rcode.NOERROR and action in (Action.CONTROL, Action.UPDATE):
                want = Rcode.NOTIMP  # allowed; this handler runs no commands, no registry
            assert got == want, (action, key, peer, tcp)


@pytest.mark.parametrize("action", list(Action))
def test_only_transfers_need_tcp(action):
    assert transport(action, True) is ALLOW
    over_udp = transport(action, False)
    if action is Action.TRANSFER:
        assert (over_udp.rcode, over_udp.reason) == (Rcode.REFUSED, "zone transfers need TCP")
    else:
        assert over_udp is ALLOW


@pytest.mark.parametrize("action", list(Action))
def test_an_expired_secondary_zone_serves_no_data_but_hears_notify(action):
    zone = n("example.com.")
    assert serving(zone, action, False) is ALLOW
    decision = serving(zone, action, True)
    if action in (Action.QUERY, Action.TRANSFER):
        assert (decision.rcode, decision.reason) == (Rcode.SERVFAIL,
                                                     "zone example.com. has expired")
        assert isinstance(decision.error(), ServerFailure)
    else:
        assert decision is ALLOW  # a NOTIFY brings it back at once


def test_the_authoritative_server_serves_no_data_of_an_expired_zone(tmp_path):
    store, handler = _server(tmp_path, "secondary", False, True)
    handler.secondaries[n("example.com.")].state.expired = lambda now: True
    zone_key = KEYRING[ZONE_KEY]
    with store:
        for i, (action, signer, want) in enumerate([
                (Action.QUERY, None, Rcode.SERVFAIL),
                (Action.TRANSFER, KEYRING[TRANSFER_KEY], Rcode.SERVFAIL),
                (Action.NOTIFY, zone_key, Rcode.NOERROR)]):
            message = _REQUESTS[action](100 + i)
            data = (message.to_wire() if signer is None
                    else tsig.sign(message, signer, int(time.time())))
            assert _rcode(handler.handle(data, ("192.0.2.7", 5353), True)) == want, action
