"""bulkcompile: the bulk compile against the streaming compile it stands in for.

The reference is `zonefile.compile_nodes` into an in-memory sink. Wherever the
bulk compile does not give up, it must produce the same nodes (byte for
byte), the same record count, serial and sources; wherever the reference
reports errors, the bulk compile must give up (so the caller runs the
reference, which reports them).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.zonedata import bulkcompile
from keyresolve.store import compile as store_compile
from keyresolve.zonedata.bulkcompile import Repeated, check_zone, compile_bulk
from keyresolve.protocol.errors import ZoneErrors
from keyresolve.protocol.names import Name
from keyresolve.store.zones import Store
from keyresolve.zonedata.zonefile import CompiledZone, MemoryNodes, compile_nodes, load_zone, summarize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import genzone  # noqa: E402

from .test_store_compile import MAP_SIZE, dump  # noqa: E402

N = Name.from_text
ORIGIN = N("example.com.")
ZONEFILES = Path(__file__).parent / "zonefiles"
KEY_A = "x25519 encrypt " + "A" * 43 + "="
KEY_B = "ed25519 sign " + "B" * 43 + "="
KEY_C = "x25519 encrypt " + "C" * 43 + "="
HEADER = ("$ORIGIN example.com.\n$TTL 3600\n@ SOA ns1 hostmaster@ 1 3600 600 86400 300\n"
          "@ NS ns1\nns1 ADDR 127.0.0.1:53\n")

Result = tuple[CompiledZone, dict[bytes, bytes]]


def reference(path: str, origin: Name | None = ORIGIN) -> Result:
    sink = MemoryNodes()
    compiled = compile_nodes(sink, path, origin)
    return compiled, sink.nodes


def bulk(path: str, origin: Name | None = ORIGIN) -> Result | None:
    """The bulk compile's result, or None where it gives up."""
    zone = compile_bulk(path, origin)
    if zone is None:
        return None
    try:
        nodes = {key: value for batch in zone.batches(size=7) for key, value in batch}
    except Repeated:
        return None
    return zone.compiled, nodes


def write(tmp_path: Path, text: str | bytes, name: str = "z.zone") -> str:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return str(path)


def generated(keys: int, seed: int = 1) -> str:
    out = io.StringIO()
    genzone.generate(keys, seed, out)
    return out.getvalue()


# -- the bulk compile takes these, with the reference's result ------------------------
TAKEN = {
    "continuations": f"alice@ KEY {KEY_A}\n\t KEY {KEY_B}\n  KEY {KEY_C}\nbob@ KEY {KEY_A}\n",
    "ttl, class, blanks, comment": (
        f"alice@ 1h IN KEY {KEY_A}\nbob@\t60\tKEY\tx25519\t\tencrypt {'A' * 43}= ; note (x\n"
        f"\t 60 IN KEY {KEY_B}   \n"),
    "owner repeated on adjacent lines": f"alice@ KEY {KEY_A}\nalice@ KEY {KEY_B}\n",
    "identical duplicate dropped": f"alice@ KEY {KEY_A}\nalice@ KEY {KEY_A}\n\t KEY {KEY_A}\n",
    "domains": f"alice@www KEY {KEY_A}\nbob@x.www KEY {KEY_A}\nwww ADDR 10.0.0.1:53\n",
    "$ORIGIN and $TTL change": (
        f"alice@ KEY {KEY_A}\n$ORIGIN www.example.com.\n$TTL 60\nbob@ KEY {KEY_A}\n"
        f"carol@ 3600 KEY {KEY_A}\n$ORIGIN example.com.\ndave@www KEY {KEY_B}\n"),
    "directive between owner and continuation": (
        f"alice@ KEY {KEY_A}\n$ORIGIN www.example.com.\n\t KEY {KEY_B}\n"),
    "general owner, bulk continuation": (
        f"Alice@ KEY {KEY_A}\n\t KEY {KEY_B}\n\t 3600 IN KEY {KEY_C}\nbob@ KEY {KEY_A}\n"),
    "blank and comment lines": f"\n   \n; c\n  ; c\nalice@ KEY {KEY_A}\n\n\t KEY {KEY_B}\n",
    "CRLF": f"alice@ KEY {KEY_A}\r\n\t KEY {KEY_B}\r\n",
    "no final newline": f"alice@ KEY {KEY_A}\nbob@ KEY {KEY_B}",
    "a local part starting with $": f"$alice@ KEY {KEY_A}\n\t KEY {KEY_B}\n",
    # found by fuzzing: a general line (upper case) whose owner starts with
    # $ was taken for a directive, and bob's continuation line went to alice
    "after a general owner starting with $": (
        f"alice@ KEY {KEY_A}\n$ORIGINbob@ KEY {KEY_A}\n\t KEY {KEY_B}\n"),
    # a flags token is not the bulk line's: the line goes to the general
    # parser, and a continuation after it still takes the bulk path
    "KEY flags": (f"alice@ KEY x25519 encrypt flags=registered {'A' * 43}=\n\t KEY {KEY_B}\n"
                  f"bob@ KEY ed25519 sign FLAGS=2,Registered {'B' * 43}=\ncarol@ KEY {KEY_A}\n"),
    "mailboxes near general records": (
        f"www ADDR 10.0.0.1:53\nalice@www KEY {KEY_A}\nwww ADDR 10.0.0.2:53\n"
        f"sub NS ns.sub\nns.sub ADDR 10.0.0.3:53\nbob@ KEY {KEY_A}\n"),
}


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_taken_files_compile_as_the_reference(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, HEADER + TAKEN[name])
    got = bulk(path)
    assert got is not None, "the bulk compile gave up"
    assert got == reference(path)


def test_bom_and_origin_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff" + HEADER + f"alice@ KEY {KEY_A}\n")
    got = bulk(path, None)
    assert got is not None and got == reference(path, None)
    assert got[0].origin == ORIGIN


def test_generated_zone_is_bulk_compiled(tmp_path: Path) -> None:
    path = write(tmp_path, generated(3000))
    zone = compile_bulk(path, ORIGIN)
    assert zone is not None
    # the mailboxes went through the bulk lines, not the general parser
    assert len(zone._sink.entries) > 2000 and len(zone._sink.nodes) < 50
    assert bulk(path) == reference(path)


def test_prefix_comes_before_every_key(tmp_path: Path) -> None:
    path = write(tmp_path, generated(200) + f"zz@www KEY {KEY_A}\nwww ADDR 10.0.0.1:53\n")
    zone = compile_bulk(path, ORIGIN, b"com\0example\0\x01")
    assert zone is not None
    got = [item for batch in zone.batches(size=16) for item in batch]
    assert got == [(b"com\0example\0\x01" + key, value)
                   for key, value in sorted(reference(path)[1].items())]


@pytest.mark.parametrize("size", [1, 5, 64, 4096])
def test_chunk_size_changes_nothing(tmp_path: Path, monkeypatch, size: int) -> None:
    """Lines cut at every position between chunks."""
    text = generated(60) + (f"zz1@ KEY {KEY_A}\r\n\t 3600 IN KEY {KEY_B} ; c\n; comment\n\n"
                            f"Zz3@ KEY {KEY_A}\n\t KEY {KEY_B}\nzz2@sales KEY {KEY_A}")
    path = write(tmp_path, text)
    expected = bulk(path)
    assert expected is not None and expected == reference(path)
    monkeypatch.setattr(bulkcompile, "CHUNK", size)
    assert bulk(path) == expected


def test_good_files_compile_as_the_reference_or_give_up(tmp_path: Path) -> None:
    taken = 0
    for fname in ("example.zone", "syntax.zone", "include.zone"):
        path = str(ZONEFILES / "good" / fname)
        got = bulk(path, None)
        if got is not None:
            taken += 1
            assert got == reference(path, None)
    assert taken >= 1


# -- and gives these up --------------------------------------------------------------
GIVEN_UP = {
    "include": '$INCLUDE "other.zone"\n',
    "parentheses": f"alice@ KEY x25519 encrypt (\n {'A' * 43}= )\n",
    "owner comes back": f"alice@ KEY {KEY_A}\nbob@ KEY {KEY_A}\nalice@ KEY {KEY_B}\n",
    "general and bulk lines of one owner": f"alice@ KEY {KEY_A}\nalice@ ALIAS bob@\n",
    "general line continues a bulk owner": f"alice@ KEY {KEY_A}\n\t ALIAS bob@\n",
    "TTL differs": f"alice@ KEY {KEY_A}\n\t 60 KEY {KEY_B}\n",
    "bad base64": f"alice@ KEY x25519 encrypt {'A' * 42}==\n",
    "key too short": f"alice@ KEY x25519 encrypt {'A' * 40}==\n",
    "usage of another algorithm": f"alice@ KEY x25519 sign {'A' * 43}=\n",
    "bad TTL": f"alice@ 1x KEY {KEY_A}\n",
    "outside the zone": f"alice@example.org. KEY {KEY_A}\nbob@a..b KEY {KEY_A}\n",
    "local part too long": f"{'a' * 65}@ KEY {KEY_A}\n",
    "below a delegation": f"sub NS ns.sub\nns.sub ADDR 10.0.0.3:53\nalice@sub KEY {KEY_A}\n",
    "syntax error": "www ADDR nonsense\n",
    "bad UTF-8": b"; \xff\n",
    "line too long": "; " + "x" * 70_000 + "\n",
    # a general continuation line of a bulk owner
    "KEY flags continuing a bulk owner": (
        f"bob@ KEY {KEY_A}\n\t KEY ed25519 sign flags=registered {'B' * 43}=\n"),
}


@pytest.mark.parametrize("name", sorted(GIVEN_UP))
def test_given_up_files(tmp_path: Path, name: str) -> None:
    text = GIVEN_UP[name]
    path = write(tmp_path, HEADER.encode() + (text if isinstance(text, bytes) else text.encode()))
    assert bulk(path) is None


def test_no_ttl_and_no_origin_give_up(tmp_path: Path) -> None:
    assert bulk(write(tmp_path, HEADER.replace("$TTL 3600\n", "") + f"a@ KEY {KEY_A}\n")) is None
    assert bulk(write(tmp_path, f"a@ KEY {KEY_A}\n" + HEADER), None) is None


def test_unreadable_big_and_special_files_give_up(tmp_path: Path, monkeypatch) -> None:
    assert compile_bulk(str(tmp_path / "missing.zone"), ORIGIN) is None
    assert compile_bulk(str(tmp_path), ORIGIN) is None  # a directory
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert compile_bulk(str(fifo), ORIGIN) is None
    path = write(tmp_path, HEADER + f"alice@ KEY {KEY_A}\n")
    assert compile_bulk(path, ORIGIN) is not None
    monkeypatch.setattr(bulkcompile, "MAX_BULK_FILE", 100)
    assert compile_bulk(path, ORIGIN) is None


# -- property: mixes of bulk and general lines ------------------------------------
_PIECES = [
    f"alice@ KEY {KEY_A}\n", f"alice@ KEY {KEY_B}\n", f"bob@www KEY {KEY_A}\n",
    f"\t KEY {KEY_B}\n", f"\t 60 KEY {KEY_C}\n", f"carol@ 60 IN KEY {KEY_C}\n",
    f"Dave@ KEY {KEY_A}\n", f"eve@sub KEY {KEY_A}\n", "www ADDR 10.0.0.1:53\n",
    "sub NS ns.sub\n", "ns.sub ADDR 10.0.0.2:53\n", "al ALIAS www\n", f"al KEY {KEY_A}\n",
    "$TTL 60\n", "$ORIGIN www.example.com.\n", "$ORIGIN example.com.\n", "; comment\n",
    "\n", f"x@ KEY x25519 encrypt {'A' * 43}= ; c\n", "\t ALIAS bob@www\n",
    f"frank@ KEY {KEY_A}", "\r\n", f"gina@ 1h KEY {KEY_B}\r\n",
    f"$hank@ KEY {KEY_A}\n", f"$ORIGINhank@ KEY {KEY_A}\n", "$ORIGN example.com.\n",
    f"alice@ KEY x25519 encrypt flags=registered {'A' * 43}=\n",
    f"\t KEY ed25519 sign flags=interim,4 {'B' * 43}=\n",
    f"ivy@ KEY x25519 encrypt flags=x {'A' * 43}=\n",
]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=20))
def test_any_mix_compiles_as_the_reference_or_gives_up(tmp_path_factory, pieces) -> None:
    path = write(tmp_path_factory.mktemp("mix"), HEADER + "".join(pieces))
    try:
        expected = reference(path)
    except ZoneErrors:
        assert bulk(path) is None
        return
    got = bulk(path)
    if got is not None:
        assert got == expected


# -- in the store: the same contents as the streaming compile -------------------------
@pytest.mark.parametrize("tail", [True, False])
def test_store_contents_as_the_streaming_compile(tmp_path: Path, monkeypatch,
                                                 tail: bool) -> None:
    """Appended (the zone ends the DB) or inserted (a zone follows it); an owner
    that comes back is found while writing, and the streaming compile redoes
    it with nothing of the first attempt left."""
    texts = [generated(400), generated(400).replace(" 2026010101 ", " 2026010102 ", 1)
             + f"pk1998@sales 3600 KEY {KEY_C}\n"]  # owner comes back: Repeated
    later = write(tmp_path, HEADER.replace("example.com", "example.net"), "net.zone")
    calls: list[bool] = []
    real = store_compile.compile_bulk

    def counting(path: str, origin: Name, prefix: bytes):
        result = real(path, origin, prefix)
        calls.append(result is not None)
        return result

    stores = {}
    for name, use_bulk in (("bulk", True), ("streaming", False)):
        if use_bulk:
            monkeypatch.setattr(store_compile, "compile_bulk", counting)
        else:
            monkeypatch.setattr(store_compile, "compile_bulk", lambda path, origin, prefix: None)
        stores[name] = tmp_path / name
        with Store(stores[name], map_size=MAP_SIZE) as store:
            if not tail:
                store.load_zone_file(later, N("example.net."), loaded_at=1.0)
            for i, text in enumerate(texts):
                compiled = store.load_zone_file(write(tmp_path, text, f"v{i}.zone"), ORIGIN,
                                              loaded_at=1.0)
                assert compiled.serial == 2026010101 + i
    assert calls[-2:] == [True, True]  # both taken; the second raised Repeated while writing
    assert dump(stores["bulk"]) == dump(stores["streaming"])


@pytest.mark.parametrize("size", [1, 2, 3, 1000])
@pytest.mark.parametrize("text", [
    f"alice@ KEY {KEY_A}\nbob@ KEY {KEY_A}\nalice@ KEY {KEY_B}\n",  # two bulk nodes
    f"alice@ KEY {KEY_A}\nbob@ KEY {KEY_A}\nalice@ ALIAS bob@\n",  # a bulk and a general one
])
def test_repeated_owner_is_found_in_any_batch(tmp_path: Path, text: str, size: int) -> None:
    zone = compile_bulk(write(tmp_path, HEADER + text), ORIGIN)
    assert zone is not None
    with pytest.raises(Repeated):
        list(zone.batches(size=size))


# -- check_zone: what `keyresolve zone check` runs -------------------------------------
@pytest.mark.parametrize("fname", ["good/example.zone", "good/syntax.zone", "good/include.zone"])
def test_check_zone_summarizes_as_load_zone(fname: str) -> None:
    path = str(ZONEFILES / fname)
    assert summarize(check_zone(path)) == summarize(load_zone(path))


@pytest.mark.parametrize("text", [
    generated(500),  # bulk
    generated(500) + f"pk1998@sales 3600 KEY {KEY_C}\n",  # an owner comes back: streaming
])
def test_check_zone_of_generated_zones(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    compiled = check_zone(path, ORIGIN)
    assert summarize(compiled) == summarize(load_zone(path, ORIGIN))
    assert compiled.records == sum(compiled.types.values())


@pytest.mark.parametrize("path", sorted((ZONEFILES / "bad").glob("*.zone")), ids=lambda p: p.name)
def test_check_zone_reports_what_load_zone_reports(path: Path) -> None:
    with pytest.raises(ZoneErrors) as checked:
        check_zone(str(path))
    with pytest.raises(ZoneErrors) as loaded:
        load_zone(str(path))
    assert str(checked.value) == str(loaded.value)
