#!/usr/bin/env bash
# benches/tls.sh: TLS cost of cutover, side by side with a direct TLS server,
# on loopback only, interleaved so that noise from other work on the machine
# hits every target alike.
#
# Usage (as root: it may apt-get install nginx/openssl; needs 2 cores):
#   bash benches/tls.sh                              # 3 rounds x 2 runs x 3 targets x 5 s (~2 min)
#   ROUNDS=2 SECS=3 bash benches/tls.sh              # quick run (~1 min)
#   KEEP=1 bash benches/tls.sh                       # keep the work dir (certs, configs, oha output)
# Output: progress on stderr; per-round table, medians and ratios on stdout.
#
# Targets (the server under test pinned to PROXY_CPU, everything else to GEN_CPU):
#   A  direct: nginx (1 worker) terminating TLS itself and answering 200 "ok"
#   B  cutover --workers 1, TLS listener -> plaintext upstream (nginx, keep-alive pool)
#   C  cutover --workers 1, TLS listener -> TLS upstream (nginx, keep-alive pool)
# Runs per target and round:
#   handshake  oha --disable-keepalive -c $CONNS: a new TCP + TLS connection per
#              request (HTTP/1.1). oha may resume TLS sessions; both servers allow it.
#   keepalive  oha -c $CONNS, HTTP/1.1 keep-alive over TLS
# Certificates: a throwaway ECDSA P-256 CA and leaf made with openssl.
# Every process it starts is stopped on exit (trap).

set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
CONNS=${CONNS:-50}
BASE_PORT=${BASE_PORT:-27280}
PROXY_CPU=${PROXY_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
KEEP=${KEEP:-0}

DIRECT_PORT=$((BASE_PORT + 1))    # nginx TLS (target A, and C's upstream)
PLAIN_PORT=$((BASE_PORT + 2))     # nginx plaintext (B's upstream)
UP_TLS_PORT=$((BASE_PORT + 3))    # nginx TLS for C's upstream (separate worker)
B_PORT=$((BASE_PORT + 11))
C_PORT=$((BASE_PORT + 12))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/cutover-tls.XXXXXX)
RESULTS=$WORK/results.tsv
STARTED_PIDS=()

log() { printf '[tls.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    local all=()
    for pid in "${STARTED_PIDS[@]}"; do
        all+=("$pid" $(pgrep -P "$pid" 2>/dev/null || true))
    done
    for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${all[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $KEEP == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_tools() {
    local apt_pkgs=()
    command -v nginx >/dev/null || apt_pkgs+=(nginx)
    command -v openssl >/dev/null || apt_pkgs+=(openssl)
    command -v curl >/dev/null || apt_pkgs+=(curl)
    command -v jq >/dev/null || apt_pkgs+=(jq)
    if ((${#apt_pkgs[@]})); then
        log "apt-get install ${apt_pkgs[*]}"
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then # never start a system nginx
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' RETURN
        fi
        timeout 300 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
    fi
    command -v oha >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v oha >/dev/null; then
        log "cargo install oha --locked (one-time, several minutes)"
        (cd /tmp && env -u CARGO_TARGET_DIR timeout 1800 cargo install oha --locked)
    fi
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

# shellcheck source=benches/certs.sh
. "$ROOT/benches/certs.sh"

nginx_conf() { # dir, server blocks
    mkdir -p "$1"
    cat >"$1/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    default_type text/plain;
    ssl_certificate $WORK/certs/tls.crt;
    ssl_certificate_key $WORK/certs/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    $2
}
EOF
}

cutover_conf() { # file, port, upstream group yaml
    cat >"$1" <<EOF
listeners:
  - name: public
    address: "127.0.0.1:$2"
    tls:
      certificates:
        - { cert: "$WORK/certs/tls.crt", key: "$WORK/certs/tls.key" }
groups:
  app:
$3
routes:
  - name: web
    rules:
      - name: all
        backends: [{ group: app }]
EOF
}

start() { # cpu, log, command... ; sets LAST_PID (no subshell: the trap must see every pid)
    local cpu=$1 out=$2
    shift 2
    taskset -c "$cpu" "$@" >"$out" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

wait_tls() { # port
    local i
    for ((i = 0; i < 100; i++)); do
        curl -s -o /dev/null --max-time 1 --cacert "$WORK/certs/ca.pem" "https://localhost:$1/" && return 0
        sleep 0.1
    done
    die "nothing answers TLS on 127.0.0.1:$1 (logs in $WORK)"
}

cpu_ticks() { # pid: utime+stime of the process and its children (nginx workers)
    local total=0 p
    for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
        total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

run_one() { # round, target, pid, port, kind
    local round=$1 target=$2 pid=$3 port=$4 kind=$5 args=() out before after
    [[ $kind == handshake ]] && args+=(--disable-keepalive)
    out=$WORK/oha-$round-$target-$kind.json
    before=$(cpu_ticks "$pid")
    taskset -c "$GEN_CPU" oha --no-tui --output-format json -c "$CONNS" -z "${SECS}s" \
        --cacert "$WORK/certs/ca.pem" "${args[@]}" "https://localhost:$port/" >"$out" 2>/dev/null || true
    after=$(cpu_ticks "$pid")
    local rps ok errs
    rps=$(jq -r '.summary.requestsPerSec // 0' "$out")
    ok=$(jq -r '[.statusCodeDistribution["200"] // 0] | add' "$out")
    # Requests still in flight when -z ends are "aborted due to deadline":
    # not failures.
    errs=$(jq -r '[.errorDistribution // {} | to_entries[]
        | select(.key != "aborted due to deadline") | .value] | add // 0' "$out")
    printf '%s\t%s\t%s\t%.0f\t%s\t%s\t%s\n' "$round" "$target" "$kind" "$rps" "$ok" "$errs" \
        "$((after - before))" >>"$RESULTS"
    log "round $round $target $kind: $(printf '%.0f' "$rps") req/s, $errs errors"
}

main() {
    [[ $(nproc) -ge 2 ]] || die "needs 2 cores"
    install_tools
    build_cutover
    make_certs
    nginx_conf "$WORK/direct" "server { listen 127.0.0.1:$DIRECT_PORT ssl backlog=4096; location / { return 200 \"ok\n\"; } }"
    nginx_conf "$WORK/up" "server { listen 127.0.0.1:$PLAIN_PORT backlog=4096; location / { return 200 \"ok\n\"; } }
    server { listen 127.0.0.1:$UP_TLS_PORT ssl backlog=4096; location / { return 200 \"ok\n\"; } }"
    cutover_conf "$WORK/b.yaml" "$B_PORT" "    endpoints: [\"127.0.0.1:$PLAIN_PORT\"]"
    cutover_conf "$WORK/c.yaml" "$C_PORT" "    endpoints: [\"127.0.0.1:$UP_TLS_PORT\"]
    tls: { ca: \"$WORK/certs/ca.pem\" }"
    local a b c
    start "$PROXY_CPU" "$WORK/direct.out" nginx -c "$WORK/direct/nginx.conf" -g 'daemon off;'
    a=$LAST_PID
    start "$GEN_CPU" "$WORK/up.out" nginx -c "$WORK/up/nginx.conf" -g 'daemon off;'
    start "$PROXY_CPU" "$WORK/b.log" "$BIN" run -c "$WORK/b.yaml" --workers 1 --no-admin --no-metrics
    b=$LAST_PID
    start "$PROXY_CPU" "$WORK/c.log" "$BIN" run -c "$WORK/c.yaml" --workers 1 --no-admin --no-metrics
    c=$LAST_PID
    wait_tls "$DIRECT_PORT"
    wait_tls "$B_PORT"
    wait_tls "$C_PORT"
    printf 'round\ttarget\tkind\treq_s\tok\terrors\tcpu_ticks\n' >"$RESULTS"
    local round kind
    for ((round = 1; round <= ROUNDS; round++)); do
        for kind in handshake keepalive; do
            run_one "$round" A "$a" "$DIRECT_PORT" "$kind"
            run_one "$round" B "$b" "$B_PORT" "$kind"
            run_one "$round" C "$c" "$C_PORT" "$kind"
        done
    done
    report
}

report() {
    echo "# per round (cpu_ticks: the server under test, 1/$(getconf CLK_TCK) s, during the run)"
    column -t -s $'\t' "$RESULTS"
    echo
    echo "# medians over $ROUNDS rounds (req/s; CPU per request in us)"
    local medians
    medians=$(awk -F'\t' -v tck="$(getconf CLK_TCK)" 'NR > 1 {
            k = $2 "\t" $3; n[k]++; rps[k, n[k]] = $4; err[k] += $6
            cpu[k, n[k]] = ($5 > 0) ? $7 / tck * 1e6 / $5 : 0
        }
        function median(arr, k, m,    i, j, t, v) {
            for (i = 1; i <= m; i++) v[i] = arr[k, i]
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        }
        END {
            printf "target\tkind\treq_s\tcpu_us_per_req\terrors\n"
            split("A B C", ts, " "); split("handshake keepalive", ks, " ")
            for (i = 1; i <= 3; i++) for (j = 1; j <= 2; j++) {
                k = ts[i] "\t" ks[j]; r[k] = median(rps, k, n[k]); c[k] = median(cpu, k, n[k])
                printf "%s\t%.0f\t%.1f\t%d\n", k, r[k], c[k], err[k]
            }
            for (j = 1; j <= 2; j++) {
                kind = ks[j]
                printf "ratio %s: B/A req/s %.2f, C/A req/s %.2f; CPU/req B/A %.2f, C/A %.2f\n", kind,
                    r["B\t" kind] / r["A\t" kind], r["C\t" kind] / r["A\t" kind],
                    c["B\t" kind] / c["A\t" kind], c["C\t" kind] / c["A\t" kind]
            }
        }' "$RESULTS")
    grep -v '^ratio' <<<"$medians" | column -t -s $'\t'
    echo
    echo "# ratios (cutover / direct nginx TLS)"
    grep '^ratio' <<<"$medians" | sed 's/^ratio //'
}

main "$@"
