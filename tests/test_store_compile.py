"""Store.load_zone_file: zone files streamed into LMDB, on real environments in tmp_path.

The reference is the in-memory path: `Zone.from_records` over the reader's
records (no zone checks of ours involved), encoded by `Store.replace_zone_reference`.
"""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyresolve.store import compile as store_compile
from keyresolve.store.keys import node_prefix
from keyresolve.protocol.codes import RType
from keyresolve.protocol.errors import ZoneErrors
from keyresolve.protocol.names import Name
from keyresolve.protocol.serial import SerialNotIncreased
from keyresolve.store.zones import Store
from keyresolve.zonedata.model import Zone
from keyresolve.zonedata.zonefile import iter_records, load_zone, parse_zone_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import genzone  # noqa: E402

N = Name.from_text
ORIGIN = N("example.com.")
ZONEFILES = Path(__file__).parent / "zonefiles"
MAP_SIZE = 1 << 26  # small: tests write megabytes at most
KEY_A = "x25519 encrypt " + "A" * 43 + "="
KEY_B = "ed25519 sign " + "B" * 43 + "="
HEADER = "$ORIGIN example.com.\n$TTL 3600\n@ SOA ns1 hostmaster@ 1 3600 600 86400 300\n" \
         "@ NS ns1\nns1 ADDR 127.0.0.1:53\n"


def dump(path: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every key and value of every sub-DB."""
    env = lmdb.open(str(path), max_dbs=4, readonly=True, subdir=True)
    try:
        out = {}
        for name in (b"zones", b"nodes", b"journal", b"scratch"):
            try:
                db = env.open_db(name, create=False)
            except lmdb.NotFoundError:
                continue
            with env.begin() as txn:
                out[name] = list(txn.cursor(db=db))
        return out
    finally:
        env.close()


def served_nodes(path: Path, origin: Name = ORIGIN) -> dict[bytes, bytes]:
    """The zone's nodes in the area it is served from, by key relative to it."""
    with Store(path, map_size=MAP_SIZE) as store:
        prefix = store.get_zone_info(origin).node_prefix
    return {key[len(prefix):]: value for key, value in dump(path)[b"nodes"]
            if key.startswith(prefix)}


def reference(zone_path: str, origin: Name) -> Zone:
    return Zone.from_records(origin, (rec for rec, _, _ in iter_records(zone_path, origin)))


def errors(exc: ZoneErrors) -> list[tuple[str, int, str]]:
    return [(e.filename, e.line, e.message) for e in exc.errors]


def write(tmp_path: Path, text: str, name: str = "z.zone") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def genzone_file(tmp_path: Path, keys: int, seed: int = 1) -> str:
    out = io.StringIO()
    genzone.generate(keys, seed, out)
    return write(tmp_path, out.getvalue(), "gen.zone")


# -- byte-identical to the in-memory path --------------------------------------------
@pytest.mark.parametrize("fname", ["example.zone", "include.zone", "syntax.zone"])
def test_good_files_store_the_same_bytes(tmp_path: Path, fname: str) -> None:
    path = str(ZONEFILES / "good" / fname)
    origin = load_zone(path).origin
    with Store(tmp_path / "new", map_size=MAP_SIZE) as store:
        compiled = store.load_zone_file(path, origin, loaded_at=1.0)
    with Store(tmp_path / "old", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(reference(path, origin), compiled.sources, loaded_at=1.0)
    assert dump(tmp_path / "new") == dump(tmp_path / "old")


def test_generated_zone_stores_the_same_bytes(tmp_path: Path) -> None:
    path = genzone_file(tmp_path, 3000)
    with Store(tmp_path / "new", map_size=MAP_SIZE) as store:
        compiled = store.load_zone_file(path, ORIGIN, loaded_at=1.0)
        info = store.get_zone_info(ORIGIN)
    zone = reference(path, ORIGIN)
    with Store(tmp_path / "old", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(zone, compiled.sources, loaded_at=1.0)
    assert dump(tmp_path / "new") == dump(tmp_path / "old")
    assert (compiled.serial, compiled.records) == (zone.serial, len(zone))
    assert info is not None and (info.serial, info.records) == (zone.serial, len(zone))


def test_owners_out_of_order_are_merged(tmp_path: Path) -> None:
    text = HEADER + (
        f"alice@ KEY {KEY_A}\n"
        f"bob@www KEY {KEY_A}\n"
        "www ADDR 10.0.0.1:53\n"
        f"alice@ KEY {KEY_B}\n"
        f"alice@ KEY {KEY_A}\n"  # duplicate: dropped
        "@ NS ns2\n"
        "ns2 ADDR 10.0.0.2:53\n"
        "www ADDR 10.0.0.3:53\n")
    path = write(tmp_path, text)
    with Store(tmp_path / "new", map_size=MAP_SIZE) as store:
        compiled = store.load_zone_file(path, ORIGIN, loaded_at=1.0)
    with Store(tmp_path / "old", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(reference(path, ORIGIN), compiled.sources, loaded_at=1.0)
    assert dump(tmp_path / "new") == dump(tmp_path / "old")
    assert compiled.records == 10


def test_seen_filter_false_positives_change_nothing(tmp_path: Path, monkeypatch) -> None:
    path = genzone_file(tmp_path, 500)
    with Store(tmp_path / "a", map_size=MAP_SIZE) as store:
        store.load_zone_file(path, ORIGIN, loaded_at=1.0)
    monkeypatch.setattr(store_compile, "SEEN_FILTER_BITS", 8)  # every key looks seen
    monkeypatch.setattr(store_compile, "_SEEN_MASK", 7)
    with Store(tmp_path / "b", map_size=MAP_SIZE) as store:
        store.load_zone_file(path, ORIGIN, loaded_at=1.0)
    assert dump(tmp_path / "a") == dump(tmp_path / "b")


@pytest.mark.parametrize("batch", [1, 3])
def test_sorted_put_batches_change_nothing(tmp_path: Path, monkeypatch, batch: int) -> None:
    """Owners that come back after their batch was put are read back."""
    path = genzone_file(tmp_path, 300)
    back = HEADER + "".join(f"u{i}@ KEY {KEY_A}\n" for i in range(7)) + f"u1@ KEY {KEY_B}\n"
    with Store(tmp_path / "a", map_size=MAP_SIZE) as store:
        store.load_zone_file(path, ORIGIN, loaded_at=1.0)
        store.load_zone_file("back.zone", N("example.org."), text=back.replace(
            "example.com", "example.org"), loaded_at=1.0)
    monkeypatch.setattr(store_compile, "COMPILE_BATCH_NODES", batch)
    with Store(tmp_path / "b", map_size=MAP_SIZE) as store:
        store.load_zone_file(path, ORIGIN, loaded_at=1.0)
        store.load_zone_file("back.zone", N("example.org."), text=back.replace(
            "example.com", "example.org"), loaded_at=1.0)
        with store.snapshot() as snap:
            keys = [r for r in snap.iter_records(N("example.org.")) if r.rtype == RType.KEY
                    and r.name == N("u1@example.org.")]
    assert len(keys) == 2
    assert dump(tmp_path / "a") == dump(tmp_path / "b")


# -- reloads and failures ----------------------------------------------------------------
def test_reload_journal_and_nodes_as_replace_zone(tmp_path: Path) -> None:
    v1 = HEADER + f"alice@ KEY {KEY_A}\nbob@ KEY {KEY_A}\ncarol@ KEY {KEY_A}\n"
    v2 = v1.replace(" 1 3600", " 2 3600").replace(f"bob@ KEY {KEY_A}", f"bob@ KEY {KEY_B}")
    v2 = v2.replace(f"carol@ KEY {KEY_A}\n", f"dave@ KEY {KEY_A}\n")
    with Store(tmp_path / "new", map_size=MAP_SIZE) as store:
        store.load_zone_file("z.zone", ORIGIN, text=v1, loaded_at=1.0)
        store.load_zone_file("z.zone", ORIGIN, text=v2, loaded_at=2.0)
        steps = store.journal_steps(ORIGIN, 1)
    with Store(tmp_path / "old", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(parse_zone_text(v1, "z.zone"), [("z.zone", b"")], loaded_at=1.0)
        store.replace_zone_reference(parse_zone_text(v2, "z.zone"), [("z.zone", b"")], loaded_at=2.0)
    new, old = dump(tmp_path / "new"), dump(tmp_path / "old")
    assert served_nodes(tmp_path / "new") == served_nodes(tmp_path / "old")
    assert new[b"journal"] == old[b"journal"]
    assert steps is not None and len(steps) == 1
    assert sorted(str(r.name) for r in steps[0].iter_removed()) == [
        "bob@example.com.", "carol@example.com."]
    assert sorted(str(r.name) for r in steps[0].iter_added()) == [
        "bob@example.com.", "dave@example.com."]
    # the reload went to the other node area and emptied the old one
    with Store(tmp_path / "new", map_size=MAP_SIZE) as store:
        assert store.get_zone_info(ORIGIN).area == 2
    assert all(key.startswith(node_prefix(ORIGIN, 2)) for key, _ in new[b"nodes"])


@pytest.mark.parametrize("batch", [3, 16384])
def test_sorted_and_direct_compiles_store_the_same(tmp_path: Path, monkeypatch,
                                                    batch: int) -> None:
    """Alone, a zone is sorted and appended; with a zone after it (or its
    other area served), its nodes are inserted directly: same contents,
    same journal, nothing left in the scratch DB."""
    monkeypatch.setattr(store_compile, "COMPILE_BATCH_NODES", batch)
    path = genzone_file(tmp_path, 200)
    versions = [Path(path).read_text().replace(" 2026010101 ", f" {serial} ", 1)
                for serial in (2026010101, 2026010102, 2026010103)]
    assert versions[1] != versions[0]
    versions[1] += f"extra1@ 3600 KEY {KEY_A}\n"
    later = HEADER.replace("example.com", "example.net")
    reference_zones = [parse_zone_text(text, "gen.zone", ORIGIN) for text in versions]
    with Store(tmp_path / "ref", map_size=MAP_SIZE) as ref, \
            Store(tmp_path / "new", map_size=MAP_SIZE) as new:
        new.load_zone_file("net.zone", N("example.net."), text=later)  # follows example.com
        for text, zone in zip(versions, reference_zones):
            ref.replace_zone_reference(zone)
            new.load_zone_file("gen.zone", ORIGIN, text=text)
            assert _records(new) == _records(ref)
            assert new.journal_info(ORIGIN) == ref.journal_info(ORIGIN)
        new.delete_zone(N("example.net."))
        new.load_zone_file("gen.zone", ORIGIN, text=versions[0])  # alone again: sorted
        ref.replace_zone_reference(reference_zones[0])
        assert _records(new) == _records(ref)
    scratch = dump(tmp_path / "new").get(b"scratch")
    assert scratch == []


def test_compiles_in_threads_of_one_store_take_turns(tmp_path: Path, monkeypatch) -> None:
    """Sorted compiles share the scratch DB: two at once must not mix or drop
    each other's runs."""
    monkeypatch.setattr(store_compile, "COMPILE_BATCH_NODES", 5)  # many runs each
    text = Path(genzone_file(tmp_path, 2000)).read_text()
    origins = [ORIGIN, N("example.org.")]
    texts = [text, text.replace("example.com", "example.org")]
    with Store(tmp_path / "ref", map_size=MAP_SIZE) as ref:
        for origin, zone_text in zip(origins, texts):
            ref.load_zone_file("gen.zone", origin, text=zone_text)
        expected = [_records(ref, origin) for origin in origins]
    failures: list[BaseException] = []
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        def compile_twice(origin: Name, zone_text: str) -> None:
            try:
                for _ in range(3):
                    store.load_zone_file("gen.zone", origin, text=zone_text)
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=compile_twice, args=args)
                   for args in zip(origins, texts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert [_records(store, origin) for origin in origins] == expected


def _records(store: Store, origin: Name = ORIGIN) -> list:
    with store.snapshot() as snap:
        return list(snap.iter_records(origin))


def test_unchanged_reload_keeps_journal(tmp_path: Path) -> None:
    v1 = HEADER + f"alice@ KEY {KEY_A}\n"
    v2 = v1.replace(" 1 3600", " 2 3600")
    with Store(tmp_path, map_size=MAP_SIZE) as store:
        store.load_zone_file("z.zone", ORIGIN, text=v1)
        store.load_zone_file("z.zone", ORIGIN, text=v2)
        store.load_zone_file("z.zone", ORIGIN, text=v2)
        info = store.journal_info(ORIGIN)
    assert info is not None and (info.first, info.last) == (1, 2)


def test_failed_compile_leaves_the_old_zone(tmp_path: Path) -> None:
    good = HEADER + f"alice@ KEY {KEY_A}\n"
    with Store(tmp_path, map_size=MAP_SIZE) as store:
        store.load_zone_file("z.zone", ORIGIN, text=good)
    before = dump(tmp_path)
    bad = good.replace(" 1 3600", " 2 3600") + f"bob@ KEY {KEY_A}\nbob@ 60 KEY {KEY_B}\n"
    for journal in (True, False):
        with Store(tmp_path, map_size=MAP_SIZE) as store, pytest.raises(ZoneErrors) as exc:
            store.load_zone_file("z.zone", ORIGIN, text=bad, journal=journal)
        assert errors(exc.value) == [("z.zone", 8, "TTL 60 differs from TTL 3600 of the KEY "
                                      "records of bob@example.com. at z.zone:7 (one name and "
                                      "type, one TTL: RFC 2181 5.2)")]
        assert dump(tmp_path) == before


# -- errors: as load_zone, with locations of nodes written earlier -------------------------
@pytest.mark.parametrize("path", sorted((ZONEFILES / "bad").glob("*.zone")), ids=lambda p: p.name)
def test_bad_files_same_errors_as_load_zone(tmp_path: Path, path: Path) -> None:
    with pytest.raises(ZoneErrors) as expected:
        load_zone(str(path), ORIGIN)
    with Store(tmp_path, map_size=MAP_SIZE) as store, pytest.raises(ZoneErrors) as got:
        store.load_zone_file(str(path), ORIGIN)
    assert errors(got.value) == errors(expected.value)
    with Store(tmp_path, map_size=MAP_SIZE) as store:
        assert store.zone_names() == []


def test_errors_naming_rrsets_written_earlier(tmp_path: Path) -> None:
    text = HEADER + (
        f"alice@ KEY {KEY_A}\n"                 # 6
        f"bob@ KEY {KEY_A}\n"                   # 7
        f"alice@ 60 KEY {KEY_B}\n"              # 8: TTL differs from line 6
        "al ALIAS www\n"                        # 9
        "www ADDR 10.0.0.1:53\n"                # 10
        "al ALIAS ns1\n"                        # 11: second ALIAS, first at 9
        f"al KEY {KEY_A}\n"                     # 12: not with an ALIAS
        "sub NS ns.sub\n"                       # 13
        f"carol@ns.sub KEY {KEY_A}\n"           # 14: occluded
        "ns.sub ADDR 10.0.0.2:53\n"             # 15
        f"dave@sub KEY {KEY_A}\n"               # 16: occluded (mailbox at the cut)
        f"sub KEY {KEY_A}\n"                    # 17: at the delegation point
        "sub NS ns2.sub\n")                     # 18: glue missing
    path = write(tmp_path, text)
    with Store(tmp_path / "s", map_size=MAP_SIZE) as store, pytest.raises(ZoneErrors) as exc:
        store.load_zone_file(path, ORIGIN)
    got = [(line, message) for _, line, message in errors(exc.value)]
    assert got == [
        (8, "TTL 60 differs from TTL 3600 of the KEY records of alice@example.com. at "
            f"{path}:6 (one name and type, one TTL: RFC 2181 5.2)"),
        (11, f"second ALIAS at al.example.com. (the first is at {path}:9); "
             "a name has at most one"),
        (12, f"KEY at al.example.com., which has an ALIAS (at {path}:9): ALIAS is exclusive"),
        (14, "KEY at carol@ns.sub.example.com. below the delegation point sub.example.com.: "
             "only ADDR (glue) allowed"),
        (16, "KEY at dave@sub.example.com. below the delegation point sub.example.com.: "
             "only ADDR (glue) allowed"),
        (17, "KEY at the delegation point sub.example.com.: only NS and ADDR (glue) "
             "belong there"),
        (18, "NS target ns2.sub.example.com. is inside the zone but has no ADDR record (glue)"),
    ]
    with pytest.raises(ZoneErrors) as mem:
        load_zone(path, ORIGIN)
    assert errors(mem.value) == errors(exc.value)


# -- property: any order of owners, same bytes as the reference, same errors as load_zone ----
_OWNERS = ["alice@", "Bob@", "carol@www", "www", "x.www", "sub", "ns.sub", "eve@sub", "al"]
_LINES = st.tuples(st.sampled_from(_OWNERS), st.sampled_from(["KEY", "ADDR", "NS", "ALIAS"]),
                   st.integers(0, 2), st.sampled_from(["", "60 ", "IN "]))


def _line(owner: str, rtype: str, pick: int, ttl: str) -> str:
    data = {"KEY": [KEY_A, KEY_B, "x25519 encrypt " + "C" * 43 + "="],
            "ADDR": ["10.0.0.1:53", "[::1]:53", "10.0.0.2:5300"],
            "NS": ["ns.sub", "ns1", "ns.example.org."],
            "ALIAS": ["www", "alice@", "x.example.org."]}[rtype][pick]
    return f"{owner} {ttl}{rtype} {data}\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINES, max_size=25))
def test_any_zone_compiles_as_the_reference(tmp_path_factory, lines) -> None:
    text = HEADER + "".join(_line(*line) for line in lines)
    base = tmp_path_factory.mktemp("fuzz")
    try:
        expected = parse_zone_text(text, "z.zone")
    except ZoneErrors as exc:
        with Store(base, map_size=MAP_SIZE) as store, pytest.raises(ZoneErrors) as got:
            store.load_zone_file("z.zone", ORIGIN, text=text)
        assert errors(got.value) == errors(exc)
        return
    with Store(base / "new", map_size=MAP_SIZE) as store:
        store.load_zone_file("z.zone", ORIGIN, text=text, loaded_at=1.0)
    records = [rec for rec, _, _ in iter_records_text(base, text)]
    assert Zone.from_records(ORIGIN, records).nodes == expected.nodes
    with Store(base / "old", map_size=MAP_SIZE) as store:
        store.replace_zone_reference(expected, [("z.zone", b"")], loaded_at=1.0)
    new, old = dump(base / "new"), dump(base / "old")
    assert new[b"nodes"] == old[b"nodes"]


def iter_records_text(base: Path, text: str):
    return iter_records(write(base, text), ORIGIN)


# -- serial policies ----------------------------------------------------------------
def _serial_zone(serial: int, body: str) -> str:
    return HEADER.replace(" 1 3600 ", f" {serial} 3600 ") + body


def _owners(store: Store) -> set[str]:
    with store.snapshot() as snap:
        return {r.name.to_text() for r in snap.iter_records(ORIGIN)}


def _contents(store: Store) -> list:
    """Every key and value of the zones, nodes and journal DBs."""
    with store._env.begin() as txn:
        return [list(txn.cursor(db=db)) for db in (store._zones, store._nodes, store._journal)]


@pytest.mark.parametrize("serial, body", [(1, f"bob@ KEY {KEY_A}\n"),  # changed, same serial
                                          (0, f"alice@ KEY {KEY_A}\n"),  # lower, same records
                                          (0, f"bob@ KEY {KEY_A}\n")])  # lower and changed
def test_keep_refuses_a_change_without_a_higher_serial(tmp_path: Path, serial, body) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(_serial_zone(1, f"alice@ KEY {KEY_A}\n"))
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.load_zone_file(str(zone), ORIGIN, serial_policy="keep")
        before = _contents(store)
        zone.write_text(_serial_zone(serial, body))
        with pytest.raises(SerialNotIncreased, match=f"serial {serial} .* served serial 1 "):
            store.load_zone_file(str(zone), ORIGIN, serial_policy="keep")
        assert _contents(store) == before  # nothing left beside the served zone
        assert store.get_zone_info(ORIGIN).serial == 1
        assert "alice@example.com." in _owners(store)


def test_keep_takes_a_same_serial_reload_that_changes_nothing(tmp_path: Path) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(_serial_zone(1, f"alice@ KEY {KEY_A}\n"))
    other = tmp_path / "other.zone"
    other.write_text(_serial_zone(1, f"alice@ KEY {KEY_A}\n; a comment\n"))
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.load_zone_file(str(zone), ORIGIN, serial_policy="keep")
        assert store.load_zone_file(str(other), ORIGIN, serial_policy="keep").serial == 1
        assert store.get_zone_info(ORIGIN).sources[0][0] == str(other)


@pytest.mark.parametrize("policy, expected", [("increment", 8), ("unixtime", 1_800_000_000)])
def test_increment_and_unixtime_publish_a_change_with_a_higher_serial(tmp_path: Path, policy,
                                                                       expected) -> None:
    zone = tmp_path / "z.zone"
    zone.write_text(_serial_zone(7, f"alice@ KEY {KEY_A}\n"))
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.load_zone_file(str(zone), ORIGIN, serial_policy=policy)
        zone.write_text(_serial_zone(3, f"alice@ KEY {KEY_A}\nbob@ KEY {KEY_A}\n"))
        compiled = store.load_zone_file(str(zone), ORIGIN, serial_policy=policy,
                                      now=1_800_000_000.5)
        assert compiled.serial == store.get_zone_info(ORIGIN).serial == expected
        with store.snapshot() as snap:
            assert snap.get_zone(ORIGIN).soa.rdata.serial == expected
        (step,) = store.journal_steps(ORIGIN, 7)  # every difference, SOA included
        assert (step.old_soa.rdata.serial, step.new_soa.rdata.serial) == (7, expected)
        assert [r.name.to_text() for r in step.iter_added()] == ["bob@example.com."]
        assert list(step.iter_removed()) == []
        # the same records again, the file's serial still 3: nothing to publish
        zone.write_text(_serial_zone(3, f"alice@ KEY {KEY_A}\nbob@ KEY {KEY_A}\n; same\n"))
        assert store.load_zone_file(str(zone), ORIGIN, serial_policy=policy,
                                  now=1_800_000_100.0).serial == expected
        assert store.journal_info(ORIGIN).entries == 1


def test_without_a_policy_a_same_serial_change_is_stored(tmp_path: Path) -> None:
    """(`keyresolve zone` and the store's other callers: no serial policy.)"""
    zone = tmp_path / "z.zone"
    zone.write_text(_serial_zone(1, f"alice@ KEY {KEY_A}\n"))
    with Store(tmp_path / "db", map_size=MAP_SIZE) as store:
        store.load_zone_file(str(zone), ORIGIN)
        zone.write_text(_serial_zone(1, f"bob@ KEY {KEY_A}\n"))
        assert store.load_zone_file(str(zone), ORIGIN).serial == 1
        assert "bob@example.com." in _owners(store)
