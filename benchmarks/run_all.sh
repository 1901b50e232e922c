#!/usr/bin/env bash
# Rerun every benchmark; about 8 minutes on the 2-core machine, bounded by
# `timeout` at 10 minutes in all. Writes JSON reports, profiles and plots to
# $OUT (default benchmarks/results). Run from the project's virtualenv:
#
#   . .venv/bin/activate && bash benchmarks/run_all.sh
#
# Knobs (environment): KEYS (1000000), SIZES (1000,10000,100000: the extra
# points of the qps-vs-size plot), DURATION (7 s per load run), OUT, WORK
# (zones and stores; default a temp dir removed at the end), PYTHON,
# RESOLVER_DURATION (5 s per resolver load run), WORKERS (1,2: the
# `serve --workers N` runs), XFR_KEYS (KEYS: the zone transfer scenarios) and
# XFR_CHANGES (2 one-key changes timed), SEAL_MIB (256) and SEAL_RECIPIENTS
# (1000): the sealed-message benchmark, about 12 s.
# Optional tools: dnsperf (apt-get install dnsperf; else loadgen.py makes the
# load), py-spy (pip install py-spy; else no profiles), matplotlib (pip
# install matplotlib; else no plots).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
KEYS=${KEYS:-1000000}
SIZES=${SIZES:-1000,10000,100000}
DURATION=${DURATION:-7}
RESOLVER_DURATION=${RESOLVER_DURATION:-5}
WORKERS=${WORKERS:-1,2}
XFR_KEYS=${XFR_KEYS:-$KEYS}
XFR_CHANGES=${XFR_CHANGES:-2}
SEAL_MIB=${SEAL_MIB:-256}
SEAL_RECIPIENTS=${SEAL_RECIPIENTS:-1000}
OUT=${OUT:-benchmarks/results}
if [[ -z "${WORK:-}" ]]; then
    WORK=$(mktemp -d /tmp/keyresolve-bench.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$OUT"

profile_auth=()
profile_compile=()
profile_resolver=()
if command -v py-spy >/dev/null; then
    profile_auth=(--profile "$OUT/profile-serve")
    profile_compile=(--profile "$OUT/profile-compile")
    profile_resolver=(--profile "$OUT/profile-resolver")
else
    echo "py-spy not installed: no profiles (pip install py-spy)" >&2
fi
command -v dnsperf >/dev/null || echo "dnsperf not installed: loadgen.py makes the load" >&2

start=$(date +%s)
# seconds left of the 10 minutes, keeping $1 for the steps after this one
left() { echo $(( 600 - ($(date +%s) - start) - $1 )); }
echo "== compile ($KEYS keys)" >&2
timeout 240 "$PYTHON" benchmarks/bench_compile.py --keys "$KEYS" --workdir "$WORK" \
    --ordered "${profile_compile[@]}" --json "$OUT/compile.json" > /dev/null
echo "== authoritative server ($SIZES,$KEYS keys, ${DURATION}s runs)" >&2
timeout "$(left 250)" "$PYTHON" benchmarks/bench_auth.py --keys "$KEYS" \
    --sizes "$SIZES" --duration "$DURATION" --workers "$WORKERS" --workdir "$WORK" \
    "${profile_auth[@]}" --plots "$OUT" --json "$OUT/auth.json" > /dev/null
echo "== authoritative server, every name of the zone queried ($KEYS keys)" >&2
# the strict reading of scenario 1: names spread over the whole zone, where
# the response cache rarely hits (auth.json replays a 100,000-name sample)
# (its latency, restart and RSS are auth.json's: only the throughput here)
timeout "$(left 120)" "$PYTHON" benchmarks/bench_auth.py --keys "$KEYS" --query-sample "$KEYS" \
    --duration "$DURATION" --throughput-only --workdir "$WORK" \
    --json "$OUT/auth-uniform.json" > /dev/null
echo "== resolver (${RESOLVER_DURATION}s runs)" >&2
timeout "$(left 60)" "$PYTHON" benchmarks/bench_resolver.py --duration "$RESOLVER_DURATION" \
    --workdir "$WORK" "${profile_resolver[@]}" --json "$OUT/resolver.json" > /dev/null
echo "== zone transfer ($XFR_KEYS keys, $XFR_CHANGES changes)" >&2
timeout "$(left 20)" "$PYTHON" benchmarks/bench_xfr.py --keys "$XFR_KEYS" --changes "$XFR_CHANGES" \
    --workdir "$WORK" --json "$OUT/xfr.json" > /dev/null
echo "== sealed messages ($SEAL_MIB MiB, $SEAL_RECIPIENTS recipients)" >&2
timeout "$(left 0)" "$PYTHON" benchmarks/bench_seal.py --size-mib "$SEAL_MIB" \
    --recipients "$SEAL_RECIPIENTS" --json "$OUT/seal.json" > /dev/null
echo "done in $(( $(date +%s) - start )) s: $OUT/{compile,auth,auth-uniform,resolver,xfr,seal}.json" >&2
