#!/usr/bin/env bash
# benches/callgrind.sh: user-space instructions per proxied request, counted
# by valgrind's callgrind. Instruction counts do not depend on what else the
# machine runs, so this can be measured on a busy machine and compared
# between builds.
#
# Usage (needs valgrind, nginx and h2load: apt-get install valgrind nginx
# nghttp2-client):
#   bash benches/callgrind.sh                 # builds the release binary, N1=2000, N2=12000
#   CUTOVER_BIN=path/to/cutover N1=200 N2=400 bash benches/callgrind.sh   # smoke
#   KEEP=1 ...                                # keep the work dir (callgrind.out.* for callgrind_annotate)
#   PROTO=h2c ...                             # h2c with prior knowledge (h2load -c10 -m10) instead of HTTP/1.1
#   HAPROXY=1 ...                             # HAProxy doing the same job too, counted the same way (needs haproxy)
#   CACHE=1 ...                               # also simulated cache misses and branch mispredictions per request
#
# What it does: one nginx upstream (stable 90 / canary 10 server blocks,
# `return 200`), cutover with the weighted rule of benches/load.sh and one
# worker, run twice under callgrind: once for N1 and once for N2 HTTP/1.1
# keep-alive requests from h2load --h1 (10 connections, bounded by count);
# with PROTO=h2c, h2c requests (prior knowledge, 10 connections of 10
# concurrent streams each, as in benches/load.sh).
# Instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1): start-up, config
# compile and shutdown cancel out. Everything stays on 127.0.0.1.
# HAPROXY=1: HAProxy with benches/load.sh's configuration (one thread, the
# same 90/10 split, X-Forwarded-* and a request id) is counted the same way,
# and the ratio printed: unlike CPU time, the ratio does not move with what
# else the machine runs. It is instructions, not time: two programs can
# differ in instructions per cycle: CACHE=1 adds callgrind's cache and
# branch simulation (first-level data and instruction cache misses and
# mispredicted branches per request), which is where they differ.

set -euo pipefail

N1=${N1:-2000}
N2=${N2:-12000}
BASE_PORT=${BASE_PORT:-27280}
KEEP=${KEEP:-0}
PROTO=${PROTO:-h1}
case $PROTO in
    h1) H2LOAD_MODE=(--h1) ;;
    h2c) H2LOAD_MODE=(-m 10) ;;
    *) echo "PROTO must be h1 or h2c, not '$PROTO'" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/split_fixture.sh
. "$ROOT/benches/split_fixture.sh"
# shellcheck source=benches/haproxy_fixture.sh
. "$ROOT/benches/haproxy_fixture.sh"
bench_work callgrind

HAPROXY=${HAPROXY:-0}
CACHE=${CACHE:-0}
SIM=()
((CACHE == 0)) || SIM=(--cache-sim=yes --branch-sim=yes)
need valgrind nginx h2load curl
((HAPROXY == 0)) || need haproxy
cutover_bin
start_upstreams
if [[ $PROTO == h2c ]]; then
    haproxy_fixture "$WORK/haproxy.cfg" "$STABLE_PORT" "$CANARY_PORT" "" "$PROXY_PORT"
else
    haproxy_fixture "$WORK/haproxy.cfg" "$STABLE_PORT" "$CANARY_PORT" "$PROXY_PORT"
fi

# A readiness probe in the protocol measured: an h2-only HAProxy bind
# refuses HTTP/1.1.
ready() {
    local i flag=()
    [[ $PROTO == h2c ]] && flag=(--http2-prior-knowledge)
    for ((i = 0; i < 600; i++)); do
        curl -s -o /dev/null --max-time 1 "${flag[@]}" "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    die "nothing answers on 127.0.0.1:$1 (logs in $WORK)"
}

instructions() { # requests [proxy] -> Ir of a whole proxy run serving them
    local n=$1 proxy=${2:-cutover} pid cmd
    local out=$WORK/callgrind.out.$n
    [[ $proxy == cutover ]] || out=$WORK/callgrind.out.$proxy.$n
    case $proxy in
    cutover) cmd=("$BIN" run -c "$WORK/cutover.yaml" --workers 1 --no-admin) ;;
    haproxy) cmd=(haproxy -db -f "$WORK/haproxy.cfg") ;;
    esac
    valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$out" "${cmd[@]}" >"$WORK/$proxy.$n.log" 2>&1 &
    pid=$!
    ready "$PROXY_PORT"
    timeout 600 h2load "${H2LOAD_MODE[@]}" -n "$n" -c 10 "http://127.0.0.1:$PROXY_PORT/" >"$WORK/h2load.$proxy.$n.log" 2>&1 ||
        die "h2load failed (see $WORK/h2load.$proxy.$n.log)"
    grep -q "succeeded, 0 failed, 0 errored" "$WORK/h2load.$proxy.$n.log" ||
        log "warning: some requests failed: $(grep '^requests:' "$WORK/h2load.$proxy.$n.log")"
    if [[ $proxy == cutover ]]; then kill -INT "$pid"; else kill -TERM "$pid"; fi
    wait "$pid" || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

# misses NAME OUT1 OUT2: the simulated misses per request between two runs.
misses() {
    awk -v name="$1" -v n=$((N2 - N1)) '
        FNR == 1 { f++ }
        /^events:/ && f == 1 { for (i = 2; i <= NF; i++) ev[i] = $i }
        /^(summary|totals):/ && !seen[f]++ { for (i = 2; i <= NF; i++) v[f, ev[i]] = $i }
        END {
            d = v[2, "D1mr"] + v[2, "D1mw"] - v[1, "D1mr"] - v[1, "D1mw"]
            printf "%s: per request, D1 misses %.0f, I1 misses %.0f, mispredicted branches %.0f\n", name, d / n,
                (v[2, "I1mr"] - v[1, "I1mr"]) / n,
                (v[2, "Bcm"] + v[2, "Bim"] - v[1, "Bcm"] - v[1, "Bim"]) / n }' "$2" "$3"
}

log "cutover $BIN under callgrind: $N1 $PROTO requests"
I1=$(instructions "$N1")
log "cutover $BIN under callgrind: $N2 $PROTO requests"
I2=$(instructions "$N2")
# The readiness probe (one curl request per run) cancels out too.
awk -v proto="$PROTO" -v a="$I1" -v b="$I2" -v n1="$N1" -v n2="$N2" 'BEGIN {
    printf "instructions (user space): %s for %d requests, %s for %d\n", a, n1, b, n2
    printf "instructions per proxied %s request: %.0f\n", proto, (b - a) / (n2 - n1) }'
((CACHE == 0)) || misses cutover "$WORK/callgrind.out.$N1" "$WORK/callgrind.out.$N2"
if ((HAPROXY == 1)); then
    log "HAProxy under callgrind: $N1 $PROTO requests"
    H1=$(instructions "$N1" haproxy)
    log "HAProxy under callgrind: $N2 $PROTO requests"
    H2=$(instructions "$N2" haproxy)
    awk -v proto="$PROTO" -v a="$I1" -v b="$I2" -v c="$H1" -v d="$H2" -v n1="$N1" -v n2="$N2" 'BEGIN {
        ours = (b - a) / (n2 - n1); theirs = (d - c) / (n2 - n1)
        printf "HAProxy: instructions per proxied %s request: %.0f\n", proto, theirs
        printf "cutover / HAProxy: %.2f\n", ours / theirs }'
    ((CACHE == 0)) || misses HAProxy "$WORK/callgrind.out.haproxy.$N1" "$WORK/callgrind.out.haproxy.$N2"
fi
