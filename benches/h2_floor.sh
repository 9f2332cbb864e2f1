#!/usr/bin/env bash
# benches/h2_floor.sh: what HTTP/2 itself costs, in user-space instructions
# per h2c request (callgrind), for servers that answer every request at once
# with the fixture upstream's answer (`stable\n`, nginx's four headers):
#   hyper      hyper's HTTP/2 server (cutover's client side), a task per stream
#   h2         the h2 crate alone, a task per stream
#   h2-inline  the h2 crate alone, answered in the connection's task
#   nginx      nginx `return 200` on an h2c listener
#   haproxy    HAProxy `http-request return` on an h2c bind
# The first three are benches/h2_floor.rs. Set against callgrind.sh's
# figures for the whole proxy, they show how much of cutover's h2c cost is
# the HTTP/2 library's floor, whatever cutover does around it.
#
# Usage (needs valgrind, nginx, haproxy, h2load):
#   bash benches/h2_floor.sh                  # N1=1000 N2=6000, all five
#   SERVERS="hyper haproxy" bash benches/h2_floor.sh
# Instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1), h2load -c10
# -m10, as callgrind.sh: start-up and shutdown cancel out. 127.0.0.1 only.

set -euo pipefail

N1=${N1:-1000}
N2=${N2:-6000}
BASE_PORT=${BASE_PORT:-27780}
SERVERS=${SERVERS:-hyper h2 h2-inline nginx haproxy}
PORT=$((BASE_PORT + 1))
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/split_fixture.sh
. "$ROOT/benches/split_fixture.sh"
bench_work h2floor

need valgrind h2load cargo
for s in $SERVERS; do
    case $s in
    hyper | h2 | h2-inline) ;;
    nginx) need nginx ;;
    haproxy) need haproxy ;;
    *) die "unknown server '$s' (hyper, h2, h2-inline, nginx, haproxy)" ;;
    esac
done

# Built as a crate of its own with cutover's release profile and locked
# versions, not as a bench target: a bench build also gets the dev
# dependencies' features (tokio's test-util), which make hyper's server
# ~10% dearer than it is in the cutover binary.
FLOOR_DIR=$WORK/floor
mkdir -p "$FLOOR_DIR"
cp "$ROOT/Cargo.lock" "$FLOOR_DIR/"
cat >"$FLOOR_DIR/Cargo.toml" <<EOF
[package]
name = "h2_floor"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "h2_floor"
path = "$ROOT/benches/h2_floor.rs"

[dependencies]
$(awk '/^\[/ {deps = ($0 == "[dependencies]")} deps' "$ROOT/Cargo.toml" |
    grep -E '^(bytes|h2|http|http-body-util|hyper|hyper-util|tokio) = ')

[profile.release]
lto = "fat"
codegen-units = 1
EOF
log "cargo build --release (benches/h2_floor.rs, in $ROOT/target/h2_floor)"
(cd "$FLOOR_DIR" && CARGO_TARGET_DIR="$ROOT/target/h2_floor" cargo build --release --quiet) ||
    die "could not build benches/h2_floor.rs"
FLOOR_BIN=$ROOT/target/h2_floor/release/h2_floor

mkdir -p "$WORK/nginx"
# One process (no master): callgrind counts the process that answers.
nginx_answering "$WORK/nginx" 1024 "master_process off;" \
    "server { listen 127.0.0.1:$PORT http2; location / { return 200 \"stable\\n\"; } }"
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend answer
    bind 127.0.0.1:$PORT proto h2
    http-request return status 200 content-type text/plain string "stable\n"
EOF

# answered_once: waits until one h2c request on $PORT succeeds.
answered_once() {
    local i
    for ((i = 0; i < 300; i++)); do
        timeout 5 h2load -n1 -c1 "http://127.0.0.1:$PORT/" 2>/dev/null | grep -q "1 succeeded" && return 0
        sleep 0.1
    done
    die "nothing answers h2c on 127.0.0.1:$PORT (logs in $WORK)"
}

instructions() { # server requests -> Ir of a whole run serving them
    local server=$1 n=$2 out=$WORK/callgrind.out.$1.$2 pid cmd
    case $server in
    # Exits by itself after the probe and the n requests.
    hyper | h2 | h2-inline) cmd=("$FLOOR_BIN" "$server" "$PORT" $((n + 1))) ;;
    nginx) cmd=(nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;') ;;
    haproxy) cmd=(haproxy -db -f "$WORK/haproxy.cfg") ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >"$WORK/$server.$n.log" 2>&1 &
    pid=$!
    answered_once
    timeout 600 h2load -n "$n" -c 10 -m 10 "http://127.0.0.1:$PORT/" >"$WORK/h2load.$server.$n.log" 2>&1 ||
        die "h2load failed (see $WORK/h2load.$server.$n.log)"
    grep -q "succeeded, 0 failed, 0 errored" "$WORK/h2load.$server.$n.log" ||
        log "warning: some requests failed: $(grep '^requests:' "$WORK/h2load.$server.$n.log")"
    case $server in
    nginx | haproxy) kill -TERM "$pid" ;;
    esac
    wait "$pid" || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

printf '%-10s %s\n' server "instructions per h2c request (answering itself)"
for s in $SERVERS; do
    log "$s under callgrind: $N1 and $N2 h2c requests"
    a=$(instructions "$s" "$N1")
    b=$(instructions "$s" "$N2")
    awk -v s="$s" -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" \
        'BEGIN { printf "%-10s %.0f\n", s, (b - a) / (n2 - n1) }'
done
