#!/usr/bin/env bash
# benches/peak_rss.sh: cutover's peak resident memory (VmHWM) under a
# bounded h2c run, the part of load.sh's peak that h2c's concurrency
# drives (issue #14 item 2): 100 concurrent h2 streams can hold up to 100
# upstream HTTP/1.1 connections. Memory figures do not depend on what else
# the machine runs; nothing here is timed.
#
# Usage (needs nginx, h2load and curl; valgrind for MASSIF=1):
#   CUTOVER_BIN=path/to/cutover bash benches/peak_rss.sh   # N=30000 h2c requests, -c10 -m10
#   MASSIF=1 N=10000 ...    # also the peak heap under valgrind massif (KEEP=1 keeps massif.out)
#   ROUNDS=3 ...            # repeat, one line each (RSS varies by a few hundred KiB)
#
# What it does: nginx (stable/canary `return 200`, split_fixture.sh) and
# cutover --workers 1 on 127.0.0.1; VmRSS idle; h2load -n N -c 10 -m 10 with
# h2c prior knowledge, as in load.sh's h2c round but bounded by count; then
# VmHWM, VmRSS and the count of open upstream connections.

set -euo pipefail

N=${N:-30000}
ROUNDS=${ROUNDS:-1}
MASSIF=${MASSIF:-0}
KEEP=${KEEP:-0}
BASE_PORT=${BASE_PORT:-27580}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/split_fixture.sh
. "$ROOT/benches/split_fixture.sh"
bench_work peak-rss INT

need nginx h2load curl ss
cutover_bin
start_upstreams

kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

for ((round = 1; round <= ROUNDS; round++)); do
    if [[ $MASSIF == 1 ]]; then
        valgrind --tool=massif --massif-out-file="$WORK/massif.out.$round" \
            "$BIN" run -c "$WORK/cutover.yaml" --workers 1 --no-admin >"$WORK/cutover.$round.log" 2>&1 &
    else
        "$BIN" run -c "$WORK/cutover.yaml" --workers 1 --no-admin >"$WORK/cutover.$round.log" 2>&1 &
    fi
    CUTOVER_PID=$!
    up "$PROXY_PORT"
    idle=$(kib "$CUTOVER_PID" VmRSS)
    h2load -m 10 -n "$N" -c 10 "http://127.0.0.1:$PROXY_PORT/" >"$WORK/h2load.$round.log" 2>&1 ||
        die "h2load failed (see $WORK/h2load.$round.log)"
    grep -q "succeeded, 0 failed, 0 errored" "$WORK/h2load.$round.log" ||
        log "warning: some requests failed: $(grep '^requests:' "$WORK/h2load.$round.log")"
    upstream=$(ss -tn state established "( dport = :$STABLE_PORT or dport = :$CANARY_PORT )" | tail -n +2 | wc -l)
    if [[ $MASSIF == 1 ]]; then
        # RSS here would be valgrind's own.
        printf 'round %d: upstream connections open %d\n' "$round" "$upstream"
    else
        printf 'round %d: idle %d KiB, peak (VmHWM) %d KiB, after %d KiB, upstream connections open %d\n' \
            "$round" "$idle" "$(kib "$CUTOVER_PID" VmHWM)" "$(kib "$CUTOVER_PID" VmRSS)" "$upstream"
    fi
    kill -INT "$CUTOVER_PID"
    wait "$CUTOVER_PID" || true
    CUTOVER_PID=""
    if [[ $MASSIF == 1 ]]; then
        awk -F= '/^mem_heap_B/ {h = $2} /^mem_heap_extra_B/ {if (h + $2 > m) {m = h + $2; p = h}}
            END {printf "  massif peak: %d B heap (%d B with allocator overhead)\n", p, m}' "$WORK/massif.out.$round"
    fi
done
