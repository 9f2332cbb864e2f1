# Shared by the side-by-side cost benches (metrics_cost.sh, rollout_cost.sh);
# sourced, not run. Traffic stays on 127.0.0.1.

# need_tools TOOL...: installs what is missing with apt-get (as root), else fails.
need_tools() {
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null; then
      [ "$(id -u)" = 0 ] || { echo "need $tool" >&2; exit 1; }
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    fi
  done
}

# A work dir and the processes started into PIDS, both gone on exit: asked
# to stop, given 5 s (a proxy drains first), then killed.
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

# nginx_upstream PORT: one nginx worker answering 200 "ok" on 127.0.0.1:PORT,
# access log off: the cheapest upstream at hand.
nginx_upstream() {
  cat > "$DIR/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $DIR/nginx.pid;
error_log $DIR/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$1; location / { return 200 "ok\n"; } }
}
CONF
  nginx -c "$DIR/nginx.conf" -p "$DIR" &
  PIDS+=($!)
}
