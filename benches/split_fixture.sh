# Shared by benches/callgrind.sh, h2_floor.sh, rss.sh, peak_rss.sh, link_order.sh and pair.sh;
# sourced, not run. Sourced after BASE_PORT and ROOT are set: the ports the
# scripts use, their log lines, the binary they measure, the nginx fixture.
STABLE_PORT=$((BASE_PORT + 1))
CANARY_PORT=$((BASE_PORT + 2))
PROXY_PORT=$((BASE_PORT + 11))
log() { printf '[%s %s] %s\n' "${0##*/}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# bench_work NAME [SIGNAL]: a fresh work dir ($WORK, /tmp/cutover-NAME.*),
# no processes started yet, and clean_on_exit's trap (SIGNAL stops cutover).
bench_work() {
    WORK=$(mktemp -d "/tmp/cutover-$1.XXXXXX")
    NGINX_PID=""
    CUTOVER_PID=""
    clean_on_exit "${2:-TERM}"
}

# clean_on_exit [SIGNAL]: on exit, stops cutover ($CUTOVER_PID, with SIGNAL,
# default TERM) and nginx ($NGINX_PID), and removes $WORK unless KEEP=1.
clean_on_exit() {
    CUTOVER_STOP=${1:-TERM}
    trap clean_up EXIT
    trap 'exit 130' INT TERM
}
clean_up() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n ${CUTOVER_PID:-} ]]; then kill "-$CUTOVER_STOP" "$CUTOVER_PID" 2>/dev/null || true; fi
    if [[ -n ${NGINX_PID:-} ]]; then kill -TERM "$NGINX_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}

# need TOOL...: dies naming the first tool missing.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is missing"
    done
}

# start_upstreams [WORKER_CONNECTIONS] [TENTHS]: writes the fixture into
# $WORK, starts its nginx (NGINX_PID) and waits until the stable upstream
# answers.
start_upstreams() {
    split_fixture "$WORK" "$STABLE_PORT" "$CANARY_PORT" "$PROXY_PORT" "${1:-1024}"
    nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    up "$STABLE_PORT" "${2:-600}"
}

# cutover_bin: sets BIN to $CUTOVER_BIN, else builds the release binary.
cutover_bin() {
    if [[ -n ${CUTOVER_BIN:-} ]]; then
        BIN=$CUTOVER_BIN
    else
        log "cargo build --release --bin cutover"
        (cd "$ROOT" && cargo build --release --bin cutover --quiet)
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cutover
    fi
    [[ -x $BIN ]] || die "no cutover binary at $BIN"
}

# up PORT [TENTHS]: waits until 127.0.0.1:PORT answers HTTP, at most TENTHS
# tenths of a second (default 600: valgrind starts slowly).
up() {
    local i
    for ((i = 0; i < ${2:-600}; i++)); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    die "nothing answers on 127.0.0.1:$1 (logs in $WORK)"
}

# split_fixture WORK STABLE_PORT CANARY_PORT PROXY_PORT [WORKER_CONNECTIONS]
# writes WORK/nginx/nginx.conf (one worker: a stable and a canary server
# block, `return 200`, on 127.0.0.1) and WORK/cutover.yaml (the weighted
# 90/10 rule of benches/load.sh over them).
split_fixture() {
    local work=$1 stable=$2 canary=$3 proxy=$4 conns=${5:-1024}
    mkdir -p "$work/nginx"
    nginx_answering "$work/nginx" "$conns" "" \
        "server { listen 127.0.0.1:$stable; location / { return 200 \"stable\\n\"; } }" \
        "server { listen 127.0.0.1:$canary; location / { return 200 \"canary\\n\"; } }"
    cat >"$work/cutover.yaml" <<EOF
listeners:
  - name: public
    address: "127.0.0.1:$proxy"
groups:
  stable:
    endpoints: ["127.0.0.1:$stable"]
  canary:
    endpoints: ["127.0.0.1:$canary"]
routes:
  - name: web
    rules:
      - name: split
        backends:
          - { group: stable, weight: 90 }
          - { group: canary, weight: 10 }
EOF
}

# nginx_answering DIR CONNS MAIN SERVER...: writes DIR/nginx.conf, one
# worker answering on 127.0.0.1 with the given `server` blocks, MAIN (e.g.
# "master_process off;", or "") among the main-context directives.
nginx_answering() {
    local dir=$1 conns=$2 main=$3
    shift 3
    {
        cat <<EOF
worker_processes 1;
$main
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $conns; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type text/plain;
EOF
        printf '    %s\n' "$@"
        echo "}"
    } >"$dir/nginx.conf"
}
