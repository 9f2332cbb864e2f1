#!/usr/bin/env bash
# benches/pair.sh: CPU per request of two cutover builds, A and B, side by
# side. Both run at once, pinned to the same core (cpu0) with one worker,
# and are loaded in turn, PAIRS times, so that whatever else slows the
# machine hits both alike; load.sh's ratios move 15-20% between runs here and
# cannot show a change under ~10%, a set of pairs can.
#
# Usage (needs nginx, h2load, oha, jq; 2+ cores):
#   bash benches/pair.sh OLD_BINARY NEW_BINARY                 # h2c, 12 pairs of 3 s
#   MODE=h1 bash benches/pair.sh A B                           # HTTP/1.1 at RATE req/s
#   MODE=h1max bash benches/pair.sh A B                        # HTTP/1.1 as fast as it goes
#   PAIRS=20 SECS=2 ...                                        # more, shorter pairs
# Output: per pair, each build's CPU (user + system) per request; then the
# totals, B / A, and in how many pairs B used less. Load: h2load -c10 -m10
# (h2c), oha -c50 (HTTP/1.1), on cpu1; the upstream is the nginx fixture of
# benches/split_fixture.sh; everything stays on 127.0.0.1.

set -euo pipefail

BASE_PORT=${BASE_PORT:-27580}
PAIRS=${PAIRS:-12}
SECS=${SECS:-3}
MODE=${MODE:-h2c}
RATE=${RATE:-10000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/split_fixture.sh
. "$ROOT/benches/split_fixture.sh"

(($# == 2)) || { sed -n '2,17p' "$0" >&2; exit 2; }
case $MODE in h2c | h1 | h1max) ;; *) die "MODE must be h2c, h1 or h1max, not '$MODE'" ;; esac
for bin in "$@"; do [[ -x $bin ]] || die "no cutover binary at $bin"; done
need nginx h2load oha jq taskset
bench_work pair
start_upstreams
A_PORT=$PROXY_PORT
B_PORT=$((PROXY_PORT + 1))
sed "s/127.0.0.1:$A_PORT/127.0.0.1:$B_PORT/" "$WORK/cutover.yaml" >"$WORK/b.yaml"
grep -q "$B_PORT" "$WORK/b.yaml" || die "the fixture's listener is not on $A_PORT"

A_PID="" B_PID=""
stop_both() {
    local rc=$?
    kill -TERM $A_PID $B_PID 2>/dev/null || true
    (exit "$rc")
    clean_up
}
trap stop_both EXIT
taskset -c 0 "$1" run -c "$WORK/cutover.yaml" --workers 1 --no-admin >"$WORK/a.log" 2>&1 &
A_PID=$!
taskset -c 0 "$2" run -c "$WORK/b.yaml" --workers 1 --no-admin >"$WORK/b.log" 2>&1 &
B_PID=$!
up "$A_PORT" 100
up "$B_PORT" 100

# oha's rate limit: RATE for h1, none for h1max.
PACE=()
[[ $MODE != h1 ]] || PACE=(-q "$RATE")
# load PORT SECONDS: runs the load, prints the number of requests answered.
load() {
    local url="http://127.0.0.1:$1/"
    if [[ $MODE == h2c ]]; then
        taskset -c 1 h2load -c10 -m10 -D"$2" "$url" 2>&1 | awk '/^requests:/ {print $8}'
    else
        taskset -c 1 oha --no-tui --output-format json "${PACE[@]}" -c 50 -z "${2}s" "$url" 2>/dev/null |
            jq '.statusCodeDistribution["200"] // 0'
    fi
}
# cpu_ticks PID: user + system time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

log "A $1 on :$A_PORT, B $2 on :$B_PORT; $MODE, $PAIRS pairs of $SECS s"
load "$A_PORT" 1 >/dev/null
load "$B_PORT" 1 >/dev/null
printf '%-5s %12s %12s\n' pair "A us/req" "B us/req"
for ((i = 1; i <= PAIRS; i++)); do
    row=()
    for side in A B; do
        if [[ $side == A ]]; then pid=$A_PID port=$A_PORT; else pid=$B_PID port=$B_PORT; fi
        before=$(cpu_ticks "$pid")
        n=$(load "$port" "$SECS")
        after=$(cpu_ticks "$pid")
        ((n > 0)) || die "build $side answered no request (logs in $WORK)"
        row+=("$n" "$((after - before))")
    done
    echo "${row[*]}" >>"$WORK/pairs"
    awk -v t="$TICK_US" -v i="$i" '{printf "%-5d %12.2f %12.2f\n", i, $2 * t / $1, $4 * t / $3}' <<<"${row[*]}"
done
awk -v t="$TICK_US" '
    { na += $1; ca += $2; nb += $3; cb += $4; if ($4 / $3 < $2 / $1) lower++ }
    END {
        a = ca * t / na; b = cb * t / nb
        printf "total: A %.2f us/req (%d requests), B %.2f us/req (%d requests)\n", a, na, b, nb
        printf "B / A: %.3f; B used less CPU per request in %d of %d pairs\n", b / a, lower, NR
    }' "$WORK/pairs"
