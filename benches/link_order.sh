#!/usr/bin/env bash
# benches/link_order.sh: writes src/link.order, the functions a running proxy
# executes, hottest first; src/build.rs hands the file to the linker, which
# puts them together at the front of the release binary's code. Start-up and
# the request path touch a few thousand functions spread over ~18 MB; the
# kernel maps a 64 KiB window (on ext4 a whole large folio) around each, so
# without the ordering an idle proxy holds ~11 MiB of its binary resident.
#
# Usage (needs valgrind, nginx, h2load, curl and openssl):
#   bash benches/link_order.sh              # builds the release binary, rewrites src/link.order
#   CHECK=1 bash benches/link_order.sh      # how many listed names the binary has; its idle RSS
#   CUTOVER_BIN=path/to/cutover ...         # use that binary (symbols must match this source)
#
# Run it again after a dependency or toolchain upgrade (symbol names carry a
# hash of the crate's version and the compiler) or a large refactor; CHECK=1
# says when: a stale list costs memory, never correctness (the linker skips
# names it does not find).
#
# What the run covers: start-up with the split fixture of benches/load.sh and
# the admin listener, HTTP/1.1 on 50 connections and h2c on 10 connections of
# 10 streams (h2load, counted and timed), a /metrics
# scrape, /v1/stats, a second of /v1/events, a graceful stop; then the same
# loads over an HTTPS listener (their extra functions listed after). Code
# other configurations use (the Kubernetes controller, rollouts, upstream
# TLS) stays where it is and is mapped when used.

set -euo pipefail

BASE_PORT=${BASE_PORT:-27680}
KEEP=${KEEP:-0}
CHECK=${CHECK:-0}
ADMIN_PORT=$((BASE_PORT + 12))
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORDER=$ROOT/src/link.order
# shellcheck source=benches/split_fixture.sh
. "$ROOT/benches/split_fixture.sh"
bench_work link-order INT

need nginx h2load curl nm
cutover_bin
BIN=$(realpath "$BIN")
start_upstreams

listed() { grep -v '^#' "$1" | grep -c . || true; }

# The listed names the binary has, and what its code mapping holds when idle.
check() {
    local have total text
    nm "$BIN" | awk '{print $NF}' | sort -u >"$WORK/symbols"
    total=$(listed "$ORDER")
    have=$(grep -v '^#' "$ORDER" | sort -u | comm -12 - "$WORK/symbols" | wc -l)
    "$BIN" run -c "$WORK/cutover.yaml" --workers 1 --admin "127.0.0.1:$ADMIN_PORT" >"$WORK/check.log" 2>&1 &
    CUTOVER_PID=$!
    up "$PROXY_PORT"
    text=$(awk -v bin="$BIN" '/^[0-9a-f]+-/ {code = ($2 ~ /x/ && $6 == bin)} code && /^Rss:/ {kib += $2} END {print kib + 0}' \
        "/proc/$CUTOVER_PID/smaps")
    printf '%s: %d of the %d names in src/link.order are in the binary (%d%%)\n' \
        "$BIN" "$have" "$total" $((total ? 100 * have / total : 0))
    printf 'idle: VmRSS %s KiB, of which the binary'"'"'s code %s KiB\n' \
        "$(awk '$1 == "VmRSS:" {print $2}' "/proc/$CUTOVER_PID/status")" "$text"
    kill -INT "$CUTOVER_PID"
    wait "$CUTOVER_PID" || true
    CUTOVER_PID=""
    ((total == 0 || 100 * have / total >= 90)) ||
        log "warning: src/link.order is stale; run bash benches/link_order.sh"
}

if [[ $CHECK == 1 ]]; then
    check
    exit 0
fi

need valgrind openssl

# under_callgrind NAME CONFIG: starts the binary under callgrind with CONFIG
# and the admin listener (CUTOVER_PID); its profile goes to $WORK/NAME.out.
under_callgrind() {
    valgrind --tool=callgrind --demangle=no --compress-strings=no --dump-instr=no \
        --callgrind-out-file="$WORK/$1.out" \
        "$BIN" run -c "$2" --workers 1 --admin "127.0.0.1:$ADMIN_PORT" >"$WORK/$1.log" 2>&1 &
    CUTOVER_PID=$!
}

# stop_and_list NAME: stops the binary gracefully and writes $WORK/NAME.names,
# its functions by self cost (a call's inclusive cost is the line after
# calls=, skipped; recursion suffixes such as '2 dropped).
stop_and_list() {
    kill -INT "$CUTOVER_PID"
    wait "$CUTOVER_PID" || true
    CUTOVER_PID=""
    awk -v bin="$BIN" '
        /^ob=/ { ob = substr($0, 4); next }
        /^fn=/ { fn = substr($0, 4); sub(/'"'"'[0-9]+$/, "", fn); if (ob == bin) mine[fn] = 1; next }
        /^calls=/ { skip = 1; next }
        /^[0-9+*-]/ { if (skip) { skip = 0; next } cost[fn] += $2 }
        END { for (f in mine) if (f ~ /^[A-Za-z_][A-Za-z0-9_.$]*$/) printf "%d %s\n", cost[f], f }
    ' "$WORK/$1.out" | sort -k1,1nr -k2,2 | cut -d' ' -f2 >"$WORK/$1.names"
    [[ -s $WORK/$1.names ]] || die "callgrind listed no functions of $BIN"
}

# load SCHEME PORT: each load as benches/load.sh shapes it (50 HTTP/1.1
# connections; 10 h2 connections of 10 streams), long enough for what only
# sustained load runs (full socket buffers, h2 window updates, the
# once-a-second timers). Counted runs end politely (h2 GOAWAY); timed runs
# (-D) drop their connections mid-stream, as load.sh's wrk and h2load do:
# both close paths. The pauses let the proxy, slow under valgrind, see the
# clients go.
load() {
    local url=$1://127.0.0.1:$2/
    h2load --h1 -n 4000 -c 50 "$url" >"$WORK/h1.$1.log" 2>&1 || die "h2load --h1 $url failed"
    h2load --h1 -D 3 -c 50 "$url" >>"$WORK/h1.$1.log" 2>&1 || die "h2load --h1 -D $url failed"
    sleep 2
    h2load -m 10 -n 6000 -c 10 "$url" >"$WORK/h2.$1.log" 2>&1 || die "h2load $url failed"
    h2load -m 10 -D 3 -c 10 "$url" >>"$WORK/h2.$1.log" 2>&1 || die "h2load -D $url failed"
    sleep 2
}

log "cutover $BIN under callgrind: start-up, HTTP/1.1, h2c, admin"
under_callgrind plain "$WORK/cutover.yaml"
up "$PROXY_PORT"
load http "$PROXY_PORT"
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics" || die "no /metrics"
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/v1/stats" || die "no /v1/stats"
curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN_PORT/v1/events" || true
stop_and_list plain

# The same over an HTTPS listener (HTTP/1.1 and h2 by ALPN): what TLS adds
# is listed after everything plain traffic runs, so a proxy without TLS
# keeps its compact front.
log "cutover $BIN under callgrind: the same over TLS"
# shellcheck source=benches/certs.sh
. "$ROOT/benches/certs.sh"
make_certs
sed "s|^    address: \"127.0.0.1:$PROXY_PORT\"|&\n    tls: { certificates: [{ cert: \"$WORK/certs/tls.crt\", key: \"$WORK/certs/tls.key\" }] }|" \
    "$WORK/cutover.yaml" >"$WORK/tls.yaml"
grep -q 'tls:' "$WORK/tls.yaml" || die "could not add tls to $WORK/cutover.yaml"
under_callgrind tls "$WORK/tls.yaml"
for ((i = 0; i < 600; i++)); do
    curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$PROXY_PORT/" && break
    sleep 0.1
done
load https "$PROXY_PORT"
stop_and_list tls
cp "$WORK/plain.names" "$WORK/names"
awk 'NR == FNR {seen[$1] = 1; next} !($1 in seen)' "$WORK/plain.names" "$WORK/tls.names" >>"$WORK/names"

{
    echo "# Functions a running cutover executes, hottest first: the linker puts them"
    echo "# at the front of the release binary's code (src/build.rs). Written by"
    echo "# benches/link_order.sh from a callgrind run; regenerate, never edit."
    echo "# rustc: $(rustc --version)"
    cat "$WORK/names"
} >"$ORDER"
bytes=$(nm -S -t d "$BIN" | awk 'NR == FNR {want[$1] = 1; next} NF == 4 && ($4 in want) {b += $2} END {print b + 0}' "$WORK/names" -)
log "src/link.order: $(wc -l <"$WORK/names") functions, $((bytes / 1024)) KiB of code; rebuild (cargo build --release) to lay them out"
