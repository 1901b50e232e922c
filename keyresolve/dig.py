"""Formatting of `keyresolve dig` output: dig-style text and JSON (pure)."""

from __future__ import annotations

from .codes import opcode_to_text, rcode_to_text, rtype_to_text
from .message import Message
from .records import KEY, Record


def to_json(response: Message) -> dict:
    """The JSON object `dig --json` prints."""
    question = None
    if response.question is not None:
        question = {"name": str(response.question.name),
                    "type": rtype_to_text(response.question.rtype)}
    return {
        "id": response.id,
        "opcode": opcode_to_text(response.opcode),
        "rcode": rcode_to_text(response.rcode),
        "flags": response.flags_text,
        "question": question,
        "answer": [r.to_json() for r in response.answer],
        "authority": [r.to_json() for r in response.authority],
        "additional": [r.to_json() for r in response.additional],
    }


def _record_line(record: Record) -> str:
    line = record.to_text()
    if isinstance(record.rdata, KEY):
        line += f" ; key_id {record.rdata.key_id}"
    return line


def to_text(response: Message, *, server: str, tcp: bool, elapsed: float, size: int,
            command: str = "", verified: str | None = None) -> str:
    """A dig-style report: header, sections, query time and server."""
    out = []
    if command:
        out.append(f"; <<>> keyresolve dig <<>> {command}")
    out.append(f";; ->>HEADER<<- opcode: {opcode_to_text(response.opcode)}, "
               f"status: {rcode_to_text(response.rcode)}, id: {response.id}")
    out.append(f";; flags: {' '.join(response.flags_text)}; "
               f"ANSWER: {len(response.answer)}, AUTHORITY: {len(response.authority)}, "
               f"ADDITIONAL: {len(response.additional)}")
    if response.question is not None:
        out += ["", ";; QUESTION SECTION:",
                f";{response.question.name}\t\t{rtype_to_text(response.question.rtype)}"]
    for title, section in (("ANSWER", response.answer), ("AUTHORITY", response.authority),
                           ("ADDITIONAL", response.additional)):
        if section:
            out += ["", f";; {title} SECTION:"] + [_record_line(r) for r in section]
    if verified is not None:
        sig = response.signature
        out += ["", f";; SIGNATURE: key {sig.key_name} {sig.algorithm}" if sig else
                ";; SIGNATURE: none (the reply is unsigned)",
                f";; VERIFIED: {verified}"]
    out += ["", f";; Query time: {elapsed * 1000:.1f} msec",
            f";; SERVER: {server} ({'TCP' if tcp else 'UDP'})",
            f";; MSG SIZE  rcvd: {size}"]
    return "\n".join(out)


def trace_entry_text(step) -> str:
    """One `dig --trace` line: who was asked as which zone, what came back, how fast."""
    indent = "  " * step.depth
    address = _endpoint(step.server)
    who = f"{step.server_name} ({address})" if step.server_name else address
    line = f";; {indent}{step.question} -> asked {who} for zone {step.zone_cut}: {step.outcome}"
    if step.referral is not None:
        line += f", referred to {step.referral}"
    if step.rtt is not None:
        line += f" in {step.rtt * 1000:.1f} ms"
    if step.detail:
        line += f" ({step.detail})"
    return line


def trace_entry_json(step) -> dict:
    """One `dig --trace --json` step."""
    return {"depth": step.depth, "question": str(step.question),
            "server": _endpoint(step.server),
            "server_name": None if step.server_name is None else str(step.server_name),
            "zone": str(step.zone_cut), "outcome": step.outcome,
            "referral": None if step.referral is None else str(step.referral),
            "rtt_ms": None if step.rtt is None else round(step.rtt * 1000, 3),
            "detail": step.detail}


def _endpoint(server: tuple) -> str:
    host, port = server[0], server[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NullWriter:
    """A transfer writer that keeps nothing: dig only checks the stream."""

    def begin_full(self) -> None: ...
    def begin_delta(self, old_soa) -> None: ...
    def begin_additions(self, new_soa) -> None: ...
    def delete(self, record) -> None: ...
    def add(self, record) -> None: ...
    def commit(self, soa) -> None: ...
    def abort(self) -> None: ...
