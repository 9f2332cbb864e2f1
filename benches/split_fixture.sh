# Shared by benches/callgrind.sh and benches/rss.sh; sourced, not run.
# Sourced after BASE_PORT is set: the ports both scripts use, and their log lines.
STABLE_PORT=$((BASE_PORT + 1))
CANARY_PORT=$((BASE_PORT + 2))
PROXY_PORT=$((BASE_PORT + 11))
log() { printf '[%s %s] %s\n' "${0##*/}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# split_fixture WORK STABLE_PORT CANARY_PORT PROXY_PORT [WORKER_CONNECTIONS]
# writes WORK/nginx/nginx.conf (one worker: a stable and a canary server
# block, `return 200`, on 127.0.0.1) and WORK/cutover.yaml (the weighted
# 90/10 rule of benches/load.sh over them).
split_fixture() {
    local work=$1 stable=$2 canary=$3 proxy=$4 conns=${5:-1024}
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections $conns; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    default_type text/plain;
    server { listen 127.0.0.1:$stable; location / { return 200 "stable\n"; } }
    server { listen 127.0.0.1:$canary; location / { return 200 "canary\n"; } }
}
EOF
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
