"""Tests of keyresolve.zonedata.zonefile: golden files both ways, every error path with
its line, includes, limits, the demo zones, and fuzzing."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import posixpath
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyresolve.files.local import LOCAL_FILES
from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import InvalidRecord, ZoneErrors
from keyresolve.protocol.names import ROOT, Name
from keyresolve.protocol.records import ADDR, ALIAS, KEY, NS, SOA, KeyAlgorithm, KeyUsage, Record
from keyresolve.zonedata.bulkcompile import check_zone
from keyresolve.zonedata.model import Zone
from keyresolve.zonedata.zonefile import (
    MAX_ERRORS,
    MAX_INCLUDE_DEPTH,
    MAX_LINE,
    MAX_RECORD_TEXT,
    ZoneReader,
    iter_records,
    load_hints,
    load_zone,
    load_zone_with_sources,
    parse_ttl,
    parse_zone_text,
    summarize,
)

HERE = Path(__file__).parent
GOOD = HERE / "zonefiles" / "good"
BAD = HERE / "zonefiles" / "bad"
ZONES = HERE.parent / "keyresolve" / "demo_zones"

# public keys used by the golden files
ALICE_X = "oX85u095Pdmoz7V5B7g7PC2SGFpuKZOnYRTNxWZNOi0="
ALICE_ED = "lHJaNZOZU6elXKn2VyqfxgJDPB4VSa5uCmjz1fNkwtk="
BOB_X = "E1HjaxDTKl5iR2TN+UnOZ1lQ9ZX3p+nLONqF9+3+Skw="
FIRST_ED = "w39EaD/ZFoV2DVlne10NffaqIKRICUJ8w8pg0iqQwNk="
FIRST_X = "cHpbgahq0oMEqPKIJrpCTHiDHNiv2geVfip9IKq8sws="
CAROL_X = "OiMJE7zHpfYxcwQa3mcwI3rM2+UfvUlrCK4/tIOtEGo="
DAVE_X = "E37gCRbN9DL+YOb7MOTGno7elsVRKRBJ6Dc72iqDbVM="
X448 = "Nw5j5fIhQM6lPvNedTaKXS+nUZXr5Vc/3jsabUGZYJmByBO0KgOmxbhujNCl/vfsVISamw/Dxfo="
ED448 = "tRdvLUdbZaFkrHCLen/1wUbTP5yt8xBP5U95jw6Wdjk05DpJZuPAH+SDo3hjYmNYHBHUQI1WRiqA"

HEAD = """$ORIGIN example.com.
$TTL 3600
@    SOA  ns1 hostmaster@example.com. 2026112201 3600 600 604800 300
@    NS   ns1
ns1  ADDR 127.0.0.1:5302
"""


def n(text: str) -> Name:
    return Name.from_text(text)


def soa(ttl: int, mname: str, rname: str, serial: int, *timers: int,
        owner: str = "example.com.") -> Record:
    return Record(n(owner), RType.SOA, ttl, SOA(n(mname), n(rname), serial, *timers))


def ns(owner: str, ttl: int, target: str) -> Record:
    return Record(n(owner), RType.NS, ttl, NS(n(target)))


def addr(owner: str, ttl: int, text: str) -> Record:
    return Record(n(owner), RType.ADDR, ttl, ADDR.parse(text))


def key(owner: str, ttl: int, alg: str, b64: str, flags: int = 0) -> Record:
    algorithm = KeyAlgorithm[alg.upper()]
    usage = KeyUsage.ENCRYPT if alg.startswith("x") else KeyUsage.SIGN
    return Record(n(owner), RType.KEY, ttl,
                  KEY(algorithm, usage, base64.b64decode(b64), flags))


def alias(owner: str, ttl: int, target: str) -> Record:
    return Record(n(owner), RType.ALIAS, ttl, ALIAS(n(target)))


EXPECTED: dict[str, list[Record]] = {
    "example.zone": [
        soa(3600, "ns1.example.com.", "hostmaster@example.com.", 2026112201,
            3600, 600, 604800, 300),
        ns("example.com.", 3600, "ns1.example.com."),
        addr("ns1.example.com.", 3600, "127.0.0.1:5302"),
        key("alice@example.com.", 3600, "x25519", ALICE_X),
        key("first.last@example.com.", 3600, "ed25519", FIRST_ED),
        alias("www-team@example.com.", 3600, "alice@example.com."),
        ns("eng.example.com.", 3600, "ns1.eng.example.com."),
        addr("ns1.eng.example.com.", 3600, "127.0.0.1:5303"),
    ],
    "syntax.zone": [
        soa(5400, "ns1.example.com.", "hostmaster@example.com.", 2026112201,
            3600, 600, 604800, 300),
        ns("example.com.", 5400, "ns1.example.com."),
        ns("example.com.", 5400, "ns2.example.net."),
        addr("ns1.example.com.", 5400, "127.0.0.1:5302"),
        addr("ns1.example.com.", 5400, "[::1]:5302"),
        key("alice@example.com.", 172800, "x25519", ALICE_X),
        key("alice@example.com.", 172800, "ed25519", ALICE_ED),
        key("bob@people.example.com.", 5400, "x448", X448),
        key("carol+tag@example.com.", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5,
            "ed448", ED448),
        alias("www-team@example.com.", 5400, "alice@example.com."),
        alias("apex-alias@example.com.", 0, "example.com."),
        key("reg@example.com.", 5400, "x25519", CAROL_X, flags=1),  # flags=registered
        key("reg@example.com.", 5400, "ed25519", DAVE_X, flags=0x101),
        key("dan@sub.example.com.", 5400, "ed25519", FIRST_ED),
        addr("host.sub.example.com.", 5400, "192.0.2.1:53"),
        key("keyhost.example.com.", 60, "x25519", FIRST_X),
    ],
    "include.zone": [
        soa(3600, "ns1.example.com.", "hostmaster@example.com.", 2026112201,
            3600, 600, 604800, 300),
        ns("example.com.", 3600, "ns1.example.com."),
        key("alice@example.com.", 3600, "x25519", ALICE_X),
        addr("ns1.example.com.", 3600, "127.0.0.1:5302"),
        key("carol@eng.example.com.", 3600, "x25519", CAROL_X),
        addr("x.other.example.com.", 3600, "127.0.0.1:5399"),
        key("deep@other.example.com.", 3600, "x25519", DAVE_X),
        key("alice@example.com.", 3600, "ed25519", ALICE_ED),  # owner restored
        key("after@example.com.", 3600, "x25519", BOB_X),  # origin restored
    ],
}


def errors_of(call, *args, **kwargs) -> list[tuple[int, str]]:
    """(line, message) of every error a load raises."""
    with pytest.raises(ZoneErrors) as info:
        call(*args, **kwargs)
    return [(e.line, e.message) for e in info.value.errors]


def render(records: list[Record], origin: Name) -> str:
    return f"$ORIGIN {origin}\n" + "".join(r.to_text(origin) + "\n" for r in records)


# -- golden files ------------------------------------------------------------------
@pytest.mark.parametrize("fname", sorted(EXPECTED))
def test_golden_parse(fname: str) -> None:
    zone = load_zone(str(GOOD / fname), files=LOCAL_FILES)
    assert zone.origin == n("example.com.")
    assert sorted(zone.records(), key=repr) == sorted(EXPECTED[fname], key=repr)
    assert len(zone) == len(EXPECTED[fname])


@pytest.mark.parametrize("fname", sorted(EXPECTED))
def test_golden_render_and_reparse(fname: str) -> None:
    """The other way: records we build, written as text, parse back to themselves."""
    origin = n("example.com.")
    expected = EXPECTED[fname]
    for rel in (origin, None):  # relative and absolute names
        zone = parse_zone_text(render(expected, rel or ROOT), origin=origin)
        assert sorted(zone.records(), key=repr) == sorted(expected, key=repr)


def test_golden_files_are_all_covered() -> None:
    assert sorted(p.name for p in GOOD.glob("*.zone")) == sorted(EXPECTED)


def test_iter_records_lines_and_files() -> None:
    got = [(rec, os.path.relpath(f, GOOD), line)
           for rec, f, line in iter_records(str(GOOD / "include.zone"), files=LOCAL_FILES)]
    assert [(f, line) for _, f, line in got] == [
        ("include.zone", 4), ("include.zone", 5), ("include.zone", 6),
        ("inc/glue.inc", 1),
        ("inc/people/eng.inc", 2), ("inc/people/eng.inc", 4),
        ("inc/deep.inc", 1),
        ("include.zone", 9), ("include.zone", 10),
    ]
    assert [rec for rec, _, _ in got] == EXPECTED["include.zone"]


def test_iter_records_yields_good_records_then_raises(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    path.write_text(HEAD + "bad!  ADDR 127.0.0.1:1\nok  ADDR 127.0.0.1:2\n")
    seen = []
    with pytest.raises(ZoneErrors) as info:
        for rec, _, line in iter_records(str(path), files=LOCAL_FILES):
            seen.append((str(rec.name), line))
    assert seen == [("example.com.", 3), ("example.com.", 4), ("ns1.example.com.", 5),
                    ("ok.example.com.", 7)]
    assert [e.line for e in info.value.errors] == [6]


def test_iter_records_does_no_zone_checks(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    path.write_text("$ORIGIN example.com.\n$TTL 60\nwww.example.org. ADDR 127.0.0.1:1\n")
    assert [str(r.name) for r, _, _ in iter_records(str(path), files=LOCAL_FILES)] == ["www.example.org."]


# -- bad files: every "; expect: LINE: text" line must match one error, exactly ------
def _expectations(path: Path) -> list[tuple[int, str]]:
    return [(int(line), text) for line, text in
            re.findall(r"^; expect: (\d+): (.*)$", path.read_text(), re.M)]


@pytest.mark.parametrize("path", sorted(BAD.glob("*.zone")), ids=lambda p: p.name)
def test_bad_file(path: Path) -> None:
    expected = _expectations(path)
    assert expected, "a bad file must say which errors it expects"
    got = errors_of(load_zone, str(path), files=LOCAL_FILES)
    left = list(got)
    for line, text in expected:
        match = next((g for g in left if g[0] == line and text in g[1]), None)
        assert match is not None, f"no error at line {line} with {text!r}; got {got}"
        left.remove(match)
    assert left == [], f"unexpected errors: {left}"


def test_error_text_is_file_line_message() -> None:
    with pytest.raises(ZoneErrors) as info:
        load_zone(str(BAD / "nons.zone"), files=LOCAL_FILES)
    [error] = info.value.errors
    assert str(error) == f"{BAD / 'nons.zone'}:4: no NS record at the zone apex example.com."
    assert error.filename == str(BAD / "nons.zone")


# -- syntax details ---------------------------------------------------------------
def test_owner_continuation_is_not_inside_parentheses() -> None:
    zone = parse_zone_text(HEAD + "alice@ KEY (\n x25519 encrypt\n " + ALICE_X + " )\n"
                           "  KEY ed25519 sign " + ALICE_ED + "\n")
    rrset = zone.nodes[n("alice@example.com.")][RType.KEY]
    assert len(rrset.rdatas) == 2


def test_parentheses_anywhere_on_the_line() -> None:
    text = HEAD + "alice@ KEY x25519(encrypt\n" + ALICE_X[:10] + ")" + ALICE_X[10:] + "\n"
    zone = parse_zone_text(text)
    assert zone.nodes[n("alice@example.com.")][RType.KEY].rdatas[0] == \
        key("alice@x.", 1, "x25519", ALICE_X).rdata


def test_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    path.write_bytes(b"\xef\xbb\xbf" + HEAD.replace("\n", "\r\n").encode())
    assert len(load_zone(str(path), files=LOCAL_FILES)) == 3


def test_case_insensitive() -> None:
    text = ("$origin EXAMPLE.Com.\n$ttl 1H\n@ soa NS1 HostMaster@Example.COM. 1 1 1 1 1\n"
            "@ in Ns NS1\nNs1 aDdR 127.0.0.1:1\nALICE@ key X25519 Encrypt " + ALICE_X + "\n"
            "Team@ Alias Alice@\n")
    zone = parse_zone_text(text)
    assert zone.origin == n("example.com.")
    assert set(zone.nodes) == {n("example.com."), n("ns1.example.com."),
                               n("alice@example.com."), n("team@example.com.")}
    assert zone.nodes[n("team@example.com.")][RType.ALIAS].rdatas == \
        (ALIAS(n("alice@example.com.")),)


@pytest.mark.parametrize(("line", "owner"), [
    (f"$bob@ KEY x25519 encrypt {BOB_X}", "$bob@example.com."),  # the KEY fast paths
    (f"$ORIGINbob@ KEY x25519 encrypt {BOB_X}", "$originbob@example.com."),
    ("$bob@ ALIAS alice@", "$bob@example.com."),
])
def test_an_owner_starting_with_dollar_is_a_mailbox(tmp_path: Path, line: str,
                                                     owner: str) -> None:
    """A local part may begin with `$`: such an owner is no directive, for
    every record type and in every parser."""
    text = HEAD + line + "\n\t KEY ed25519 sign " + FIRST_ED + "\n"  # and a continuation
    if "ALIAS" in line:
        text = HEAD + line + "\n"
    zone = parse_zone_text(text)
    (tmp_path / "z").write_text(text)
    assert set(load_zone(str(tmp_path / "z"), files=LOCAL_FILES).records()) == set(zone.records())
    assert {r for r, _, _ in iter_records(str(tmp_path / "z"), files=LOCAL_FILES)} == set(zone.records())
    assert {r.name for r in zone.records()} == {n("example.com."), n("ns1.example.com."), n(owner)}
    keys = [r for r in zone.records() if r.rtype == RType.KEY]
    assert len(keys) == (0 if "ALIAS" in line else 2)  # the continuation is the owner's


@pytest.mark.parametrize("line", ["$ORIGN example.com.", "$bob KEY x25519 encrypt " + BOB_X])
def test_a_dollar_without_at_is_a_directive(line: str) -> None:
    word = line.split()[0]
    assert errors_of(parse_zone_text, HEAD + line + "\n", "z") == [
        (6, f"unknown directive {word!r} (one of $ORIGIN, $TTL, $INCLUDE)")]


def test_origin_argument_and_relative_names() -> None:
    zone = parse_zone_text("$TTL 60\n@ SOA ns1 h@ 1 1 1 1 1\n@ NS ns1\nns1 ADDR 127.0.0.1:1\n"
                           "bob@eng KEY x25519 encrypt " + BOB_X + "\n"
                           "carol@example.org. KEY x25519 encrypt " + CAROL_X + "\n",
                           origin=n("example.org."))
    assert zone.origin == n("example.org.")
    assert n("bob@eng.example.org.") in zone.nodes
    assert n("carol@example.org.") in zone.nodes
    assert zone.soa.rdata.rname == n("h@example.org.")


def test_origin_argument_wins_over_origin_directive() -> None:
    text = "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 h@ 1 1 1 1 1\n@ NS ns1\nns1 ADDR 127.0.0.1:1\n"
    assert parse_zone_text(text).origin == n("example.com.")
    # with a zone name given, $ORIGIN only completes relative names
    assert errors_of(parse_zone_text, text, origin=n("com.")) == [
        (3, "SOA must be at the zone apex com., not at example.com."),
        (0, "no SOA record at the zone apex com."),
        (0, "no NS record at the zone apex com.")]


def test_soa_timers_accept_units() -> None:
    zone = parse_zone_text("$ORIGIN x.\n$TTL 60\n@ SOA ns1 h@ 7 1h 15m 1w 5m\n@ NS ns1\n"
                           "ns1 ADDR 127.0.0.1:1\n")
    assert zone.soa.rdata == SOA(n("ns1.x."), n("h@x."), 7, 3600, 900, 604800, 300)


def test_soa_serial_takes_no_units() -> None:
    assert errors_of(parse_zone_text, "$ORIGIN x.\n$TTL 60\n@ SOA ns1 h@ 1h 1 1 1 1\n"
                     "@ NS ns1\nns1 ADDR 127.0.0.1:1\n") == [
        (3, "bad SOA data: serial must be a number, not '1h'"),
        (0, "no SOA record at the zone apex x.")]


TTL_VECTORS = [("0", 0), ("3600", 3600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800),
               ("1W2D3H4M5S", 788645), ("90s", 90), ("2147483647", 2147483647),
               ("1h1h", 7200)]


@pytest.mark.parametrize(("text", "seconds"), TTL_VECTORS)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h30", "2147483648", "3551w",
                                  "9" * 5000, "1" * 30 + "s", "-1", "1.5h", "１"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(InvalidRecord):
        parse_ttl(text)


def test_in_class_accepted_before_or_after_ttl() -> None:
    zone = parse_zone_text(HEAD + "a IN 60 ADDR 127.0.0.1:1\nb 60 IN ADDR 127.0.0.1:1\n")
    assert zone.nodes[n("a.example.com.")][RType.ADDR].ttl == 60
    assert zone.nodes[n("b.example.com.")][RType.ADDR].ttl == 60


def test_class_twice_is_an_error() -> None:
    assert errors_of(parse_zone_text, HEAD + "a IN IN ADDR 127.0.0.1:1\n") == \
        [(6, "unknown record type 'IN'")]


def test_duplicates_dropped_and_ttl_mismatch_names_both_lines() -> None:
    text = HEAD + "ns1 ADDR 127.0.0.1:5302\nns1 60 ADDR 127.0.0.1:5303\n"
    assert errors_of(parse_zone_text, text, filename="z") == [
        (7, "TTL 60 differs from TTL 3600 of the ADDR records of ns1.example.com. at z:5 "
            "(one name and type, one TTL: RFC 2181 5.2)")]
    assert len(parse_zone_text(text.replace(" 60 ", " "))) == 4  # 5302 once, 5303


# -- limits and hostile input --------------------------------------------------------
def test_line_length_limit(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    fits = ";" + "x" * (MAX_LINE - 1)  # exactly MAX_LINE bytes: accepted
    path.write_bytes((HEAD + fits + "\n;" + "y" * MAX_LINE + "\nlast ADDR 127.0.0.1:1\n"
                      ).encode())
    assert errors_of(load_zone, str(path), files=LOCAL_FILES) == [(7, f"line longer than {MAX_LINE} bytes")]
    # the long line was skipped without losing the count: "last" is on line 8
    path.write_bytes((HEAD + ";" + "y" * MAX_LINE * 3 + "\nbad!\n").encode())
    assert [line for line, _ in errors_of(load_zone, str(path), files=LOCAL_FILES)] == [6, 7]


def test_long_line_without_newline_at_end(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    path.write_bytes(HEAD.encode() + b"x" * (MAX_LINE + 1))
    assert errors_of(load_zone, str(path), files=LOCAL_FILES) == [(6, f"line longer than {MAX_LINE} bytes")]


def test_record_text_limit_in_parentheses() -> None:
    chunk = "A" * 1000
    lines = "\n".join(chunk for _ in range(MAX_RECORD_TEXT // 1000 + 2))
    text = HEAD + "alice@ KEY ( x25519 encrypt\n" + lines + " )\nok ADDR 127.0.0.1:1\n"
    assert errors_of(parse_zone_text, text) == [
        (6, f"record longer than {MAX_RECORD_TEXT} characters")]


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    path.write_bytes(HEAD.encode() + b"ab\xff\xfe ADDR 127.0.0.1:1\n\x00 ADDR 1\n")
    assert errors_of(load_zone, str(path), files=LOCAL_FILES) == [
        (6, "not valid UTF-8 (bad byte at column 3)"),
        (7, "bad owner name: invalid label '\\x00' in '\\x00'")]


def test_huge_numbers_and_tokens() -> None:
    digits = "9" * 6000  # longer than Python's int-from-str limit
    text = HEAD + f"a {digits} ADDR 127.0.0.1:1\nb ADDR 127.0.0.1:{digits}\n" \
                  f"@ SOA ns1 h@ {digits} 1 1 1 1\n{'x' * 5000} ADDR 127.0.0.1:1\n"
    got = errors_of(parse_zone_text, text)
    assert [line for line, _ in got] == [6, 7, 8, 9]
    assert all(len(message) < 400 for _, message in got)  # hostile tokens are cut short


def test_error_cap() -> None:
    text = HEAD + "bad!\n" * (MAX_ERRORS + 50)
    got = errors_of(parse_zone_text, text)
    assert len(got) == MAX_ERRORS + 1
    assert got[-1] == (5 + MAX_ERRORS, f"too many errors ({MAX_ERRORS}); stopped here")


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.zone")
    assert errors_of(load_zone, path, files=LOCAL_FILES) == [
        (0, f"cannot read zone file {path!r}: No such file or directory")]


def test_missing_file_given_as_a_path_is_named_as_text(tmp_path: Path) -> None:
    """A pathlib.Path (as the resolver passes its hints) reads as the plain
    path in messages, never as PosixPath('...')."""
    path = tmp_path / "nope.hints"
    with pytest.raises(ZoneErrors) as info:
        load_hints(path, files=LOCAL_FILES)
    assert str(info.value) == (f"{path}:0: cannot read zone file {str(path)!r}: "
                               "No such file or directory")


def test_not_a_regular_file(tmp_path: Path) -> None:
    assert errors_of(load_zone, str(tmp_path), files=LOCAL_FILES) == [
        (0, f"cannot read zone file {str(tmp_path)!r}: Is a directory")]
    if os.path.exists("/dev/zero"):  # endless: must be refused, not read
        (tmp_path / "z.zone").write_text(HEAD + "$INCLUDE /dev/zero\n")
        assert errors_of(load_zone, str(tmp_path / "z.zone"), include_dirs=["/dev"], files=LOCAL_FILES) == [
            (6, "cannot read included file '/dev/zero': not a regular file "
                "(resolved: '/dev/zero')")]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading must not wait for a writer
    assert errors_of(load_zone, str(fifo), files=LOCAL_FILES) == [
        (0, f"cannot read zone file {str(fifo)!r}: not a regular file")]
    (tmp_path / "f.zone").write_text(HEAD + "$INCLUDE fifo\n")
    assert errors_of(load_zone, str(tmp_path / "f.zone"), files=LOCAL_FILES) == [
        (6, f"cannot read included file 'fifo': not a regular file (resolved: {str(fifo)!r})")]


# -- $INCLUDE -------------------------------------------------------------------------
def test_include_relative_to_including_file(tmp_path: Path, monkeypatch) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "main.zone").write_text(HEAD + "$INCLUDE keys/k.inc people\n")
    (sub / "keys").mkdir()
    (sub / "keys" / "k.inc").write_text("bob@ KEY x25519 encrypt " + BOB_X + "\n")
    monkeypatch.chdir(tmp_path)  # the include must not be looked up here
    zone = load_zone(os.path.join("sub", "main.zone"), files=LOCAL_FILES)
    assert n("bob@people.example.com.") in zone.nodes


def test_include_from_text_is_relative_to_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "k.inc").write_text("bob@ KEY x25519 encrypt " + BOB_X + "\n")
    monkeypatch.chdir(tmp_path)
    assert n("bob@example.com.") in parse_zone_text(HEAD + "$INCLUDE k.inc\n",
                                                    files=LOCAL_FILES).nodes


def test_text_without_files_refuses_every_include(tmp_path: Path, monkeypatch) -> None:
    """Without `files` the reader has no file access: an $INCLUDE is an error
    at its line, even of a file that exists."""
    (tmp_path / "k.inc").write_text("bob@ KEY x25519 encrypt " + BOB_X + "\n")
    monkeypatch.chdir(tmp_path)
    assert errors_of(parse_zone_text, HEAD + "$INCLUDE k.inc\n") == [
        (HEAD.count("\n") + 1, "cannot read included file 'k.inc': no file access given")]
    with pytest.raises(ValueError, match="files="):
        ZoneReader("z.zone")


class MemoryFiles:
    """`zonefile.Files` over a dict of path -> bytes: the readers need no disk."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.opened: list[tuple[str, bool]] = []

    def realpath(self, path: str) -> str:
        return posixpath.normpath(posixpath.join("/zones", path))

    def open(self, path: str, *, nofollow: bool = False):
        self.opened.append((path, nofollow))
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory")
        return io.BytesIO(self.files[path])

    def size(self, stream) -> int:
        return len(stream.getbuffer())


def test_readers_read_only_through_files() -> None:
    """The zone readers take their files from the `files` object: a zone and
    its include held in memory load, check and compile; a missing include is
    the reader's usual FILE:LINE error with the object's reason."""
    files = MemoryFiles({"/zones/z.zone": (HEAD + "$INCLUDE k.inc\n").encode(),
                         "/zones/k.inc": ("bob@ KEY x25519 encrypt " + BOB_X + "\n").encode(),
                         "/zones/bulk.zone": (HEAD + "bob@ KEY x25519 encrypt " + BOB_X
                                              + "\n").encode()})
    zone = load_zone("/zones/z.zone", files=files)
    assert n("bob@example.com.") in zone.nodes
    assert files.opened == [("/zones/z.zone", False), ("/zones/k.inc", True)]
    assert check_zone("/zones/bulk.zone", files=files).records == len(
        load_zone("/zones/bulk.zone", files=files))
    files.files["/zones/z.zone"] = (HEAD + "$INCLUDE gone.inc\n").encode()
    assert errors_of(load_zone, "/zones/z.zone", files=files) == [
        (HEAD.count("\n") + 1, "cannot read included file 'gone.inc': No such file or directory "
         "(resolved: '/zones/gone.inc')")]


def test_include_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "k.inc").write_text("bob@ KEY x25519 encrypt " + BOB_X + "\n")
    (tmp_path / "z.zone").write_text(HEAD + f"$INCLUDE {tmp_path / 'k.inc'}\n")
    zone = load_zone(str(tmp_path / "z.zone"), files=LOCAL_FILES)
    assert n("bob@example.com.") in zone.nodes


def test_include_loop(tmp_path: Path) -> None:
    (tmp_path / "a.zone").write_text(HEAD + "$INCLUDE b.inc\n")
    (tmp_path / "b.inc").write_text("; b\n$INCLUDE a.zone\n")
    with pytest.raises(ZoneErrors) as info:
        load_zone(str(tmp_path / "a.zone"), files=LOCAL_FILES)
    [error] = info.value.errors
    assert (error.filename, error.line) == (str(tmp_path / "b.inc"), 2)
    assert error.message == "$INCLUDE loop: a.zone -> b.inc -> a.zone"


def test_include_self(tmp_path: Path) -> None:
    (tmp_path / "a.zone").write_text(HEAD + "$INCLUDE a.zone\n")
    assert errors_of(load_zone, str(tmp_path / "a.zone"), files=LOCAL_FILES) == [
        (6, "$INCLUDE loop: a.zone -> a.zone")]


def test_include_depth_limit(tmp_path: Path) -> None:
    (tmp_path / "main.zone").write_text(HEAD + "$INCLUDE 1.inc\n")
    for i in range(1, MAX_INCLUDE_DEPTH + 2):
        (tmp_path / f"{i}.inc").write_text(f"h{i} ADDR 127.0.0.1:{i}\n$INCLUDE {i + 1}.inc\n")
    with pytest.raises(ZoneErrors) as info:
        load_zone(str(tmp_path / "main.zone"), files=LOCAL_FILES)
    [error] = info.value.errors
    assert error.filename == str(tmp_path / f"{MAX_INCLUDE_DEPTH}.inc")
    assert (error.line, error.message) == (
        2, f"$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} files")


def test_same_file_included_twice_is_not_a_loop(tmp_path: Path) -> None:
    (tmp_path / "k.inc").write_text("bob@ KEY x25519 encrypt " + BOB_X + "\n")
    (tmp_path / "z.zone").write_text(HEAD + "$INCLUDE k.inc\n$INCLUDE k.inc eng\n")
    zone, sources = load_zone_with_sources(str(tmp_path / "z.zone"), files=LOCAL_FILES)
    assert {n("bob@example.com."), n("bob@eng.example.com.")} <= set(zone.nodes)
    assert [os.path.basename(p) for p, _ in sources] == ["z.zone", "k.inc"]


def test_errors_in_included_file_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "k.inc").write_text("; keys\nbob@ KEY x25519 encrypt AAAA\n")
    (tmp_path / "z.zone").write_text(HEAD + "$INCLUDE k.inc\n")
    with pytest.raises(ZoneErrors) as info:
        load_zone(str(tmp_path / "z.zone"), files=LOCAL_FILES)
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path / 'k.inc'}:2: bad KEY data: x25519 key must be 32 bytes, got 3"]


def test_include_semantic_error_located_in_include(tmp_path: Path) -> None:
    (tmp_path / "k.inc").write_text("www.example.org. ADDR 127.0.0.1:1\n")
    (tmp_path / "z.zone").write_text(HEAD + "$INCLUDE k.inc\n")
    with pytest.raises(ZoneErrors) as info:
        load_zone(str(tmp_path / "z.zone"), files=LOCAL_FILES)
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path / 'k.inc'}:1: www.example.org. is outside the zone example.com."]


def test_sources_hash_every_file(tmp_path: Path) -> None:
    zone, sources = load_zone_with_sources(str(GOOD / "include.zone"), files=LOCAL_FILES)
    assert len(zone) == len(EXPECTED["include.zone"])
    names = [os.path.relpath(p, GOOD) for p, _ in sources]
    assert names == ["include.zone", "inc/glue.inc", "inc/people/eng.inc", "inc/deep.inc"]
    for path, digest in sources:
        assert digest == hashlib.sha256(Path(path).read_bytes()).digest()


# -- hints, summary, demo zones ---------------------------------------------------------
def test_load_hints_demo() -> None:
    assert load_hints(str(ZONES / "root.hints"), files=LOCAL_FILES) == [
        (n("a.root-servers."), ADDR.parse("127.0.0.1:5310")),
        (n("b.root-servers."), ADDR.parse("127.0.0.1:5311")),
    ]


@pytest.mark.parametrize(("text", "errors"), [
    ("$TTL 1d\n. NS a.x.\n", [(2, "root server a.x. has no ADDR record")]),
    ("$TTL 1d\na.x. ADDR 127.0.0.1:1\n", [(0, "no NS records at '.'")]),
    ("$TTL 1d\n. NS a.x.\na.x. ADDR 127.0.0.1:1\n. SOA a.x. h@x. 1 1 1 1 1\n",
     [(4, "a hints file holds only NS records at '.' and ADDR records, not SOA at .")]),
    ("$TTL 1d\n. NS a.x.\na.x. ADDR 127.0.0.1:1\nx. NS a.x.\n",
     [(4, "a hints file holds only NS records at '.' and ADDR records, not NS at x.")]),
    ("$TTL 1d\n. NS a.x.\na.x. ADDR nope\n", [(3, "bad ADDR data: address 'nope' needs a "
                                               "port (ip:port)")]),
])
def test_load_hints_errors(tmp_path: Path, text: str, errors: list) -> None:
    (tmp_path / "h").write_text(text)
    assert errors_of(load_hints, str(tmp_path / "h"), files=LOCAL_FILES) == errors


def test_summarize() -> None:
    assert summarize(load_zone(str(GOOD / "example.zone"), files=LOCAL_FILES)) == (
        "example.com.: serial 2026112201, 8 records (SOA 1, NS 2, ADDR 2, KEY 2, ALIAS 1)")
    assert summarize(Zone(n("x."))) == "x.: serial none, 0 records ()"


DEMO = {
    "root.zone": (".", {"com.": ["ns1.nic.com."], "org.": ["ns1.nic.org."]}),
    "com.zone": ("com.", {"example.com.": ["ns1.example.com.", "ns2.example.com."]}),
    "org.zone": ("org.", {"example.org.": ["ns1.example.org."]}),
    "example.com.zone": ("example.com.", {"eng.example.com.": ["ns1.eng.example.com."]}),
    "eng.example.com.zone": ("eng.example.com.", {}),
    "example.org.zone": ("example.org.", {}),
}
PORTS = {"a.root-servers.": 5310, "b.root-servers.": 5311, "ns1.nic.com.": 5320,
         "ns1.nic.org.": 5330, "ns1.example.com.": 5340, "ns2.example.com.": 5342,
         "ns1.eng.example.com.": 5341, "ns1.example.org.": 5350}


def test_demo_zones_all_listed() -> None:
    assert sorted(p.name for p in ZONES.glob("*.zone")) == sorted(DEMO)


@pytest.mark.parametrize("fname", sorted(DEMO))
def test_demo_zone(fname: str) -> None:
    origin, delegations = DEMO[fname]
    zone = load_zone(str(ZONES / fname), files=LOCAL_FILES)
    assert zone.origin == n(origin)
    for child, servers in delegations.items():
        assert zone.nodes[n(child)][RType.NS].rdatas == tuple(NS(n(s)) for s in servers)
    for name, node in zone.nodes.items():  # every address is one of the demo servers
        if RType.ADDR in node:
            assert [(a.host, a.port) for a in node[RType.ADDR].rdatas] == \
                [("127.0.0.1", PORTS[str(name)])]


def test_demo_keys_and_aliases() -> None:
    com = load_zone(str(ZONES / "example.com.zone"), files=LOCAL_FILES)
    algs = {str(name): sorted(rd.algorithm.name for rd in node[RType.KEY].rdatas)
            for name, node in com.nodes.items() if RType.KEY in node}
    assert algs == {"alice@example.com.": ["ED25519", "X25519"],
                    "bob@example.com.": ["X25519"],
                    "first.last@example.com.": ["ED25519", "X25519"]}
    assert com.nodes[n("www-team@example.com.")][RType.ALIAS].rdatas == \
        (ALIAS(n("alice@example.com.")),)
    org = load_zone(str(ZONES / "example.org.zone"), files=LOCAL_FILES)
    assert org.nodes[n("alice-at-com@example.org.")][RType.ALIAS].rdatas == \
        (ALIAS(n("alice@example.com.")),)
    eng = load_zone(str(ZONES / "eng.example.com.zone"), files=LOCAL_FILES)
    assert {n("carol@eng.example.com."), n("dave@eng.example.com.")} <= set(eng.nodes)


# -- fuzzing ---------------------------------------------------------------------------
def _load_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.zone"
    path.write_bytes(data)
    try:
        load_zone(str(path), origin=n("example.com."), files=LOCAL_FILES)
    except ZoneErrors as exc:
        lines = data.count(b"\n") + 1
        assert exc.errors and all(0 <= e.line <= lines for e in exc.errors)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_fuzz_text_only_zone_errors(text: str) -> None:
    try:
        parse_zone_text(text)
    except ZoneErrors:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary())
def test_fuzz_bytes_only_zone_errors(tmp_path_factory, data: bytes) -> None:
    _load_bytes(tmp_path_factory.mktemp("fuzz"), data)


TOKENS = ["$ORIGIN", "$TTL", "$INCLUDE", "@", "alice@", "bob@eng", "x.example.com.", "ns1",
          "eng", "(", ")", ";", "IN", "3600", "1h30m", "0", "SOA", "NS", "ADDR", "KEY", "ALIAS",
          "x25519", "ed25519", "encrypt", "sign", ALICE_X, ALICE_X[:20], "127.0.0.1:5302",
          "[::1]:1", "hostmaster@example.com.", "2026112201", "\t", " ", "\n", "\n ", "é",
          "\x00", "9" * 30, "."]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_fuzz_token_soup_only_zone_errors(tokens: list[str]) -> None:
    text = HEAD + " ".join(tokens)
    try:
        zone = parse_zone_text(text)
    except ZoneErrors as exc:
        assert all(0 <= e.line <= text.count("\n") + 1 for e in exc.errors)
    else:
        assert zone.soa.rdata.serial == 2026112201


def test_doc_example_parses() -> None:
    doc = (HERE.parent / "docs" / "zone-format.md").read_text()
    example = doc.split("## Example", 1)[1].split("```", 2)[1]
    zone = parse_zone_text(example)
    assert summarize(zone) == (
        "example.com.: serial 2026112201, 9 records (SOA 1, NS 2, ADDR 2, KEY 3, ALIAS 1)")
