#!/usr/bin/env bash
# What metrics and the access log cost: one release binary run three ways side
# by side (--no-metrics; metrics on; metrics + access log to /dev/null), one
# proxy worker each, nginx as the upstream, loaded in turn by wrk in
# interleaved rounds. Prints per round the req/s and the proxy's CPU time per
# request (user+sys from /proc, which other load on the machine disturbs far
# less than throughput), then medians and ratios.
#
#   bash benches/metrics_cost.sh [rounds=7] [seconds=5] [connections=32]
#
# Needs wrk and nginx (installed with apt-get when run as root). Traffic goes
# to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-7}
SECS=${2:-5}
CONNS=${3:-32}

. benches/common.sh
need_tools wrk nginx
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/cutover

UP=18180
nginx_upstream "$UP"

start() { # name port admin_port access_log_mode extra-flags...
  local name=$1 port=$2 admin=$3 mode=$4
  shift 4
  cat > "$DIR/$name.yaml" <<EOF
listeners: [{ name: public, address: "127.0.0.1:$port" }]
groups:
  stable: { endpoints: ["127.0.0.1:$UP"] }
  canary: { endpoints: ["127.0.0.1:$UP"] }
routes:
  - name: web
    rules:
      - name: split
        backends: [{ group: stable, weight: 90 }, { group: canary, weight: 10 }]
access_log: { mode: $mode }
EOF
  RUST_LOG=warn,access_log=info "$BIN" run -c "$DIR/$name.yaml" --workers 1 --admin "127.0.0.1:$admin" "$@" \
    >/dev/null 2>"$DIR/$name.err" &
  PIDS+=($!)
  PID[$name]=$!
}
declare -A PID
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
start off 18181 19191 off --no-metrics
start metrics 18182 19192 off
start log 18183 19193 on
sleep 1
for port in 18181 18182 18183; do curl -sf "http://127.0.0.1:$port/" >/dev/null; done

declare -A RESULTS CPU
for round in $(seq "$ROUNDS"); do
  line="round $round:"
  for cfg in off:18181 metrics:18182 log:18183; do
    name=${cfg%%:*} port=${cfg##*:}
    before=$(cpu_ticks "${PID[$name]}")
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$port/")
    after=$(cpu_ticks "${PID[$name]}")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    us=$(awk -v t=$((after - before)) -v hz="$TICK" -v n="$n" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    RESULTS[$name]+="$rps "
    CPU[$name]+="$us "
    line+=" $name=${rps}req/s,${us}us"
  done
  echo "$line"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
OFF=$(echo "${RESULTS[off]}" | median)
MET=$(echo "${RESULTS[metrics]}" | median)
LOG=$(echo "${RESULTS[log]}" | median)
COFF=$(echo "${CPU[off]}" | median)
CMET=$(echo "${CPU[metrics]}" | median)
CLOG=$(echo "${CPU[log]}" | median)
echo "median req/s:         metrics off $OFF, metrics on $MET, metrics + access log $LOG"
echo "median CPU us/req:    metrics off $COFF, metrics on $CMET, metrics + access log $CLOG"
awk -v o="$OFF" -v m="$MET" -v l="$LOG" -v co="$COFF" -v cm="$CMET" -v cl="$CLOG" 'BEGIN {
  printf "metrics:               throughput %+.1f%%, CPU per request %+.1f%%\n", (m / o - 1) * 100, (cm / co - 1) * 100
  printf "access log on metrics: throughput %+.1f%%, CPU per request %+.1f%%\n", (l / m - 1) * 100, (cl / cm - 1) * 100
  printf "both:                  throughput %+.1f%%, CPU per request %+.1f%%\n", (l / o - 1) * 100, (cl / co - 1) * 100
}'
curl -s "http://127.0.0.1:19192/v1/stats" | grep -E '"group"|"p50"|"p99"' | tr -d ' \n'; echo
