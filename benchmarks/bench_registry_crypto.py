"""Cost of the crypto of one registration (issue #20), per step, in one run.

Times each public-key step of a REGISTER and its CONFIRM, as the client and
the registry do them (keyresolve.registry.messages): seal and sign a
request, open and verify it, seal and sign the challenge, open and verify
it. Also the ratio of the whole to one Ed25519 verification measured in the
same run (absolute figures drift on shared machines). Bounded: `--rounds`
repetitions of each step (default 300), a few seconds on one core.

    python benchmarks/bench_registry_crypto.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keyresolve.protocol.names import Name
from keyresolve.protocol.records import ADDR, KEY, KeyAlgorithm, KeyUsage
from keyresolve.registry import messages as m


def _pair() -> tuple[X25519PrivateKey, Ed25519PrivateKey, KEY, KEY]:
    x, ed = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    return (x, ed, KEY(KeyAlgorithm.X25519, KeyUsage.ENCRYPT, x.public_key().public_bytes_raw()),
            KEY(KeyAlgorithm.ED25519, KeyUsage.SIGN, ed.public_key().public_bytes_raw()))


def measure(rounds: int) -> dict[str, float]:
    """Microseconds per step, the median of `rounds` runs of each."""
    reg_x, reg_ed, reg_xk, reg_edk = _pair()
    own_x, own_ed, own_xk, own_edk = _pair()
    zone, address = Name.from_text("example.com."), Name.from_text("alice@example.com.")
    fields = m.register_fields(address, own_xk, own_edk)
    challenge = m.Challenge(m.Kind.CONFIRM, bytes(16), bytes(16), zone, address,
                            (bytes(8), bytes(8)), (), 0, ADDR.parse("127.0.0.1:53"))
    envelope = m.make_request(m.Kind.REGISTER, zone, fields, registry_key=reg_xk, time=1,
                              signer=own_ed)
    attachment = m.make_challenge(challenge, own_xk, reg_ed)
    confirm = m.make_request(m.Kind.CONFIRM, zone, m.token_fields(bytes(16), bytes(16)),
                             registry_key=reg_xk, time=1, signer=own_ed)
    body = m.request_body(m.Kind.CONFIRM, zone, 1, bytes(16), [])
    signature = own_ed.sign(m.CONTEXT_REQUEST + body)
    steps = {
        "client: seal+sign REGISTER": lambda: m.make_request(
            m.Kind.REGISTER, zone, fields, registry_key=reg_xk, time=1, signer=own_ed),
        "registry: open+verify REGISTER": lambda: m.open_request(reg_x, envelope),
        "registry: sign+seal challenge": lambda: m.make_challenge(challenge, own_xk, reg_ed),
        "client: open+verify challenge": lambda: m.open_challenge(attachment, own_x, reg_edk),
        "client: seal+sign CONFIRM": lambda: m.make_request(
            m.Kind.CONFIRM, zone, m.token_fields(bytes(16), bytes(16)), registry_key=reg_xk,
            time=1, signer=own_ed),
        "registry: open+verify CONFIRM": lambda: m.open_request(reg_x, confirm).verify(own_edk),
        "baseline: one Ed25519 verify": lambda: m.verify_signature(own_edk, m.CONTEXT_REQUEST,
                                                                   body, signature),
    }
    result = {}
    for name, step in steps.items():
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        result[name] = sorted(times)[len(times) // 2] * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(max(1, min(args.rounds, 100_000)))
    base = result["baseline: one Ed25519 verify"]
    whole = sum(v for k, v in result.items() if not k.startswith("baseline"))
    registry = sum(v for k, v in result.items() if k.startswith("registry"))
    if args.json:
        print(json.dumps({"us": result, "whole_us": whole, "registry_us": registry,
                          "whole_over_verify": whole / base}, indent=1))
        return
    for name, us in result.items():
        print(f"{name:34s} {us:8.1f} us  ({us / base:4.1f} x verify)")
    print(f"{'one registration, both sides':34s} {whole:8.1f} us  ({whole / base:4.1f} x verify)")
    print(f"{'of which the registry':34s} {registry:8.1f} us  ({registry / base:4.1f} x verify)")


if __name__ == "__main__":
    main()
