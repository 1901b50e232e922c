"""CONTROL messages of `keyresolve ctl` (sans-IO): requests, results, text.

A request is a CONTROL message whose question type is the command
(`ControlCommand`) and whose name is the zone (the root for commands without
one). A response carries its result, if any, as one answer record of type
CONTROL_RESULT owned by the question name, TTL 0, whose rdata is an array of
``[field, value]`` pairs: `field` a str, `value` an unsigned integer, a str,
nil, or an array of those. docs/protocol.md 8A lists the fields.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from .codes import CONTROL_RESULT, ControlCommand, Opcode, Rcode
from .errors import FormError, NotImplementedOpcode, ProtocolError
from .message import Message, make_query, make_response
from .names import ROOT, Name
from .records import Opaque, Record

#: Commands that act on one zone, named by the question name.
ZONE_COMMANDS = frozenset({ControlCommand.RELOAD_ZONE, ControlCommand.ZONE_STATUS,
                           ControlCommand.REFRESH, ControlCommand.RETRANSFER,
                           ControlCommand.NOTIFY, ControlCommand.FLUSH_NAME,
                           ControlCommand.ZONE_EXPORT})
#: The `keyresolve ctl` command words, and what each sends without and with a zone.
COMMAND_WORDS: dict[str, tuple[ControlCommand | None, ControlCommand | None]] = {
    "status": (ControlCommand.STATUS, None),
    "reload": (ControlCommand.RELOAD, ControlCommand.RELOAD_ZONE),
    "zone-status": (None, ControlCommand.ZONE_STATUS),
    "refresh": (None, ControlCommand.REFRESH),
    "retransfer": (None, ControlCommand.RETRANSFER),
    "notify": (None, ControlCommand.NOTIFY),
    "stop": (ControlCommand.STOP, None),
    "zone-export": (None, ControlCommand.ZONE_EXPORT),
    "mail-flush": (ControlCommand.MAIL_FLUSH, None),
}
#: Fields whose value is a time, in whole seconds since the epoch (UTC).
TIME_FIELDS = frozenset({"loaded", "last_transfer", "last_check", "next_refresh", "expires",
                         "started"})
#: Fields whose value is a duration in whole seconds.
DURATION_FIELDS = frozenset({"uptime"})

Value = int | str | None | list[int | str | None]


@dataclass(frozen=True)
class ControlRequest:
    """A decoded CONTROL request: the command and its zone (None: no zone)."""

    command: ControlCommand
    zone: Name | None


def make_request(command: ControlCommand, zone: Name | None = None, *,
                 msg_id: int | None = None) -> Message:
    """The CONTROL message asking for `command` (on `zone`, for a zone command)."""
    if (command in ZONE_COMMANDS) != (zone is not None):
        raise ValueError(f"{command.name} {'needs' if zone is None else 'takes no'} zone")
    return make_query(zone or ROOT, command, msg_id=msg_id, opcode=Opcode.CONTROL)


def request_for(word: str, zone: Name | None) -> ControlCommand:
    """The command a `keyresolve ctl` word sends; ValueError when the word is
    unknown or wants a zone it did not get (or got one it takes not)."""
    if word not in COMMAND_WORDS:
        raise ValueError(f"unknown command {word!r} (one of {', '.join(COMMAND_WORDS)})")
    bare, zoned = COMMAND_WORDS[word]
    command = bare if zone is None else zoned
    if command is None:
        raise ValueError(f"{word} {'needs a ZONE' if zone is None else 'takes no ZONE'}")
    return command


def parse_request(query: Message) -> ControlRequest:
    """The command and zone of a decoded CONTROL message: FormError without
    a question or with a mailbox as zone, NotImplementedOpcode for a command
    this version does not know."""
    if query.opcode != Opcode.CONTROL or query.question is None:
        raise FormError("control message without a question")
    try:
        command = ControlCommand(query.question.rtype)
    except ValueError:
        raise NotImplementedOpcode(f"unknown control command {query.question.rtype}") from None
    if command not in ZONE_COMMANDS:
        return ControlRequest(command, None)
    name = query.question.name
    if command != ControlCommand.FLUSH_NAME and name.is_mailbox:
        raise FormError(f"{name} is a mailbox, not a zone")
    return ControlRequest(command, name)


def decode_request(data: bytes) -> ControlRequest:
    """`parse_request` of a message's bytes (FormError when they do not decode)."""
    return parse_request(Message.from_wire(data))


def _check_value(field: str, value: object, depth: int = 0) -> None:
    if isinstance(value, bool) or not (
            value is None or isinstance(value, str)
            or isinstance(value, int) and 0 <= value < 1 << 64
            or depth == 0 and isinstance(value, (list, tuple))):
        raise FormError(f"control result field {field!r}: unsigned integer, str, nil or "
                        f"an array of those, not {value!r}")
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_value(field, item, 1)


def result_record(name: Name, fields: dict[str, Value]) -> Record:
    """The answer record holding `fields`, in their order."""
    pairs = []
    for field, value in fields.items():
        _check_value(field, value)
        pairs.append((field, tuple(value) if isinstance(value, (list, tuple)) else value))
    return Record(name, CONTROL_RESULT, 0, Opaque(CONTROL_RESULT, tuple(pairs)))


def make_result(query: Message, fields: dict[str, Value] | None = None,
                rcode: int = Rcode.NOERROR) -> Message:
    """The response to `query`: `rcode`, with `fields` as its result (none: empty)."""
    response = make_response(query, rcode)
    if fields:
        name = ROOT if query.question is None else query.question.name
        response.answer.append(result_record(name, fields))
    return response


def parse_result(response: Message) -> dict[str, Value]:
    """The result fields of a CONTROL response (empty: none). FormError for
    more than one result record, a pair that is not [str, value], a value
    of another kind, or a field given twice."""
    records = [r for r in response.answer if r.rtype == CONTROL_RESULT]
    if not records:
        return {}
    if len(records) > 1:
        raise FormError("more than one control result record")
    fields: dict[str, Value] = {}
    rdata = records[0].rdata
    if not isinstance(rdata, Opaque):  # a CONTROL_RESULT record always decodes to Opaque
        raise FormError("a control result record must be an array of fields")
    for pair in rdata.fields:
        if type(pair) not in (tuple, list) or len(pair) != 2 or type(pair[0]) is not str:
            raise FormError("a control result field must be [name, value]")
        field, value = pair
        _check_value(field, value)
        if field in fields:
            raise FormError(f"control result field {field!r} given twice")
        fields[field] = list(value) if isinstance(value, (tuple, list)) else value
    return fields


def decode_result(data: bytes) -> tuple[Message, dict[str, Value]]:
    """The response in `data` and its result fields (FormError when they do
    not decode, or the message is not a CONTROL response)."""
    response = Message.from_wire(data)
    if not response.qr or response.opcode != Opcode.CONTROL:
        raise FormError("not a CONTROL response")
    return response, parse_result(response)


def error_fields(exc: ProtocolError) -> dict[str, Value]:
    """The result of a refused or failed command: its reason."""
    return {"error": str(exc)}


# -- text, as `keyresolve ctl` prints it ------------------------------------------
def _duration(seconds: int) -> str:
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts)


def _time(value: int, now: float) -> str:
    when = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    delta = int(round(value - now))
    relative = "now" if delta == 0 else (f"in {_duration(delta)}" if delta > 0
                                        else f"{_duration(-delta)} ago")
    return f"{when:%Y-%m-%d %H:%M:%S} UTC ({relative})"


def format_value(field: str, value: Value, now: float) -> str:
    """One field's value as text (times in UTC and relative to `now`)."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "-"
    if field in TIME_FIELDS and isinstance(value, int):
        return _time(value, now)
    if field in DURATION_FIELDS and isinstance(value, int):
        return _duration(value)
    return str(value)


def to_text(fields: dict[str, Value], now: float) -> str:
    """``field: value`` lines, as knotc prints a zone's status."""
    width = max((len(f) for f in fields), default=0)
    return "\n".join(f"{field.replace('_', ' ') + ':':<{width + 2}}"
                     f"{format_value(field, value, now)}" for field, value in fields.items())
