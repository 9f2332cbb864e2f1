#!/usr/bin/env bash
# benches/load.sh: load comparison of cutover against nginx and HAProxy doing
# the same job (HTTP/1.1 keep-alive, and h2c on the client side), on loopback
# only (127.0.0.1), interleaved so that noise from other work on the machine
# hits every target alike.
#
# Usage (as root: it may apt-get install; needs 2+ cores):
#   bash benches/load.sh                          # full run: 3-6 rounds, ~3-8 min
#                                                 # (+ first time: oha build ~10-25 min, cutover release build)
#   ROUNDS=1 EXTRA_ROUNDS=0 WRK_SECS=3 RATE_SECS=4 H2_SECS=3 bash benches/load.sh   # quick smoke run (~2 min)
#   KEEP=1 bash benches/load.sh                   # keep the work dir (configs, logs, raw wrk/oha output)
#   CARGO_TARGET_DIR=/elsewhere bash benches/load.sh   # build cutover there (default: ./target)
# Output: progress on stderr; per-round table, summary, ratios and targets
# on stdout. Exit status 0 unless setup fails (a missed target is reported,
# not an error).
#
# Environment (defaults in brackets):
#   ROUNDS [3]        undisturbed rounds wanted; each round runs A B C in turn
#   EXTRA_ROUNDS [3]  rounds that may be added to replace disturbed ones
#   MAX_OTHER_PCT [20] a round is "disturbed" when processes outside the
#                     benchmark used more than this % of one core during any
#                     of its runs; disturbed rounds are shown, left out of
#                     the medians, and replaced (bounded by EXTRA_ROUNDS)
#   QUIET_WAIT [30]   before each round, wait up to this many seconds for a
#                     second in which other work stays under MAX_OTHER_PCT
#   CONNS [50]        keep-alive connections (wrk and oha)
#   WRK_SECS [5]      seconds of the max-throughput run (wrk -t1 -c$CONNS)
#   RATE [10000]      requests/s of the fixed-rate run (oha -q $RATE -c $CONNS)
#   RATE_SECS [6]     seconds of the fixed-rate run
#   H2_SECS [5]       seconds of the h2c run (h2load -c$H2_CONNS -m$H2_STREAMS)
#   H2_CONNS [10], H2_STREAMS [10]  h2c client connections, streams each
#   BASE_PORT [27180] ports used: +1 stable upstream, +2 canary upstream,
#                     +3 stable upstream over h2c, +11 cutover (HTTP/1.1 and
#                     h2c), +12 nginx proxy, +13 HAProxy, +22 nginx proxy
#                     h2c, +23 HAProxy h2c, +31 cutover admin (all on
#                     127.0.0.1)
#   PROXY_CPU [0]     core the proxies are pinned to (taskset)
#   GEN_CPU [1]       core the load generators and upstreams are pinned to
#   MAX_SECONDS [420] no new round starts this long after the first one
#   CUTOVER_BIN       use this binary instead of building one
#   KEEP [0]          1 keeps the work dir under /tmp
#
# What it does:
#   1. Installs missing tools: nginx, haproxy, wrk, h2load (nghttp2-client),
#      jq (apt), oha (cargo install oha --locked, for the fixed-rate runs);
#      builds cutover
#      (cargo build --release --bin cutover).
#   2. Starts two upstreams: ONE nginx instance (1 worker, pinned to GEN_CPU)
#      with two server blocks, "stable" and "canary", each answering
#      `return 200 "<name>\n"` with access logs off: the cheapest upstream at
#      hand, written in C, with no proxying of its own.
#   3. Starts the two proxies under test, both pinned to PROXY_CPU:
#        B  cutover run -c <generated config> --workers 1 (one weighted rule,
#           stable 90 / canary 10)
#        C  nginx, 1 worker, upstream keepalive, split_clients 90%/10% on
#           $request_id (a random value per request, as cutover's random
#           point), X-Forwarded-For/Proto/Host and X-Request-Id set, as cutover
#           does
#        D  HAProxy, nbthread 1, http-reuse always, `rand(100) lt 10` to the
#           canary backend, the same headers set
#      and checks that all three split about 90/10.
#   4. Runs ROUNDS x (A direct to the stable upstream, B, C). Per target:
#        - max requests/s: wrk -t1 -c$CONNS -d$WRK_SECS (keep-alive), with
#          the proxy's CPU use during the run
#        - fixed rate: oha -q $RATE -c $CONNS -z ${RATE_SECS}s; the proxy's
#          CPU time (utime+stime from /proc/PID/stat, summed over its
#          processes) divided by the requests completed, and its user-space
#          part (utime); p50/p99 latency (oha --latency-correction); the p99
#          added over direct (same round)
#        - h2c: h2load -c$H2_CONNS -m$H2_STREAMS -D$H2_SECS with prior
#          knowledge (the proxies still speak HTTP/1.1 upstream); req/s, and
#          req/s per proxy core (req/s / the proxy's CPU share)
#        - errors: wrk socket errors + non-2xx, oha errors + non-200, h2load
#          failed + errored
#        - "other%": CPU time used by processes outside the benchmark (all
#          cores, from /proc/stat minus the benchmark's own processes and
#          load generators), in % of one core; a round above MAX_OTHER_PCT
#          is flagged as disturbed, left out of the medians and replaced
#      For A the "proxy" columns describe the upstream nginx itself.
#   5. Prints idle RSS (before any traffic; and after the rounds), peak
#      RSS (VmHWM), a per-round table, a summary of medians, cutover's
#      upstream connection reuse ratio (1 - connects/requests from its
#      /metrics), and the cutover/nginx and cutover/HAProxy ratios with the
#      issue #14 targets (as ratios to HAProxy: CPU/request <= 1.0, max
#      req/s per core >= 1.0, h2c req/s per core >= 1.0, added p99 <=,
#      peak RSS <=; idle RSS < 10 MiB; reuse >= 99.9%; 0 errors).
#   Every process it starts is stopped on exit (trap), whatever the outcome.

set -euo pipefail

ROUNDS=${ROUNDS:-3}
EXTRA_ROUNDS=${EXTRA_ROUNDS:-3}
MAX_OTHER_PCT=${MAX_OTHER_PCT:-20}
QUIET_WAIT=${QUIET_WAIT:-30}
CONNS=${CONNS:-50}
WRK_SECS=${WRK_SECS:-5}
RATE=${RATE:-10000}
RATE_SECS=${RATE_SECS:-6}
H2_SECS=${H2_SECS:-5}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
BASE_PORT=${BASE_PORT:-27180}
PROXY_CPU=${PROXY_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
MAX_SECONDS=${MAX_SECONDS:-420}
KEEP=${KEEP:-0}

STABLE_PORT=$((BASE_PORT + 1))
CANARY_PORT=$((BASE_PORT + 2))
STABLE_H2_PORT=$((BASE_PORT + 3))
CUTOVER_PORT=$((BASE_PORT + 11))
NGINX_PORT=$((BASE_PORT + 12))
HAPROXY_PORT=$((BASE_PORT + 13))
NGINX_H2_PORT=$((BASE_PORT + 22))
HAPROXY_H2_PORT=$((BASE_PORT + 23))
ADMIN_PORT=$((BASE_PORT + 31))
TARGETS=(A-direct B-cutover C-nginx D-haproxy)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/haproxy_fixture.sh
. "$ROOT/benches/haproxy_fixture.sh"
WORK=$(mktemp -d /tmp/cutover-load.XXXXXX)
RESULTS=$WORK/results.tsv
CLK_TCK=$(getconf CLK_TCK)
STARTED_PIDS=()

log() { printf '[load.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

alive() { # pid: running (a zombie waiting to be reaped counts as gone)
    [[ -r /proc/$1/stat ]] && [[ $(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]
}

cleanup() {
    local rc=$? pid i any
    trap - EXIT INT TERM
    # The processes started here, plus their children (nginx workers), so that
    # none is left behind even if a master has to be killed.
    local all=()
    for pid in "${STARTED_PIDS[@]}"; do
        all+=("$pid" $(pgrep -P "$pid" 2>/dev/null || true))
    done
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do # at most 5 s for a clean exit
        any=0
        for pid in "${all[@]}"; do
            if alive "$pid"; then any=1; fi
        done
        ((any)) || break
        sleep 0.1
    done
    for pid in "${all[@]}"; do
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    wait 2>/dev/null || true
    if [[ $KEEP == 1 ]]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools ---

install_tools() {
    local apt_pkgs=()
    command -v nginx >/dev/null || apt_pkgs+=(nginx)
    command -v haproxy >/dev/null || apt_pkgs+=(haproxy)
    command -v wrk >/dev/null || apt_pkgs+=(wrk)
    command -v h2load >/dev/null || apt_pkgs+=(nghttp2-client)
    command -v jq >/dev/null || apt_pkgs+=(jq)
    command -v curl >/dev/null || apt_pkgs+=(curl)
    command -v taskset >/dev/null || apt_pkgs+=(util-linux)
    if ((${#apt_pkgs[@]})); then
        log "apt-get install ${apt_pkgs[*]}"
        # Never let the packages start a system nginx (port 80) or haproxy.
        local policy_added=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            policy_added=1
        fi
        timeout 300 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
        if ((policy_added)); then rm -f /usr/sbin/policy-rc.d; fi
    fi
    if ! command -v oha >/dev/null; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v oha >/dev/null; then
        log "cargo install oha --locked (one-time, several minutes)"
        (cd /tmp && env -u CARGO_TARGET_DIR timeout 1800 cargo install oha --locked)
    fi
    command -v oha >/dev/null || die "oha not found after install"
}

build_cutover() {
    if [[ -n ${CUTOVER_BIN:-} ]]; then
        BIN=$CUTOVER_BIN
    else
        log "cargo build --release --bin cutover"
        (cd "$ROOT" && timeout 1800 cargo build --release --bin cutover --quiet)
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cutover
    fi
    [[ -x $BIN ]] || die "no cutover binary at $BIN"
}

# ------------------------------------------------------------- processes ---

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

wait_port() { # port: bounded to 10 s
    local i
    for ((i = 0; i < 100; i++)); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    die "nothing answers on 127.0.0.1:$1 (logs in $WORK)"
}

write_configs() {
    mkdir -p "$WORK/nginx-up" "$WORK/nginx-proxy"
    cat >"$WORK/nginx-up/nginx.conf" <<EOF
# Upstreams: one worker, two server blocks.
user root;
worker_processes 1;
pid $WORK/nginx-up/nginx.pid;
error_log $WORK/nginx-up/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $WORK/nginx-up/body;
    proxy_temp_path $WORK/nginx-up/proxy;
    fastcgi_temp_path $WORK/nginx-up/fastcgi;
    uwsgi_temp_path $WORK/nginx-up/uwsgi;
    scgi_temp_path $WORK/nginx-up/scgi;
    default_type text/plain;
    server { listen 127.0.0.1:$STABLE_PORT backlog=4096; location / { return 200 "stable\n"; } }
    server { listen 127.0.0.1:$STABLE_H2_PORT http2 backlog=4096; location / { return 200 "stable\n"; } }
    server { listen 127.0.0.1:$CANARY_PORT backlog=4096; location / { return 200 "canary\n"; } }
}
EOF
    cat >"$WORK/nginx-proxy/nginx.conf" <<EOF
# Target C: nginx doing cutover's job.
user root;
worker_processes 1;
pid $WORK/nginx-proxy/nginx.pid;
error_log $WORK/nginx-proxy/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $WORK/nginx-proxy/body;
    proxy_temp_path $WORK/nginx-proxy/proxy;
    fastcgi_temp_path $WORK/nginx-proxy/fastcgi;
    uwsgi_temp_path $WORK/nginx-proxy/uwsgi;
    scgi_temp_path $WORK/nginx-proxy/scgi;
    upstream stable { server 127.0.0.1:$STABLE_PORT; keepalive 128; keepalive_requests 10000000; }
    upstream canary { server 127.0.0.1:$CANARY_PORT; keepalive 128; keepalive_requests 10000000; }
    # Random per request, as cutover's weighted pick without a sticky key.
    split_clients "\${request_id}" \$backend { 90% stable; * canary; }
    http2_max_concurrent_streams 128;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        listen 127.0.0.1:$NGINX_H2_PORT http2 backlog=4096;
        location / {
            proxy_pass http://\$backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
EOF
    mkdir -p "$WORK/haproxy"
    haproxy_fixture "$WORK/haproxy/haproxy.cfg" "$STABLE_PORT" "$CANARY_PORT" "$HAPROXY_PORT" "$HAPROXY_H2_PORT"
    cat >"$WORK/cutover.yaml" <<EOF
# Target B: one listener, one weighted rule.
listeners:
  - name: public
    address: "127.0.0.1:$CUTOVER_PORT"
groups:
  stable:
    endpoints: ["127.0.0.1:$STABLE_PORT"]
  canary:
    endpoints: ["127.0.0.1:$CANARY_PORT"]
routes:
  - name: web
    rules:
      - name: split
        backends:
          - { group: stable, weight: 90 }
          - { group: canary, weight: 10 }
EOF
}

start_processes() {
    for p in $STABLE_PORT $CANARY_PORT $STABLE_H2_PORT $CUTOVER_PORT $NGINX_PORT $HAPROXY_PORT \
        $NGINX_H2_PORT $HAPROXY_H2_PORT $ADMIN_PORT; do
        port_free "$p" || die "port $p is in use (set BASE_PORT)"
    done
    nginx -t -q -p "$WORK/nginx-up" -e "$WORK/nginx-up/error.log" -c "$WORK/nginx-up/nginx.conf"
    nginx -t -q -p "$WORK/nginx-proxy" -e "$WORK/nginx-proxy/error.log" -c "$WORK/nginx-proxy/nginx.conf"
    haproxy -q -c -f "$WORK/haproxy/haproxy.cfg"
    "$BIN" check "$WORK/cutover.yaml" >/dev/null

    taskset -c "$GEN_CPU" nginx -p "$WORK/nginx-up" -e "$WORK/nginx-up/error.log" \
        -c "$WORK/nginx-up/nginx.conf" -g 'daemon off;' &
    UP_PID=$!
    STARTED_PIDS+=("$UP_PID")
    taskset -c "$PROXY_CPU" "$BIN" run -c "$WORK/cutover.yaml" --workers 1 \
        --admin "127.0.0.1:$ADMIN_PORT" \
        >"$WORK/cutover.log" 2>&1 &
    CUTOVER_PID=$!
    STARTED_PIDS+=("$CUTOVER_PID")
    taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx-proxy" -e "$WORK/nginx-proxy/error.log" \
        -c "$WORK/nginx-proxy/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    STARTED_PIDS+=("$NGINX_PID")
    taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy/haproxy.cfg" \
        >"$WORK/haproxy/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    STARTED_PIDS+=("$HAPROXY_PID")
    wait_port "$STABLE_PORT"
    wait_port "$CANARY_PORT"
    # Idle RSS is read before the proxies see a single request.
    wait_for_listen "$CUTOVER_PORT"
    wait_for_listen "$NGINX_PORT"
    wait_for_listen "$HAPROXY_PORT"
    sleep 0.5
}

wait_for_listen() { # port, bounded to 10 s, without sending a request
    local i
    for ((i = 0; i < 100; i++)); do
        port_free "$1" || return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 (logs in $WORK)"
}

# ---------------------------------------------------------- measurement ---

tree() { # pid -> the pid and its children (nginx: master + worker)
    echo "$1"
    pgrep -P "$1" || true
}

cpu_ticks() { # pid [user|sys|all] -> CPU ticks of the process and its children
    local sum=0 p t
    for p in $(tree "$1"); do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null |
            awk -v w="${2:-all}" '{print (w == "user") ? $12 : (w == "sys") ? $13 : $12 + $13}') || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

all_busy() { # busy ticks of all CPUs, all processes
    awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

ours() { # CPU ticks of every process this script keeps running
    echo $(($(cpu_ticks "$UP_PID") + $(cpu_ticks "$CUTOVER_PID") + $(cpu_ticks "$NGINX_PID") +
        $(cpu_ticks "$HAPROXY_PID")))
}

children_ticks_read() { # CPU of this shell's waited-for children (the load
    # generators), from `times` output that the caller wrote to $WORK/times:
    # `times` must run in this shell, not in the subshell of a $(...).
    awk -v t="$CLK_TCK" 'NR == 2 {
        n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] }
        printf "%d", n * t }' "$WORK/times"
}

other_pct() { # busy0 busy1 ours0 ours1 gen0 gen1 secs -> CPU of everything else, % of one core
    awk -v b=$(($2 - $1)) -v o=$(($4 - $3)) -v g=$(($6 - $5)) -v s="$7" -v t="$CLK_TCK" \
        'BEGIN {x = b - o - g; if (x < 0) x = 0; printf "%.0f", 100 * x / (s * t)}'
}

mem_kb() { # pid field(VmRSS|VmHWM|Pss) -> sum over the tree, kB
    local sum=0 p v file
    for p in $(tree "$1"); do
        file=/proc/$p/status
        [[ $2 == Pss ]] && file=/proc/$p/smaps_rollup
        v=$(awk -v f="$2:" '$1 == f {print $2}' "$file" 2>/dev/null) || v=0
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

record() { # round target metric value
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}

OHA_FORMAT=()
oha_format() {
    if oha --help 2>&1 | grep -q -- '--output-format'; then
        OHA_FORMAT=(--output-format json)
    else
        OHA_FORMAT=(--json)
    fi
}

measure() { # round target port pid h2c-port
    local round=$1 target=$2 port=$3 pid=$4 url="http://127.0.0.1:$3/" h2_port=$5
    local out=$WORK/r$1-$2
    local c0 c1 b0 b1 o0 o1 g0 g1 other_wrk

    # Warm-up: connections to the upstreams, allocator, page cache.
    timeout 10 taskset -c "$GEN_CPU" wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null 2>&1 || true

    # 1. Max throughput at CONNS keep-alive connections.
    c0=$(cpu_ticks "$pid")
    o0=$(ours); times >"$WORK/times"; g0=$(children_ticks_read); b0=$(all_busy)
    timeout $((WRK_SECS + 20)) taskset -c "$GEN_CPU" \
        wrk -t1 -c"$CONNS" -d"${WRK_SECS}s" --latency "$url" >"$out.wrk" 2>&1 ||
        log "wrk failed for $target (see $out.wrk)"
    b1=$(all_busy); times >"$WORK/times"; g1=$(children_ticks_read); o1=$(ours)
    c1=$(cpu_ticks "$pid")
    other_wrk=$(other_pct "$b0" "$b1" "$o0" "$o1" "$g0" "$g1" "$WRK_SECS")
    local rps wrk_err
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out.wrk")
    wrk_err=$(awk '/Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
                   /Non-2xx or 3xx responses:/ {n += $5} END {print n + 0}' "$out.wrk")
    record "$round" "$target" rps "${rps:-0}"
    record "$round" "$target" wrk_cpu_pct "$(awk -v d=$((c1 - c0)) -v s="$WRK_SECS" -v t="$CLK_TCK" \
        'BEGIN {printf "%.0f", 100 * d / (s * t)}')"
    record "$round" "$target" rps_per_core "$(awk -v r="${rps:-0}" -v d=$((c1 - c0)) -v s="$WRK_SECS" -v t="$CLK_TCK" \
        'BEGIN {printf "%.0f", (d > 0) ? r * s * t / d : 0}')"

    sleep 1
    # 2. Fixed rate: CPU per request and latency (corrected for coordinated
    # omission: latency counts from when a request was due, not sent).
    local u0 u1
    c0=$(cpu_ticks "$pid")
    u0=$(cpu_ticks "$pid" user)
    o0=$(ours); times >"$WORK/times"; g0=$(children_ticks_read); b0=$(all_busy)
    timeout $((RATE_SECS + 30)) taskset -c "$GEN_CPU" \
        oha --no-tui "${OHA_FORMAT[@]}" --latency-correction -q "$RATE" -c "$CONNS" -z "${RATE_SECS}s" "$url" \
        >"$out.oha.json" 2>"$out.oha.err" || log "oha failed for $target (see $out.oha.err)"
    b1=$(all_busy); times >"$WORK/times"; g1=$(children_ticks_read); o1=$(ours)
    c1=$(cpu_ticks "$pid")
    u1=$(cpu_ticks "$pid" user)
    local ok total p50 p99 oha_err
    # Requests still in flight when -z ends are reported by oha as "aborted
    # due to deadline": not errors, and not counted as requests either.
    ok=$(jq '[.statusCodeDistribution | to_entries[] | select(.key == "200") | .value] | add // 0' "$out.oha.json" 2>/dev/null || echo 0)
    total=$(jq '([.statusCodeDistribution[]] | add // 0)
        + ([.errorDistribution // {} | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0)' \
        "$out.oha.json" 2>/dev/null || echo 0)
    p50=$(jq '.latencyPercentiles.p50 * 1e6' "$out.oha.json" 2>/dev/null || echo 0)
    p99=$(jq '.latencyPercentiles.p99 * 1e6' "$out.oha.json" 2>/dev/null || echo 0)
    oha_err=$((total - ok))
    record "$round" "$target" requests "$total"
    record "$round" "$target" cpu_us_per_req "$(awk -v d=$((c1 - c0)) -v t="$CLK_TCK" -v n="$total" \
        'BEGIN {printf "%.2f", (n > 0) ? 1e6 * d / t / n : 0}')"
    record "$round" "$target" user_us_per_req "$(awk -v d=$((u1 - u0)) -v t="$CLK_TCK" -v n="$total" \
        'BEGIN {printf "%.2f", (n > 0) ? 1e6 * d / t / n : 0}')"
    record "$round" "$target" p50_us "$(printf '%.0f' "$p50")"
    record "$round" "$target" p99_us "$(printf '%.0f' "$p99")"
    # 3. h2c (prior knowledge) on the client side: req/s and req/s per
    # proxy core.
    sleep 1
    local h2_out=$out.h2load h2_ok h2_fail h2_rps
    c0=$(cpu_ticks "$pid")
    timeout $((H2_SECS + 30)) taskset -c "$GEN_CPU" \
        h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$H2_SECS" "http://127.0.0.1:$h2_port/" \
        >"$h2_out" 2>&1 || log "h2load failed for $target (see $h2_out)"
    c1=$(cpu_ticks "$pid")
    h2_rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' "$h2_out")
    h2_ok=$(awk '/^requests:/ {print $8}' "$h2_out")
    h2_fail=$(awk '/^requests:/ {print $10 + $12}' "$h2_out")
    record "$round" "$target" h2_rps "${h2_rps:-0}"
    record "$round" "$target" h2_rps_per_core "$(awk -v r="${h2_rps:-0}" -v d=$((c1 - c0)) -v s="$H2_SECS" -v t="$CLK_TCK" \
        'BEGIN {printf "%.0f", (d > 0) ? r * s * t / d : 0}')"
    ((${h2_ok:-0} > 0)) || log "h2load: no request succeeded for $target (see $h2_out)"
    record "$round" "$target" errors $((wrk_err + oha_err + ${h2_fail:-0}))
    # CPU used by anything else on the machine (other users' builds and
    # tests) during the runs, in % of one core: the larger of the two runs.
    local other_rate
    other_rate=$(other_pct "$b0" "$b1" "$o0" "$o1" "$g0" "$g1" "$RATE_SECS")
    record "$round" "$target" other_pct $((other_wrk > other_rate ? other_wrk : other_rate))
    sleep 1
}

split_check() { # port name: share of canary over 200 sequential requests
    local i canary=0 stable=0 other=0 body
    for ((i = 0; i < 200; i++)); do
        body=$(curl -s --max-time 2 "http://127.0.0.1:$1/" || true)
        case $body in
        stable) stable=$((stable + 1)) ;;
        canary) canary=$((canary + 1)) ;;
        *) other=$((other + 1)) ;;
        esac
    done
    log "split check $2: stable $stable, canary $canary, other $other (of 200)"
    ((other == 0)) || die "$2 answered something other than stable/canary"
    ((canary >= 4 && canary <= 45)) || die "$2 split is not ~90/10"
}

# -------------------------------------------------------------- report ---

reuse_ratio() { # cutover's upstream reuse: 1 - connects/requests, from /metrics
    curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
        /^cutover_upstream_requests_total\{/ {r += $NF}
        /^cutover_upstream_connects_total\{/ {c += $NF}
        END { if (r > 0) printf "%.5f (%d connects / %d requests)", 1 - c / r, c, r; else print "n/a" }'
}

median_table() { # results-file -> "target metric median min max" lines
    sort -t$'\t' -k2,2 -k3,3 -k4,4g "$1" | awk -F'\t' '
        function flush() {
            if (n == 0) return
            m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%s\t%s\t%s\t%s\t%s\n", k1, k2, m, v[1], v[n]
        }
        { key = $2 "\t" $3
          if (key != prev) { flush(); n = 0; prev = key; k1 = $2; k2 = $3 }
          v[++n] = $4 }
        END { flush() }'
}

report() {
    # Added p99 per round (target - direct), then medians.
    awk -F'\t' '$3 == "p99_us" {p[$1 "\t" $2] = $4; r[$1] = 1}
        END { for (k in r) { d = p[k "\tA-direct"]
                  if (("" k "\tB-cutover") in p) printf "%s\tB-cutover\tadded_p99_us\t%d\n", k, p[k "\tB-cutover"] - d
                  if (("" k "\tC-nginx") in p) printf "%s\tC-nginx\tadded_p99_us\t%d\n", k, p[k "\tC-nginx"] - d
                  if (("" k "\tD-haproxy") in p) printf "%s\tD-haproxy\tadded_p99_us\t%d\n", k, p[k "\tD-haproxy"] - d } }' \
        "$RESULTS" >>"$RESULTS"
    # Medians over the undisturbed rounds (over all of them if none was).
    local used=$WORK/used.tsv med=$WORK/medians.tsv basis
    if ((CLEAN > 0)); then
        awk -F'\t' -v skip=" ${DISTURBED[*]} " 'index(skip, " " $1 " ") == 0' "$RESULTS" >"$used"
        basis="$CLEAN undisturbed round(s)"
    else
        cp "$RESULTS" "$used"
        basis="$TOTAL_ROUNDS round(s), ALL DISTURBED: rerun on a quieter machine"
    fi
    median_table "$used" >"$med"
    get() { awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m {print $3}' "$med"; }
    getr() { awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m {printf "%s..%s", $4, $5}' "$med"; }

    echo
    echo "=== per round (proxies on cpu$PROXY_CPU; wrk/oha/upstreams on cpu$GEN_CPU) ==="
    printf '%-5s %-10s %10s %8s %9s %11s %12s %8s %8s %8s %9s %7s %7s\n' round target "max_rps" "wrk_cpu%" "rps/core" "cpu_us/req" "(user part)" "p50_us" "p99_us" "h2_rps" "h2/core" errors "other%"
    local r t flag
    for ((r = 1; r <= TOTAL_ROUNDS; r++)); do
        flag=""
        [[ " ${DISTURBED[*]} " == *" $r "* ]] && flag="  <- disturbed, left out"
        for t in "${TARGETS[@]}"; do
            awk -F'\t' -v r="$r" -v t="$t" -v f="$flag" '$1 == r && $2 == t {v[$3] = $4}
                END { if (length(v)) printf "%-5s %-10s %10.0f %8s %9s %11s %12s %8s %8s %8.0f %9s %7s %7s%s\n", r, t, v["rps"], v["wrk_cpu_pct"],
                      v["rps_per_core"], v["cpu_us_per_req"], v["user_us_per_req"], v["p50_us"], v["p99_us"], v["h2_rps"],
                      v["h2_rps_per_core"], v["errors"], v["other_pct"], f }' "$RESULTS"
        done
    done
    echo "(other% = CPU used by processes outside this benchmark during the runs, in % of one core;"
    echo " a round above MAX_OTHER_PCT=$MAX_OTHER_PCT% is disturbed and left out of the summary)"

    echo
    echo "=== summary (cutover at $REV): medians over $basis [min..max]; rate run: $RATE req/s x ${RATE_SECS}s, $CONNS conns ==="
    printf '%-10s %20s %22s %8s %8s %8s %13s %7s %9s %9s %9s\n' target "max_rps" "cpu_us/req" "user_us" p50_us p99_us "added_p99_us" errors "idle_rss" "idle_pss" "peak_rss"
    printf '%-10s %20s %22s %8s %8s %8s %13s %7s %9s %9s %9s\n' "" "(wrk -c$CONNS)" "(at fixed rate)" "(part)" "" "" "(vs direct)" "(sum)" "KiB" "KiB" "KiB"
    for t in "${TARGETS[@]}"; do
        local errs
        errs=$(awk -F'\t' -v t="$t" '$2 == t && $3 == "errors" {s += $4} END {print s + 0}' "$RESULTS") # every round
        printf '%-10s %20s %22s %8s %8s %8s %13s %7s %9s %9s %9s\n' "$t" \
            "$(get "$t" rps) [$(getr "$t" rps)]" "$(get "$t" cpu_us_per_req) [$(getr "$t" cpu_us_per_req)]" \
            "$(get "$t" user_us_per_req)" "$(get "$t" p50_us)" "$(get "$t" p99_us)" "$(get "$t" added_p99_us)" "$errs" \
            "${IDLE_RSS[$t]}" "${IDLE_PSS[$t]}" "${PEAK_RSS[$t]}"
    done
    echo "(A-direct: the 'proxy' columns are the upstream nginx itself; RSS of nginx = master + worker;"
    echo " idle RSS before any traffic; after the rounds: cutover ${AFTER_RSS[B-cutover]} KiB, nginx ${AFTER_RSS[C-nginx]} KiB,"
    echo " haproxy ${AFTER_RSS[D-haproxy]} KiB)"
    echo
    printf '%-26s %s\n' "h2c req/s (h2load)" "$(for t in "${TARGETS[@]}"; do printf '%s %s  ' "$t" "$(get "$t" h2_rps)"; done)"
    printf '%-26s %s\n' "h2c req/s per proxy core" "$(for t in "${TARGETS[@]}"; do printf '%s %s  ' "$t" "$(get "$t" h2_rps_per_core)"; done)"
    printf '%-26s %s\n' "max req/s per proxy core" "$(for t in "${TARGETS[@]}"; do printf '%s %s  ' "$t" "$(get "$t" rps_per_core)"; done)"
    printf '%-26s %s\n' "cutover upstream reuse" "$REUSE"

    echo
    echo "=== cutover / nginx ==="
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
    local cb cc ab ac
    cb=$(get B-cutover cpu_us_per_req); cc=$(get C-nginx cpu_us_per_req)
    ab=$(get B-cutover added_p99_us); ac=$(get C-nginx added_p99_us)
    printf '%-26s %s\n' "max_rps" "$(ratio "$(get B-cutover rps)" "$(get C-nginx rps)")"
    printf '%-26s %s\n' "cpu_us/req" "$(ratio "$cb" "$cc")"
    printf '%-26s %s\n' "  user part" "$(ratio "$(get B-cutover user_us_per_req)" "$(get C-nginx user_us_per_req)")"
    printf '%-26s %s\n' "  kernel part" "$(ratio "$(awk -v a="$cb" -v b="$(get B-cutover user_us_per_req)" 'BEGIN {print a - b}')" \
        "$(awk -v a="$cc" -v b="$(get C-nginx user_us_per_req)" 'BEGIN {print a - b}')")"
    printf '%-26s %s\n' "p50_us" "$(ratio "$(get B-cutover p50_us)" "$(get C-nginx p50_us)")"
    printf '%-26s %s\n' "p99_us" "$(ratio "$(get B-cutover p99_us)" "$(get C-nginx p99_us)")"
    printf '%-26s %s\n' "added_p99_us" "$(ratio "$ab" "$ac")"
    printf '%-26s %s\n' "idle_rss" "$(ratio "${IDLE_RSS[B-cutover]}" "${IDLE_RSS[C-nginx]}")"
    printf '%-26s %s\n' "peak_rss" "$(ratio "${PEAK_RSS[B-cutover]}" "${PEAK_RSS[C-nginx]}")"

    echo
    echo "=== cutover / HAProxy (issue #14 targets in brackets) ==="
    local ch
    ch=$(get D-haproxy cpu_us_per_req)
    printf '%-26s %s\n' "cpu_us/req [<= 1.0]" "$(ratio "$cb" "$ch")"
    printf '%-26s %s\n' "max rps/core [>= 1.0]" "$(ratio "$(get B-cutover rps_per_core)" "$(get D-haproxy rps_per_core)")"
    printf '%-26s %s\n' "h2c rps/core [>= 1.0]" "$(ratio "$(get B-cutover h2_rps_per_core)" "$(get D-haproxy h2_rps_per_core)")"
    printf '%-26s %s\n' "added_p50_us" "$(ratio "$(awk -v a="$(get B-cutover p50_us)" -v d="$(get A-direct p50_us)" 'BEGIN {print a - d}')" \
        "$(awk -v a="$(get D-haproxy p50_us)" -v d="$(get A-direct p50_us)" 'BEGIN {print a - d}')")"
    printf '%-26s %s\n' "added_p99_us [<= 1.0]" "$(ratio "$ab" "$(get D-haproxy added_p99_us)")"
    printf '%-26s %s\n' "idle_rss" "$(ratio "${IDLE_RSS[B-cutover]}" "${IDLE_RSS[D-haproxy]}")"
    printf '%-26s %s\n' "peak_rss [<= 1.0]" "$(ratio "${PEAK_RSS[B-cutover]}" "${PEAK_RSS[D-haproxy]}")"

    echo
    echo "=== targets ==="
    local errs_b
    errs_b=$(awk -F'\t' '$2 == "B-cutover" && $3 == "errors" {s += $4} END {print s + 0}' "$RESULTS")
    verdict() { if [[ $1 == 1 ]]; then echo PASS; else echo MISS; fi; }
    printf '%-44s %s\n' "cutover cpu/request <= nginx ($cb vs $cc us)" \
        "$(verdict "$(awk -v a="$cb" -v b="$cc" 'BEGIN {print (a <= b) ? 1 : 0}')")"
    printf '%-44s %s\n' "cutover added p99 <= nginx ($ab vs $ac us)" \
        "$(verdict "$(awk -v a="$ab" -v b="$ac" 'BEGIN {print (a <= b) ? 1 : 0}')")"
    local idle_b=${IDLE_RSS[B-cutover]}
    printf '%-44s %s\n' "cutover idle RSS < 10 MiB ($idle_b KiB)" \
        "$(verdict "$(( idle_b < 10240 ? 1 : 0 ))")"
    printf '%-44s %s\n' "cutover errors == 0 ($errs_b)" "$(verdict "$(( errs_b == 0 ? 1 : 0 ))")"
}

# ---------------------------------------------------------------- main ---

install_tools
oha_format
build_cutover
write_configs
: >"$RESULTS"
if [[ -n ${CUTOVER_BIN:-} ]]; then
    REV="$CUTOVER_BIN"    # a given binary: the checkout's HEAD says nothing about it
else
    REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -n $(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && REV="$REV+dirty"
fi
log "work dir $WORK; cutover $BIN (source $REV); $(nginx -v 2>&1); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(oha --version)"
start_processes

declare -A PID_OF=([A-direct]=$UP_PID [B-cutover]=$CUTOVER_PID [C-nginx]=$NGINX_PID [D-haproxy]=$HAPROXY_PID)
declare -A PORT_OF=([A-direct]=$STABLE_PORT [B-cutover]=$CUTOVER_PORT [C-nginx]=$NGINX_PORT [D-haproxy]=$HAPROXY_PORT)
declare -A H2_PORT_OF=([A-direct]=$STABLE_H2_PORT [B-cutover]=$CUTOVER_PORT [C-nginx]=$NGINX_H2_PORT [D-haproxy]=$HAPROXY_H2_PORT)
declare -A IDLE_RSS IDLE_PSS PEAK_RSS AFTER_RSS
for t in "${TARGETS[@]}"; do
    IDLE_RSS[$t]=$(mem_kb "${PID_OF[$t]}" VmRSS)
    IDLE_PSS[$t]=$(mem_kb "${PID_OF[$t]}" Pss)
done
log "idle RSS (KiB): cutover ${IDLE_RSS[B-cutover]}, nginx ${IDLE_RSS[C-nginx]}, haproxy ${IDLE_RSS[D-haproxy]} (PSS ${IDLE_PSS[B-cutover]} / ${IDLE_PSS[C-nginx]} / ${IDLE_PSS[D-haproxy]})"

split_check "$CUTOVER_PORT" cutover
split_check "$NGINX_PORT" nginx
split_check "$HAPROXY_PORT" haproxy

quiet_wait() { # waits (at most QUIET_WAIT s) for a second in which other work stays under MAX_OTHER_PCT
    local i b0 b1 o0 o1 x=0
    for ((i = 0; i < QUIET_WAIT; i++)); do
        o0=$(ours); b0=$(all_busy)
        sleep 1
        b1=$(all_busy); o1=$(ours)
        x=$(other_pct "$b0" "$b1" "$o0" "$o1" 0 0 1)
        ((x <= MAX_OTHER_PCT)) && return 0
    done
    if ((QUIET_WAIT > 0)); then
        log "no quiet second in ${QUIET_WAIT}s (other work at $x% of a core): measuring anyway"
    fi
}

# Rounds until ROUNDS undisturbed ones, at most ROUNDS + EXTRA_ROUNDS in all,
# and none started after MAX_SECONDS.
CLEAN=0
TOTAL_ROUNDS=0
ROUNDS_START=$SECONDS
DISTURBED=()
while ((CLEAN < ROUNDS && TOTAL_ROUNDS < ROUNDS + EXTRA_ROUNDS)); do
    if ((SECONDS - ROUNDS_START > MAX_SECONDS)); then
        log "time budget ($MAX_SECONDS s) spent: stopping after $TOTAL_ROUNDS round(s)"
        break
    fi
    round=$((TOTAL_ROUNDS + 1))
    quiet_wait
    for t in "${TARGETS[@]}"; do
        kill -0 "${PID_OF[$t]}" 2>/dev/null || die "$t (pid ${PID_OF[$t]}) died; logs in $WORK"
        log "round $round (clean so far $CLEAN/$ROUNDS): $t"
        measure "$round" "$t" "${PORT_OF[$t]}" "${PID_OF[$t]}" "${H2_PORT_OF[$t]}"
    done
    TOTAL_ROUNDS=$round
    worst=$(awk -F'\t' -v r="$round" '$1 == r && $3 == "other_pct" && $4 > m {m = $4} END {print m + 0}' "$RESULTS")
    if ((worst > MAX_OTHER_PCT)); then
        DISTURBED+=("$round")
        log "round $round disturbed: other work used up to $worst% of a core (limit $MAX_OTHER_PCT%)"
    else
        CLEAN=$((CLEAN + 1))
    fi
done

sleep 2
for t in "${TARGETS[@]}"; do
    PEAK_RSS[$t]=$(mem_kb "${PID_OF[$t]}" VmHWM)
    AFTER_RSS[$t]=$(mem_kb "${PID_OF[$t]}" VmRSS)
done
REUSE=$(reuse_ratio)
report
