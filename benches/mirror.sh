#!/usr/bin/env bash
# benches/mirror.sh: does a 100% request mirror slow the primary? (issue #13:
# "with the mirror 10x slower, down, or blackholed, the primary's p99 stays
# within 5% and no primary request fails").
#
# Four cutover proxies run side by side, one worker each, the same route to
# the same primary; they differ only in the mirror of that route:
#   absent     no mirror configured (the reference)
#   slow       a mirror origin 10x slower than the primary
#   down       a mirror address nothing listens on (connection refused)
#   blackhole  a mirror that accepts connections and never reads or answers
# The primary is a fixed-delay origin: a separate cutover process whose rule
# delays every request PRIMARY_DELAY (fault.delay) before nginx answers; the
# slow mirror is the same origin on a second listener delaying 10x as long.
# Each proxy is loaded in turn at a fixed rate (oha -q, latency corrected for
# coordinated omission), in interleaved rounds so that noise from other work
# hits every case alike; per case the median over rounds of the primary's
# p50 and p99, the errors (non-200 and transport errors), and the ratio of
# the p99 to the no-mirror p99 in the same round (target <= 1.05, 0 errors).
#
# Usage (as root: it may apt-get install nginx, jq, curl and cargo install oha):
#   bash benches/mirror.sh                              # 5 rounds x 4 cases x 10 s
#   ROUNDS=1 SECS=2 RATE=200 bash benches/mirror.sh     # smoke run (no figures to keep)
#   CUTOVER_BIN=target/release/cutover bash benches/mirror.sh
#
# Environment (defaults in brackets):
#   ROUNDS [5]             interleaved rounds; medians over them
#   SECS [10]              seconds of each fixed-rate run
#   RATE [2000]            requests/s offered (oha -q)
#   CONNS [32]             client connections
#   PRIMARY_DELAY [2ms]    the primary origin's delay; the slow mirror's is 10x
#   BASE_PORT [27380]      +1 nginx, +2 primary origin, +3 slow mirror origin,
#                          +4 blackhole, +5 down (never bound), +11..+14 the
#                          four proxies, +21 origin admin (all on 127.0.0.1)
#   PROXY_CPU [0]          core the proxies under test are pinned to (taskset)
#   GEN_CPU [1]            core of the load generator, origins and mirrors
#   CUTOVER_BIN            use this binary instead of building one
#   LOAD [oha]             `wrk` runs closed-loop wrk instead of oha: for a smoke
#                          run where oha is not installed; its latencies are not
#                          fixed-rate figures and must not be quoted
#   KEEP [0]               1 keeps the work dir (configs, logs, raw output)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-10}
RATE=${RATE:-2000}
CONNS=${CONNS:-32}
PRIMARY_DELAY=${PRIMARY_DELAY:-2ms}
BASE_PORT=${BASE_PORT:-27380}
PROXY_CPU=${PROXY_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
LOAD=${LOAD:-oha}
KEEP=${KEEP:-0}

NGINX_PORT=$((BASE_PORT + 1))
ORIGIN_PORT=$((BASE_PORT + 2))
SLOW_PORT=$((BASE_PORT + 3))
BLACKHOLE_PORT=$((BASE_PORT + 4))
DOWN_PORT=$((BASE_PORT + 5))
ORIGIN_ADMIN=$((BASE_PORT + 21))
CASES=(absent slow down blackhole)
declare -A PORT_OF=([absent]=$((BASE_PORT + 11)) [slow]=$((BASE_PORT + 12))
    [down]=$((BASE_PORT + 13)) [blackhole]=$((BASE_PORT + 14)))
declare -A MIRROR_OF=([slow]=$SLOW_PORT [down]=$DOWN_PORT [blackhole]=$BLACKHOLE_PORT)

. benches/common.sh
[[ $KEEP == 1 ]] && trap 'cleanup_keep' EXIT
cleanup_keep() { local d=$DIR; DIR=/nonexistent; cleanup; echo "work dir kept: $d" >&2; }
log() { printf '[mirror.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
# pinned CPU: the taskset prefix for a process started in the background
# (not through `pin`, a function: `$!` would be the subshell running it, and
# cleanup would stop that shell and leave the process running).
pinned() { PINNED=(); if command -v taskset >/dev/null; then PINNED=(taskset -c "$1"); fi; }

need_tools nginx jq curl
if [[ $LOAD == oha ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v oha >/dev/null; then
        log "cargo install oha --locked (one-time, several minutes)"
        (cd /tmp && env -u CARGO_TARGET_DIR timeout 1800 cargo install oha --locked)
    fi
    command -v oha >/dev/null || die "oha not found (or run with LOAD=wrk for a smoke run)"
else
    need_tools wrk
    log "LOAD=wrk: closed-loop load, latencies are NOT fixed-rate figures (smoke run only)"
fi
if [[ -n ${CUTOVER_BIN:-} ]]; then
    BIN=$CUTOVER_BIN
else
    log "cargo build --release --bin cutover"
    cargo build --release --bin cutover --quiet
    BIN=${CARGO_TARGET_DIR:-target}/release/cutover
fi
[[ -x $BIN ]] || die "no cutover binary at $BIN"

# ------------------------------------------------------------ processes ---

nginx_upstream "$NGINX_PORT"

# The fixed-delay origin: one cutover process, two listeners, each with its
# own delayed rule in front of nginx (max_active high enough that every
# request is delayed).
origin_config() {
    local slow_ms
    slow_ms=$(awk -v d="${PRIMARY_DELAY%ms}" 'BEGIN {print d * 10}')
    cat >"$DIR/origin.yaml" <<EOF
listeners:
  - { name: primary, address: "127.0.0.1:$ORIGIN_PORT", routes: [primary] }
  - { name: slow, address: "127.0.0.1:$SLOW_PORT", routes: [slow] }
groups:
  nginx: { endpoints: ["127.0.0.1:$NGINX_PORT"] }
routes:
  - name: primary
    rules:
      - name: delayed
        backends: [{ group: nginx }]
        fault: { delay: { duration: $PRIMARY_DELAY, fraction: 1.0 }, max_active: 1000000 }
  - name: slow
    rules:
      - name: delayed
        backends: [{ group: nginx }]
        fault: { delay: { duration: ${slow_ms}ms, fraction: 1.0 }, max_active: 1000000 }
EOF
}

# A mirror that accepts every connection and never reads from it.
blackhole() {
    python3 - "$BLACKHOLE_PORT" <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4096)
held = []
while True:
    conn, _ = s.accept()
    held.append(conn)
PY
    PIDS+=($!)
}

proxy_config() { # case
    local c=$1 mirror="" shadow=""
    if [[ $c != absent ]]; then
        mirror="        mirror: [{ group: shadow, percent: 100 }]"
        shadow="  shadow: { endpoints: [\"127.0.0.1:${MIRROR_OF[$c]}\"] }"
    fi
    cat >"$DIR/$c.yaml" <<EOF
listeners: [{ name: public, address: "127.0.0.1:${PORT_OF[$c]}" }]
groups:
  primary: { endpoints: ["127.0.0.1:$ORIGIN_PORT"] }
$shadow
routes:
  - name: web
    rules:
      - name: all
        backends: [{ group: primary }]
$mirror
EOF
    "$BIN" check "$DIR/$c.yaml" >/dev/null
}

wait_ok() { # port
    for _ in $(seq 100); do
        curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    die "nothing answers 200 on 127.0.0.1:$1 (logs in $DIR)"
}

origin_config
pinned "$GEN_CPU"
"${PINNED[@]}" "$BIN" run -c "$DIR/origin.yaml" --workers 1 --admin "127.0.0.1:$ORIGIN_ADMIN" \
    >"$DIR/origin.log" 2>&1 &
PIDS+=($!)
blackhole
declare -A PID
for c in "${CASES[@]}"; do
    proxy_config "$c"
    pinned "$PROXY_CPU"
    RUST_LOG=warn "${PINNED[@]}" "$BIN" run -c "$DIR/$c.yaml" --workers 1 \
        --admin "127.0.0.1:$((PORT_OF[$c] + 100))" >"$DIR/$c.log" 2>&1 &
    PIDS+=($!)
    PID[$c]=$!
done
wait_ok "$ORIGIN_PORT"
wait_ok "$SLOW_PORT"
for c in "${CASES[@]}"; do wait_ok "${PORT_OF[$c]}"; done

# ------------------------------------------------------------------ load ---

# run CASE OUT: one fixed-rate run; prints "p50_us p99_us errors requests".
run() {
    local c=$1 out=$2 url="http://127.0.0.1:${PORT_OF[$1]}/"
    if [[ $LOAD == oha ]]; then
        local fmt=(--output-format json)
        oha --help 2>&1 | grep -q -- '--output-format' || fmt=(--json)
        pin "$GEN_CPU" timeout $((SECS + 30)) oha --no-tui "${fmt[@]}" --latency-correction \
            -q "$RATE" -c "$CONNS" -z "${SECS}s" "$url" >"$out" 2>"$out.err" || true
        jq -r '
          ([.statusCodeDistribution | to_entries[] | select(.key == "200") | .value] | add // 0) as $ok
          | (([.statusCodeDistribution[]] | add // 0)
             + ([.errorDistribution // {} | to_entries[]
                 | select(.key != "aborted due to deadline") | .value] | add // 0)) as $all
          | "\(.latencyPercentiles.p50 * 1e6 | floor) \(.latencyPercentiles.p99 * 1e6 | floor) \($all - $ok) \($all)"' \
            "$out" 2>/dev/null || echo "0 0 -1 0"
    else
        pin "$GEN_CPU" timeout $((SECS + 30)) wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$url" \
            >"$out" 2>&1 || true
        awk 'function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
             $1 == "50%" {p50 = us($2)} $1 == "99%" {p99 = us($2)}
             /requests in/ {n = $1} /Socket errors:/ {gsub(",", ""); e += $4 + $6 + $8 + $10}
             /Non-2xx or 3xx responses:/ {e += $5}
             END {printf "%d %d %d %d\n", p50, p99, e, n}' "$out"
    fi
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A P50 P99 ERR RATIO
log "warm-up"
for c in "${CASES[@]}"; do SECS=1 run "$c" "$DIR/warm-$c" >/dev/null; done
printf '%-6s %-10s %10s %10s %8s %9s %8s\n' round case p50_us p99_us errors requests p99/ref
for round in $(seq "$ROUNDS"); do
    ref=0
    for c in "${CASES[@]}"; do
        read -r p50 p99 err n < <(run "$c" "$DIR/r$round-$c")
        [[ $c == absent ]] && ref=$p99
        ratio=$(awk -v a="$p99" -v r="$ref" 'BEGIN {printf "%.3f", (r > 0 ? a / r : 0)}')
        P50[$c]+="$p50 "; P99[$c]+="$p99 "; ERR[$c]+="$err "; RATIO[$c]+="$ratio "
        printf '%-6s %-10s %10s %10s %8s %9s %8s\n' "$round" "$c" "$p50" "$p99" "$err" "$n" "$ratio"
        sleep 1
    done
done

echo
echo "medians over $ROUNDS rounds ($LOAD, $RATE req/s offered, $CONNS connections, ${SECS}s, primary delay $PRIMARY_DELAY):"
printf '%-10s %10s %10s %10s %12s  %s\n' case p50_us p99_us errors p99/absent verdict
for c in "${CASES[@]}"; do
    p50=$(echo "${P50[$c]}" | median)
    p99=$(echo "${P99[$c]}" | median)
    errs=$(echo "${ERR[$c]}" | tr ' ' '\n' | awk '{s += $1} END {print s + 0}')
    ratio=$(echo "${RATIO[$c]}" | median)
    verdict=$(awk -v r="$ratio" -v e="$errs" 'BEGIN {print ((r <= 1.05 && e == 0) ? "ok (<= 1.05, 0 errors)" : "MISSED (target p99 <= 1.05x, 0 errors)")}')
    printf '%-10s %10s %10s %10s %12s  %s\n' "$c" "$p50" "$p99" "$errs" "$ratio" "$verdict"
done
echo
echo "mirror outcomes (cutover_mirror_requests_total):"
for c in slow down blackhole; do
    printf '  %-10s ' "$c"
    curl -s "http://127.0.0.1:$((PORT_OF[$c] + 100))/metrics" |
        awk '/^cutover_mirror_requests_total/ {match($0, /outcome="[a-z_]+"/); o = substr($0, RSTART + 9, RLENGTH - 10); printf "%s=%s ", o, $NF} END {print ""}'
done
[[ $LOAD == oha ]] || echo "(LOAD=wrk: closed loop; not fixed-rate figures)"
