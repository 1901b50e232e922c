#!/usr/bin/env python3
"""Sealed messages (issue #21): throughput, peak RSS, many recipients.

    python benchmarks/bench_seal.py --size-mib 256 --recipients 1000 --json seal.json

- **seal / open**: `Sealer` and `Opener` (keyresolve.client.seal) over
  SIZE MiB to one X25519 recipient, fed 64 KiB pieces, against the floor:
  the same AEAD (ChaCha20-Poly1305) over the same chunks in a bare loop, one
  nonce built per chunk as STREAM needs. Goal: throughput >= 0.8 x the floor.
  The data are 16 random 64 KiB blocks cycled (made once, 1 MiB), so no
  message is ever held whole. Opening is timed call by call around
  `Opener.update`/`finish` (the ciphertext it reads is sealed on the fly,
  untimed), and the floor around each bare decrypt the same way.
- **peak RSS**: each of those runs in its own child process; its peak RSS
  (ru_maxrss) is reported, the interpreter with cryptography loaded
  included. Goal: <= 64 MiB whatever the size.
- **signed**: the same seal and open with a sender signature (SHA-256 over
  the data comes on top): reported, no goal.
- **recipients**: one `Sealer` header for N X25519 recipients whose keys are
  at hand as bytes (as in a key ring) against N bare HPKE single-shot
  encryptions of a 32-byte key by cryptography's own HPKE with the public
  key objects made beforehand. Goal: <= 1.5 x. The same for N hybrid
  (ML-KEM-768 + X25519) recipients is reported, no goal.

Floor and measured runs alternate `--rounds` times; the median of each counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import ratio  # noqa: E402

#: Goals of issue #21.
GOAL_THROUGHPUT_RATIO = 0.8
GOAL_RSS_MB = 64
GOAL_RECIPIENTS_RATIO = 1.5
#: Longest a child may run (256 MiB takes well under a second per pass here).
CHILD_TIMEOUT = 300
#: Distinct 64 KiB data blocks cycled through (1 MiB made once).
BLOCKS = 16
KINDS = ("seal", "bare-seal", "open", "bare-open", "seal-signed", "open-signed")


def _blocks() -> list[bytes]:
    from keyresolve.client.seal import CHUNK_SIZE

    return [os.urandom(CHUNK_SIZE) for _ in range(BLOCKS)]


def child(kind: str, size_mib: int) -> dict:
    """One timed pass in this process; the report line the parent reads."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from keyresolve.client.seal import CHUNK_SIZE, Opener, Sealer, SigningKey, X25519Identity, X25519Recipient

    blocks = _blocks()
    chunks = size_mib * (1 << 20) // CHUNK_SIZE
    identity = X25519Identity(x25519.X25519PrivateKey.generate())
    signer = (SigningKey("alice@example.com", ed25519.Ed25519PrivateKey.generate())
              if kind.endswith("-signed") else None)
    aead = ChaCha20Poly1305(os.urandom(32))
    out_bytes = 0
    clock = time.perf_counter
    if kind in ("seal", "seal-signed"):
        start = clock()
        sealer = Sealer([X25519Recipient(identity.public_key)], signer=signer)
        out_bytes += len(sealer.header)
        for i in range(chunks):
            out_bytes += len(sealer.update(blocks[i % BLOCKS]))
        out_bytes += len(sealer.finish())
        seconds = clock() - start
    elif kind == "bare-seal":
        start = clock()
        for i in range(chunks):
            out_bytes += len(aead.encrypt(i.to_bytes(11, "big") + b"\x00", blocks[i % BLOCKS],
                                          None))
        seconds = clock() - start
    elif kind in ("open", "open-signed"):
        sealer = Sealer([X25519Recipient(identity.public_key)], signer=signer)
        opener = Opener([identity])
        seconds = 0.0
        start = clock()
        opener.update(sealer.header)
        seconds += clock() - start
        for i in range(chunks):
            piece = sealer.update(blocks[i % BLOCKS])
            start = clock()
            out_bytes += len(opener.update(piece))
            seconds += clock() - start
        piece = sealer.finish()
        start = clock()
        out_bytes += len(opener.update(piece)) + len(opener.finish())
        seconds += clock() - start
        assert opener.complete and out_bytes == chunks * CHUNK_SIZE
        if signer is not None:
            opener.signature.verify(signer.public_key)
    elif kind == "bare-open":
        seconds = 0.0
        for i in range(chunks):
            nonce = i.to_bytes(11, "big") + b"\x00"
            sealed = aead.encrypt(nonce, blocks[i % BLOCKS], None)
            start = clock()
            out_bytes += len(aead.decrypt(i.to_bytes(11, "big") + b"\x00", sealed, None))
            seconds += clock() - start
    else:
        raise SystemExit(f"unknown child kind {kind}")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "seconds": seconds, "bytes": chunks * CHUNK_SIZE,
            "mib_per_s": round(chunks * CHUNK_SIZE / (1 << 20) / seconds, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1), "output_bytes": out_bytes}


def run_child(kind: str, size_mib: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--size-mib", str(size_mib)],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise SystemExit(f"child {kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def throughput(size_mib: int, rounds: int) -> dict:
    """Alternate floor and measured children; medians and ratios."""
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for round_ in range(rounds):
        order = KINDS if round_ % 2 == 0 else tuple(reversed(KINDS))
        for kind in order:
            runs[kind].append(run_child(kind, size_mib))
    median = {kind: statistics.median(r["mib_per_s"] for r in runs[kind]) for kind in KINDS}
    peak = {kind: max(r["peak_rss_mb"] for r in runs[kind]) for kind in KINDS}
    return {
        "size_mib": size_mib, "rounds": rounds, "mib_per_s_median": median,
        "mib_per_s_runs": {kind: [r["mib_per_s"] for r in runs[kind]] for kind in KINDS},
        "peak_rss_mb_max": peak,
        "seal_ratio": ratio(median["seal"], median["bare-seal"]),
        "open_ratio": ratio(median["open"], median["bare-open"]),
        "seal_signed_ratio": ratio(median["seal-signed"], median["bare-seal"]),
        "open_signed_ratio": ratio(median["open-signed"], median["bare-open"]),
    }


def recipients(count: int, rounds: int) -> dict:
    """Header for `count` recipients against `count` bare HPKE encryptions."""
    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

    from keyresolve.client.seal import HybridRecipient, Sealer, X25519Recipient, hybrid_public_key, stanza_info
    from keyresolve.protocol.records import KeyAlgorithm

    x_keys = [x25519.X25519PrivateKey.generate().public_key() for _ in range(count)]
    x_raw = [k.public_bytes_raw() for k in x_keys]
    h_raw = [mlkem.MLKEM768PrivateKey.generate().public_key().public_bytes_raw()
             + x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
             for _ in range(count)]
    h_keys = [hybrid_public_key(raw) for raw in h_raw]
    suites = {
        "x25519": (hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
                   x_keys, [X25519Recipient(raw) for raw in x_raw], KeyAlgorithm.X25519),
        "hybrid": (hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256,
                              hpke.AEAD.CHACHA20_POLY1305),
                   h_keys, [HybridRecipient(raw) for raw in h_raw], KeyAlgorithm.MLKEM768X25519),
    }
    out: dict = {"recipients": count, "rounds": rounds}
    clock = time.perf_counter
    for name, (suite, keys, recips, kind) in suites.items():
        bare, sealed = [], []
        for _ in range(rounds):
            file_key, info = os.urandom(32), stanza_info(kind)
            start = clock()
            for key in keys:
                suite.encrypt(file_key, key, info=info)
            bare.append(clock() - start)
            start = clock()
            header = Sealer(recips).header
            sealed.append(clock() - start)
            assert len(header) > count * 80
        out[name] = {"bare_hpke_s": round(statistics.median(bare), 4),
                     "sealer_header_s": round(statistics.median(sealed), 4),
                     "ratio": ratio(statistics.median(sealed), statistics.median(bare)),
                     "bare_runs": [round(t, 4) for t in bare],
                     "sealer_runs": [round(t, 4) for t in sealed]}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="message size")
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--src", help="keyresolve tree to measure (default: this repo)")
    parser.add_argument("--json", help="write the report here too")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.size_mib)))
        return
    root = common.use_source(args.src)
    report = common.report_header("seal", root, argv)
    report["throughput"] = throughput(args.size_mib, args.rounds)
    report["recipients"] = recipients(args.recipients, args.rounds)
    t, r = report["throughput"], report["recipients"]
    report["goals"] = {
        "seal_ratio": {"value": t["seal_ratio"], "goal": f">= {GOAL_THROUGHPUT_RATIO}",
                       "met": (t["seal_ratio"] or 0) >= GOAL_THROUGHPUT_RATIO},
        "open_ratio": {"value": t["open_ratio"], "goal": f">= {GOAL_THROUGHPUT_RATIO}",
                       "met": (t["open_ratio"] or 0) >= GOAL_THROUGHPUT_RATIO},
        "peak_rss_mb": {"value": max(t["peak_rss_mb_max"][k] for k in ("seal", "open")),
                        "goal": f"<= {GOAL_RSS_MB}",
                        "met": max(t["peak_rss_mb_max"][k] for k in ("seal", "open"))
                        <= GOAL_RSS_MB},
        "recipients_ratio": {"value": r["x25519"]["ratio"], "goal": f"<= {GOAL_RECIPIENTS_RATIO}",
                             "met": (r["x25519"]["ratio"] or 99) <= GOAL_RECIPIENTS_RATIO},
    }
    common.emit(report, args.json)


if __name__ == "__main__":
    main()
