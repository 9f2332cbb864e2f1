#!/usr/bin/env bash
# benches/hostile.sh: hostile idle clients against cutover and nginx, each
# with the same connection limit, on loopback only (127.0.0.1).
#
# Usage (as root: it may apt-get install nginx and raise `ulimit -n`):
#   bash benches/hostile.sh                                   # full run, ~3-4 min
#   N_H2=50 M_H1=200 LIMIT=100 AFTER_SECS=3 bash benches/hostile.sh   # smoke run, ~20 s
#   CUTOVER_BIN=target/release/cutover bash benches/hostile.sh  # skip the build
#
# Per target (cutover, then nginx), one at a time:
#   1. RSS of the idle proxy ("before"); then IDLE_PROBE HTTP/1.1 keep-alive
#      connections (fewer than LIMIT) that each sent one request, idle for
#      PROBE_WAIT seconds: the RSS they add, per connection ("KiB/idle");
#      they close again.
#   2. The flood: N_H2 h2c connections that send the preface and SETTINGS,
#      then nothing; then M_H1 HTTP/1.1 connections that send one request,
#      read the answer and stay idle (keep-alive). At most 200 connect at
#      once; each gives up after 5 s.
#   3. While the flood is held: FRESH fresh HTTP/1.1 clients one after the
#      other, each timed from connect to the first byte of a 200 (5 s cap,
#      a timeout counts as failed); RSS "during"; flood connections the
#      proxy still holds open.
#   4. The flood closes; RSS after AFTER_SECS seconds ("after").
# Prints one table. Every process it starts is stopped on exit.
#
# Environment (defaults in brackets):
#   N_H2 [2500]        silent h2c connections
#   M_H1 [10000]       idle HTTP/1.1 keep-alive connections
#   LIMIT [2000]       connection limit of both proxies (cutover
#                      max_connections; nginx worker_connections = LIMIT + the
#                      upstream keep-alive pool, so both admit LIMIT clients)
#   FRESH [10]         fresh clients timed during the flood
#   IDLE_PROBE [1000]  idle connections of the per-connection RSS probe
#   PROBE_WAIT [4]     seconds the probe's connections stay idle before RSS is
#                      read: past cutover's 1 s park delay (idle HTTP/1.1
#                      connections drop their buffers) and its next trim
#   AFTER_SECS [60]    wait after the flood before the last RSS reading
#   BASE_PORT [27280]  +1 upstream, +11 cutover, +12 nginx proxy (HTTP/1.1),
#                      +13 nginx proxy (h2c: nginx 1.22 cannot serve h2c and
#                      HTTP/1.1 on one plaintext port; both ports share its
#                      one worker's worker_connections)
#   CUTOVER_BIN        cutover binary (default: cargo build --release)
#   KEEP [0]           1 keeps the work dir under /tmp

set -euo pipefail

N_H2=${N_H2:-2500}
M_H1=${M_H1:-10000}
LIMIT=${LIMIT:-2000}
FRESH=${FRESH:-10}
IDLE_PROBE=${IDLE_PROBE:-1000}
PROBE_WAIT=${PROBE_WAIT:-4}
AFTER_SECS=${AFTER_SECS:-60}
BASE_PORT=${BASE_PORT:-27280}
KEEP=${KEEP:-0}
UP_PORT=$((BASE_PORT + 1))
CUTOVER_PORT=$((BASE_PORT + 11))
NGINX_PORT=$((BASE_PORT + 12))
NGINX_H2C_PORT=$((BASE_PORT + 13))
POOL=32

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/cutover-hostile.XXXXXX)
STARTED_PIDS=()

log() { printf '[hostile.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${STARTED_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ $KEEP == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup ---

command -v python3 >/dev/null || die "python3 is needed for the flood client"
if ! command -v nginx >/dev/null; then
    log "installing nginx"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
NEEDED=$((N_H2 + M_H1 + 2 * LIMIT + 1000))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < NEEDED)); then
    die "ulimit -n is $(ulimit -n), $NEEDED needed: lower N_H2/M_H1 or raise the hard limit"
fi
if [[ -z ${CUTOVER_BIN:-} ]]; then
    log "building cutover (release)"
    (cd "$ROOT" && cargo build --release --bin cutover --quiet)
    CUTOVER_BIN=$ROOT/target/release/cutover
fi
[[ -x $CUTOVER_BIN ]] || die "no cutover binary at $CUTOVER_BIN"

mkdir -p "$WORK/up" "$WORK/proxy"
nginx_conf() { # dir, events, server block
    cat <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile $NEEDED;
pid $1/nginx.pid;
error_log $1/error.log crit;
events { $2 }
http {
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    default_type text/plain;
    $3
}
EOF
}
nginx_conf "$WORK/up" "worker_connections 4096;" \
    "server { listen 127.0.0.1:$UP_PORT backlog=4096; location / { return 200 \"up\\n\"; } }" \
    >"$WORK/up/nginx.conf"
# nginx counts its upstream connections in worker_connections too.
nginx_conf "$WORK/proxy" "worker_connections $((LIMIT + POOL));" "
    upstream app { server 127.0.0.1:$UP_PORT; keepalive $POOL; }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        listen 127.0.0.1:$NGINX_H2C_PORT http2 backlog=4096;
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }" >"$WORK/proxy/nginx.conf"
cat >"$WORK/cutover.yaml" <<EOF
listeners:
  - name: public
    address: "127.0.0.1:$CUTOVER_PORT"
    max_connections: $LIMIT
groups:
  app:
    endpoints: ["127.0.0.1:$UP_PORT"]
routes:
  - name: web
    rules:
      - name: all
        backends: [{group: app}]
EOF

start_nginx() { # dir
    nginx -c "$1/nginx.conf" -g 'daemon off;' &
    STARTED_PIDS+=($!)
}
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1"
}
rss_kib() { # pid [+ its children]: summed VmRSS
    local total=0 p v
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

start_nginx "$WORK/up"
wait_port "$UP_PORT"

# ---------------------------------------------------------------- flood ---

cat >"$WORK/flood.py" <<'EOF'
"""Holds N silent h2c and M idle HTTP/1.1 connections, times fresh clients,
then waits for a line on stdin before closing everything."""
import asyncio, sys, time

h2_port, h1_port, n_h2, m_h1, fresh = (int(a) for a in sys.argv[1:6])
probe_only = len(sys.argv) > 6 and sys.argv[6] == "probe"
probe_wait = float(sys.argv[7]) if len(sys.argv) > 7 else 1.0
HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
GET = b"GET / HTTP/1.1\r\nHost: app\r\n\r\n"

async def drain(r):
    try:
        while await r.read(65536):
            pass
    except Exception:
        pass

async def open_one(h2):
    try:
        port = h2_port if h2 else h1_port
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        w.write(HELLO if h2 else GET)
        await w.drain()
        if not h2:
            await asyncio.wait_for(r.read(512), 5)
        # Done when the proxy closes the connection.
        return w, asyncio.ensure_future(drain(r))
    except Exception:
        return None

async def open_all(count, h2):
    gate = asyncio.Semaphore(200)
    async def one():
        async with gate:
            return await open_one(h2)
    return [c for c in await asyncio.gather(*(one() for _ in range(count))) if c]

async def fresh_client():
    t = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", h1_port), 5)
        w.write(GET)
        await w.drain()
        head = await asyncio.wait_for(r.read(12), 5 - (time.monotonic() - t))
        w.close()
        return (time.monotonic() - t) * 1000 if head.startswith(b"HTTP/1.1 200") else None
    except Exception:
        return None

async def probe():
    """m_h1 idle keep-alive connections, held until a line on stdin."""
    held = await open_all(m_h1, False)
    await asyncio.sleep(probe_wait)
    print(sum(not watch.done() for _, watch in held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w, watch in held:
        w.close()
        watch.cancel()
    await asyncio.sleep(0.5)

async def main():
    if probe_only:
        return await probe()
    t = time.monotonic()
    held = await open_all(n_h2, True) + await open_all(m_h1, False)
    flood_s = time.monotonic() - t
    await asyncio.sleep(0.5)
    times = []
    for _ in range(fresh):
        times.append(await fresh_client())
        await asyncio.sleep(0.1)
    ok = sorted(x for x in times if x is not None)
    open_now = sum(not watch.done() for _, watch in held)
    p50 = f"{ok[len(ok) // 2]:.1f}" if ok else "-"
    worst = f"{ok[-1]:.1f}" if ok else "-"
    print(f"{len(held)} {open_now} {len(ok)} {len(times)} {p50} {worst} {flood_s:.1f}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w, watch in held:
        w.close()
        watch.cancel()
    await asyncio.sleep(0.5)

asyncio.run(main())
EOF

ROWS=()
measure() { # name, pid, h2c port, HTTP/1.1 port
    local name=$1 pid=$2 h2_port=$3 h1_port=$4 before during after result
    sleep 1
    before=$(rss_kib "$pid")
    coproc PROBE { timeout 120 python3 "$WORK/flood.py" "$h2_port" "$h1_port" 0 "$IDLE_PROBE" 0 probe "$PROBE_WAIT"; }
    read -r probed <&"${PROBE[0]}" || die "$name: the idle probe did not report"
    local with_idle per_idle upstream
    with_idle=$(rss_kib "$pid")
    # Idle upstream connections the probe's burst left in the proxy's pool:
    # their share of "KiB/idle" falls as more clients idle (the pool is capped).
    upstream=$(ss -Htn state established "( dport = :$UP_PORT )" 2>/dev/null | wc -l)
    echo >&"${PROBE[1]}"
    wait "$PROBE_PID" 2>/dev/null || true
    per_idle=$(( (with_idle - before) * 10 / (probed > 0 ? probed : 1) ))
    per_idle="$((per_idle / 10)).$((per_idle % 10))"
    log "$name: $probed idle keep-alive connections add $((with_idle - before)) KiB ($per_idle KiB each; $upstream upstream connections open)"
    sleep 2
    log "$name: flooding with $N_H2 silent h2c + $M_H1 idle HTTP/1.1 connections"
    coproc FLOOD { timeout $((AFTER_SECS + 300)) python3 "$WORK/flood.py" "$h2_port" "$h1_port" "$N_H2" "$M_H1" "$FRESH"; }
    read -r -t 240 result <&"${FLOOD[0]}" || die "$name: the flood client did not report"
    during=$(rss_kib "$pid")
    echo >&"${FLOOD[1]}"
    wait "$FLOOD_PID" 2>/dev/null || true
    log "$name: flood closed; waiting ${AFTER_SECS}s for memory to come back"
    sleep "$AFTER_SECS"
    after=$(rss_kib "$pid")
    # connected held served tried p50 worst flood_s
    read -r connected held served tried p50 worst flood_s <<<"$result"
    ROWS+=("$(printf '%-8s %9s %9s %8s %10s %9s %9s %9s %10s %10s %10s' \
        "$name" "$connected" "$held" "$served/$tried" "$p50" "$worst" "${flood_s}s" "$per_idle" \
        "$((before / 1024))" "$((during / 1024))" "$((after / 1024))")")
}

"$CUTOVER_BIN" run -c "$WORK/cutover.yaml" --no-admin --workers 1 >"$WORK/cutover.log" 2>&1 &
CUTOVER_PID=$!
STARTED_PIDS+=("$CUTOVER_PID")
wait_port "$CUTOVER_PORT"
measure cutover "$CUTOVER_PID" "$CUTOVER_PORT" "$CUTOVER_PORT"
kill -TERM "$CUTOVER_PID" 2>/dev/null || true

start_nginx "$WORK/proxy"
NGINX_PID=${STARTED_PIDS[-1]}
wait_port "$NGINX_PORT"
measure nginx "$NGINX_PID" "$NGINX_H2C_PORT" "$NGINX_PORT"

echo
echo "Hostile idle clients: $N_H2 silent h2c + $M_H1 idle HTTP/1.1, limit $LIMIT, $FRESH fresh clients"
printf '%-8s %9s %9s %8s %10s %9s %9s %9s %10s %10s %10s\n' target connected held served p50_ms worst_ms flood \
    KiB/idle rss_before rss_during "rss_${AFTER_SECS}s"
for row in "${ROWS[@]}"; do echo "$row"; done
echo "(connected: flood connections that connected; held: still open when the fresh clients had"
echo " been served; served: fresh clients answered 200 within 5 s; KiB/idle: RSS added per idle"
echo " keep-alive connection ($IDLE_PROBE of them, before the flood); RSS in MiB, proxy processes)"
