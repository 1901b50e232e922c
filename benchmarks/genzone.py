#!/usr/bin/env python3
"""Generate a benchmark zone: N KEY records at mailboxes shaped like real ones.

    python benchmarks/genzone.py 1000000 --seed 1 --out /tmp/bench.zone --names /tmp/names.txt

- Local parts: first.last, flast, f.last, last.first, first_last+tag,
  first.last42, initials + year..., unique by construction of a counter suffix
  on collisions. Mostly at the apex, some at undelegated subdomains
  (``alice@eng.example.com.``).
- About 80 % of mailboxes hold one x25519 encryption key, 20 % also an
  ed25519 signing key (a continuation line with a blank owner). Keys are random
  bytes of the right length (32): the zone checks only lengths.
- A few delegations (``branchN NS ns1.branchN`` with ADDR glue) and the apex
  SOA/NS/ADDR.
- Deterministic from --seed: the same N and seed give the same bytes.

`--names FILE` writes every mailbox that owns keys, one absolute name per line,
in a seeded random order: the query list of the load generators.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import time

#: Zone origin of every generated zone.
ORIGIN = "example.com."
#: Share of mailboxes that also have an ed25519 signing key.
SECOND_KEY_SHARE = 0.2
#: Share of mailboxes placed under an undelegated subdomain.
SUBDOMAIN_SHARE = 0.15
#: Delegated child zones (each with one NS and ADDR glue).
DELEGATIONS = 5

FIRST = """james mary robert patricia john jennifer michael linda david elizabeth william
barbara richard susan joseph jessica thomas sarah charles karen christopher lisa daniel
nancy matthew betty anthony margaret mark sandra donald ashley steven kimberly paul emily
andrew donna joshua michelle kenneth carol kevin amanda brian dorothy george melissa
timothy deborah ronald stephanie edward rebecca jason sharon jeffrey laura ryan cynthia
jacob kathleen gary amy nicholas angela eric shirley jonathan anna stephen brenda larry
pamela justin emma scott nicole brandon helen benjamin samantha samuel katherine gregory
christine alexander debra frank rachel patrick carolyn raymond janet jack catherine dennis
maria jerry heather tyler diane aaron ruth jose julie adam olivia nathan joyce henry
virginia douglas victoria zachary kelly peter lauren kyle christina ethan joan walter
evelyn noah judith jeremy megan christian andrea keith cheryl roger hannah terry jacqueline
gerald martha harold gloria sean teresa austin ann carl sara arthur madison lawrence
frances dylan kathryn jesse janice jordan jean bryan abigail billy alice joe judy bruce
sophia gabriel grace logan denise albert amber willie doris alan marilyn juan danielle
wayne beverly elijah isabella randy theresa roy diana vincent natalie ralph brittany
eugene charlotte russell marie bobby kayla mason alexis philip lori louis ana sven ingrid
yuki hiroshi wei mei rahul priya ahmed fatima olga ivan chen li""".split()

LAST = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez
lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white
harris sanchez clark ramirez lewis robinson walker young allen king wright scott torres
nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts
gomez phillips evans turner diaz parker cruz edwards collins reyes stewart morris morales
murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos
kim cox ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes
price alvarez castillo sanders patel myers long ross foster jimenez powell jenkins perry
russell sullivan bell coleman butler henderson barnes gonzales fisher vasquez simmons
romero jordan patterson alexander hamilton graham reynolds griffin wallace moreno west
cole hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford castro
marshall owens harrison fernandez mcdonald woods washington kennedy wells vargas henry
chen freeman webb tucker guzman burns crawford olson simpson porter hunter gordon mendez
silva shaw snyder mason dixon munoz hunt hicks holmes palmer wagner black robertson boyd
rose stone salazar fox warren mills meyer rice schmidt garza daniels ferguson nichols
stephens soto weaver ryan gardner payne grant dunn kelley spencer hawkins arnold pierce
hansen larsen nielsen muller schneider fischer weber becker schulz hoffmann rossi russo
ferrari esposito bianchi romano colombo dubois durand lefebvre moreau laurent tanaka
suzuki watanabe yamamoto nakamura kobayashi wang zhang liu yang huang zhao wu zhou xu sun
singh kumar sharma gupta ivanov petrov sidorov kowalski nowak novak horvat""".split()

TAGS = "news work shop git dev lists billing travel bank social spam keys".split()
SUBDOMAINS = ["eng", "sales", "support", "mail", "research", "ops", "hr", "eu", "us.corp"]


def _local_part(rng: random.Random) -> str:
    first = rng.choice(FIRST)
    last = rng.choice(LAST)
    style = rng.random()
    if style < 0.30:
        return f"{first}.{last}"
    if style < 0.45:
        return f"{first[0]}{last}"
    if style < 0.55:
        return f"{first[0]}.{last}"
    if style < 0.62:
        return f"{last}.{first}"
    if style < 0.72:
        return f"{first}_{last}+{rng.choice(TAGS)}"
    if style < 0.84:
        return f"{first}.{last}{rng.randrange(1, 100)}"
    if style < 0.92:
        return f"{first[0]}{last[0]}{rng.randrange(1950, 2011)}"
    if style < 0.97:
        return f"{first}{rng.randrange(1, 1000)}"
    return f"{first}-{last}"


def generate(keys: int, seed: int, out, names_out=None) -> dict:
    """Write a zone of `keys` KEY records to the text stream `out`.

    Returns counts: keys, mailboxes, delegations, lines. Mailbox names go to
    `names_out` (shuffled) when given.
    """
    rng = random.Random(seed)
    write = out.write
    write(f"; generated by benchmarks/genzone.py {keys} --seed {seed}\n")
    write(f"$ORIGIN {ORIGIN}\n$TTL 3600\n")
    write("@ SOA ns1 hostmaster@example.com. 2026010101 3600 600 604800 300\n")
    write("@ NS ns1\n@ NS ns2\nns1 ADDR 127.0.0.1:5300\nns2 ADDR [::1]:5300\n")
    for i in range(1, DELEGATIONS + 1):
        write(f"branch{i} NS ns1.branch{i}\nns1.branch{i} ADDR 127.0.0.{i + 1}:5300\n")
    lines = 7 + 2 * DELEGATIONS
    seen: set[str] = set()
    names: list[str] = []
    made = 0
    randbytes = rng.randbytes
    b64 = base64.b64encode
    while made < keys:
        local = _local_part(rng)
        domain = rng.choice(SUBDOMAINS) if rng.random() < SUBDOMAIN_SHARE else ""
        owner = f"{local}@{domain}"
        n = 2
        while owner in seen:  # a counter makes it unique: john.smith2@
            owner = f"{local}{n}@{domain}"
            n += 1
        seen.add(owner)
        key = b64(randbytes(32)).decode()
        # a few lines carry an explicit TTL, the rest use $TTL
        ttl = " 1h" if rng.random() < 0.05 else ""
        write(f"{owner}{ttl} KEY x25519 encrypt {key}\n")
        made += 1
        lines += 1
        if made < keys and rng.random() < SECOND_KEY_SHARE:
            # continuation: a blank owner reuses the previous one (RFC 1035 5.1)
            write(f"\t{ttl.strip()} KEY ed25519 sign {b64(randbytes(32)).decode()}\n")
            made += 1
            lines += 1
        if names_out is not None:
            names.append(f"{owner}.{ORIGIN}" if domain else f"{owner}{ORIGIN}")
    if names_out is not None:
        rng.shuffle(names)
        names_out.write("\n".join(names) + "\n")
    return {"keys": made, "mailboxes": len(seen), "delegations": DELEGATIONS, "lines": lines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", type=int, help="number of KEY records")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="zone file to write")
    parser.add_argument("--names", help="also write the query names here")
    args = parser.parse_args(argv)
    if args.keys < 1:
        parser.error("keys must be at least 1")
    start = time.perf_counter()
    with open(args.out, "w", encoding="ascii", buffering=1 << 20) as out:
        if args.names:
            with open(args.names, "w", encoding="ascii") as names_out:
                counts = generate(args.keys, args.seed, out, names_out)
        else:
            counts = generate(args.keys, args.seed, out)
    print(f"{args.out}: {counts['keys']} keys at {counts['mailboxes']} mailboxes, "
          f"{counts['delegations']} delegations, {counts['lines']} lines "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
