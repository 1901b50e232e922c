"""The CONTROL codec of `keyresolve ctl` (sans-IO): requests, results, text."""

from __future__ import annotations

import pytest

from keyresolve.protocol import control
from keyresolve.protocol.codes import CONTROL_RESULT, ControlCommand, Opcode, Rcode, RType
from keyresolve.protocol.errors import FormError, NotImplementedOpcode
from keyresolve.protocol.message import Message, make_query, make_response
from keyresolve.protocol.names import ROOT, Name
from keyresolve.protocol.records import Opaque, Record

ZONE = Name.from_text("example.com.")


def test_request_round_trip_carries_command_and_zone():
    wire = control.make_request(ControlCommand.ZONE_STATUS, ZONE, msg_id=7).to_wire()
    assert control.decode_request(wire) == control.ControlRequest(ControlCommand.ZONE_STATUS,
                                                                  ZONE)
    status = control.make_request(ControlCommand.STATUS).to_wire()
    assert control.decode_request(status) == control.ControlRequest(ControlCommand.STATUS, None)


def test_reload_of_all_and_of_the_root_zone_are_distinct_commands():
    assert control.request_for("reload", None) == ControlCommand.RELOAD
    assert control.request_for("reload", ROOT) == ControlCommand.RELOAD_ZONE
    with pytest.raises(ValueError, match="needs a ZONE"):
        control.request_for("zone-status", None)
    with pytest.raises(ValueError, match="takes no ZONE"):
        control.request_for("stop", ZONE)
    with pytest.raises(ValueError, match="unknown command"):
        control.request_for("halt", None)


@pytest.mark.parametrize("cut", [3, 6, 10, -1])
def test_truncated_request_is_formerr(cut):
    wire = control.make_request(ControlCommand.REFRESH, ZONE).to_wire()
    with pytest.raises(FormError):
        control.decode_request(wire[:cut])


def test_junk_and_questionless_requests_are_formerr():
    with pytest.raises(FormError):
        control.decode_request(b"\x00\x01\x38\x00\x01\x00\xc1\xc1")
    bare = Message(id=1, opcode=Opcode.CONTROL).to_wire()
    with pytest.raises(FormError):
        control.decode_request(bare)
    mailbox = make_query(Name.from_text("alice@example.com."), ControlCommand.REFRESH,
                         opcode=Opcode.CONTROL).to_wire()
    with pytest.raises(FormError, match="mailbox"):
        control.decode_request(mailbox)


def test_unknown_command_is_notimp():
    wire = make_query(ROOT, 200, opcode=Opcode.CONTROL).to_wire()
    with pytest.raises(NotImplementedOpcode):
        control.decode_request(wire)


def test_result_round_trip_keeps_order_and_kinds():
    query = control.make_request(ControlCommand.ZONE_STATUS, ZONE, msg_id=9)
    fields = {"zone": "example.com.", "serial": 2024010101, "file": None,
              "primaries": ["127.0.0.1:5300", "[::1]:5300"], "journal": 0}
    response = control.make_result(query, fields)
    assert response.answer == [control.result_record(ZONE, fields)]
    decoded, got = control.decode_result(response.to_wire())
    assert decoded.rcode == Rcode.NOERROR and got == fields
    assert list(got) == list(fields)


def test_error_result_carries_its_reason():
    query = control.make_request(ControlCommand.REFRESH, ZONE)
    wire = control.make_result(query, {"error": "not a zone"}, Rcode.NOTAUTH).to_wire()
    response, fields = control.decode_result(wire)
    assert response.rcode == Rcode.NOTAUTH and fields == {"error": "not a zone"}
    empty = make_response(query, Rcode.REFUSED).to_wire()
    assert control.decode_result(empty)[1] == {}


@pytest.mark.parametrize("rdata", [
    (("a",),),  # not a pair
    ((1, 2),),  # a name that is not a str
    (("a", 1), ("a", 2)),  # given twice
    (("a", (("nested",),)),),  # an array of arrays
])
def test_bad_result_records_are_formerr(rdata):
    query = control.make_request(ControlCommand.STATUS)
    response = make_response(query)
    response.answer.append(Record(ROOT, CONTROL_RESULT, 0, Opaque(CONTROL_RESULT, rdata)))
    with pytest.raises(FormError):
        control.decode_result(response.to_wire())


def test_two_result_records_and_non_control_messages_are_formerr():
    query = control.make_request(ControlCommand.STATUS)
    response = control.make_result(query, {"a": 1})
    response.answer.append(response.answer[0])
    with pytest.raises(FormError, match="more than one"):
        control.decode_result(response.to_wire())
    with pytest.raises(FormError, match="not a CONTROL response"):
        control.decode_result(make_response(make_query(ZONE, RType.SOA)).to_wire())
    with pytest.raises(FormError):
        control.decode_result(b"\x12")


def test_values_that_cannot_be_sent_are_refused():
    for value in (-1, 1.5, True, {"a": 1}, [[1]]):
        with pytest.raises(FormError):
            control.result_record(ROOT, {"a": value})


def test_text_shows_times_and_durations_relative_to_now():
    text = control.to_text({"zone": "example.com.", "uptime": 3725, "next_refresh": 1000060,
                            "primaries": [], "serial": None}, now=1000000)
    assert text.splitlines() == ["zone:         example.com.", "uptime:       1h 2m 5s",
                                 "next refresh: 1970-01-12 13:47:40 UTC (in 1m 0s)",
                                 "primaries:    -", "serial:       -"]
