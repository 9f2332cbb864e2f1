#!/usr/bin/env bash
# What a running rollout costs the request path: one release binary run
# twice side by side with the same config (a rule split stable 90 / canary 10
# with a rollout plan, nginx as both upstreams), once with no rollout
# running ("idle": the analysis counters still count, as they always do) and
# once with the rollout started ("running": the controller judges every
# 100 ms, the latency threshold is frozen, so each request also counts
# against it). Loaded in turn in interleaved rounds (the order flips every
# round), one proxy worker each. Per round it prints the req/s and each
# proxy's CPU time per request from the scheduler's per-thread run time
# (/proc/PID/task/*/schedstat, nanoseconds: far finer than the 10 ms ticks
# of /proc/PID/stat); then the medians and the paired ratio running/idle,
# against the target "a running rollout costs at most 1% CPU per request".
#
#   bash benches/rollout_cost.sh [rounds=9] [seconds=5] [connections=32]
#   REQUESTS=300 bash benches/rollout_cost.sh 2     # smoke: 300 requests per run through curl, no wrk
#   CUTOVER_BIN=target/release/cutover bash benches/rollout_cost.sh   # skip the build
#   PROXY_CPU=0 GEN_CPU=1 bash benches/rollout_cost.sh   # pin both proxies to core 0, wrk/curl to core 1
#
# Needs wrk and nginx (installed with apt-get when run as root; the smoke
# mode needs curl instead of wrk). Run it on a quiet machine, pinned, for
# figures worth reporting. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-9}
SECS=${2:-5}
CONNS=${3:-32}
REQUESTS=${REQUESTS:-}
on_cpu() { # CPU command...: runs pinned to CPU when one is given
  local cpu=$1
  shift
  if [ -n "$cpu" ]; then taskset -c "$cpu" "$@"; else "$@"; fi
}

. benches/common.sh
tools=(nginx curl)
[ -n "$REQUESTS" ] || tools+=(wrk)
need_tools "${tools[@]}"
if [ -z "${CUTOVER_BIN:-}" ]; then
  cargo build --release --quiet --bin cutover
  CUTOVER_BIN=${CARGO_TARGET_DIR:-target}/release/cutover
fi

UP=18280
nginx_upstream "$UP"

# The plan never ends during the bench: a one-hour hold keeps the first step
# from passing, a fixed latency threshold is frozen at once, and a fail
# (which a healthy nginx cannot cause) would only pause.
start() { # name port admin_port
  local name=$1 port=$2 admin=$3
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
        rollout:
          canary: canary
          steps: [10, 50]
          hold: 1h
          metrics: { errors: {}, latency: { slower_than: 50ms } }
          on_fail: pause
EOF
  # shellcheck disable=SC2086 # the optional pinning prefix splits into words
  RUST_LOG=warn ${PROXY_CPU:+taskset -c $PROXY_CPU} "$CUTOVER_BIN" run -c "$DIR/$name.yaml" --workers 1 --admin "127.0.0.1:$admin" \
    >/dev/null 2>"$DIR/$name.err" &
  PIDS+=($!)
  PID[$name]=$!
  PORT[$name]=$port
  ADMIN[$name]=$admin
}
declare -A PID PORT ADMIN
start idle 18281 19291
start running 18282 19292
for name in idle running; do
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:${PORT[$name]}/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! kill -0 "${PID[$name]}" 2>/dev/null; then
    echo "the $name proxy did not start (ports ${PORT[$name]}, ${ADMIN[$name]} in use?):" >&2
    cat "$DIR/$name.err" >&2
    exit 1
  fi
done
curl -sf -X POST "http://127.0.0.1:${ADMIN[running]}/v1/routes/web/rules/split/rollout/start" >/dev/null ||
  { echo "could not start the rollout" >&2; exit 1; }

phase() { # the rollout phase of proxy $1 (not_started, running, ...)
  curl -sf "http://127.0.0.1:${ADMIN[$1]}/v1/analysis/web/split" | sed -n 's/.*"phase": *"\([a-z_]*\)".*/\1/p'
}
cpu_ns() { # summed run time of every thread of $1, in nanoseconds
  cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'  # %d would clamp at 2^31 in mawk
}
load() { # port -> requests completed, and req/s, on stdout
  local port=$1
  if [ -n "$REQUESTS" ]; then
    local t0 t1
    t0=$(date +%s.%N)
    on_cpu "${GEN_CPU:-}" curl -sf -o /dev/null "http://127.0.0.1:$port/[1-$REQUESTS]"
    t1=$(date +%s.%N)
    awk -v n="$REQUESTS" -v a="$t0" -v b="$t1" 'BEGIN {printf "%d %.0f\n", n, n / (b - a)}'
  else
    on_cpu "${GEN_CPU:-}" wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$port/" |
      awk '/requests in/ {n = $1} /Requests\/sec/ {r = $2} END {printf "%d %.0f\n", n, r}'
  fi
}

echo "rollout phase: idle $(phase idle), running $(phase running)"
declare -A RPS CPU
RATIOS=""
for round in $(seq "$ROUNDS"); do
  order=(idle running)
  [ $((round % 2)) = 0 ] && order=(running idle)
  line="round $round:"
  declare -A this=()
  for name in "${order[@]}"; do
    before=$(cpu_ns "${PID[$name]}")
    read -r n rps < <(load "${PORT[$name]}")
    after=$(cpu_ns "${PID[$name]}")
    ns=$(awk -v d=$((after - before)) -v n="$n" 'BEGIN {printf "%.0f", d / n}')
    RPS[$name]+="$rps "
    CPU[$name]+="$ns "
    this[$name]=$ns
    line+=" $name=${rps}req/s,${ns}ns/req"
  done
  ratio=$(awk -v r="${this[running]}" -v i="${this[idle]}" 'BEGIN {printf "%.4f", r / i}')
  RATIOS+="$ratio "
  echo "$line  running/idle=$ratio"
done
still=$(phase running)
[ "$still" = running ] || echo "WARNING: the rollout is not running any more ($still); the figures are void" >&2

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
spread() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {print lo ".." hi}'; }
echo "median req/s:        idle $(echo "${RPS[idle]}" | median), running $(echo "${RPS[running]}" | median)"
echo "median CPU ns/req:   idle $(echo "${CPU[idle]}" | median), running $(echo "${CPU[running]}" | median)"
R=$(echo "$RATIOS" | median)
echo "paired running/idle: median $R (rounds: $(echo "$RATIOS" | spread))"
awk -v r="$R" 'BEGIN {
  if (!(r > 0)) { print "no CPU figure (the proxies used no measurable CPU time?)"; exit }
  printf "a running rollout costs %+.2f%% CPU per request (target: at most +1%%): %s\n",
    (r - 1) * 100, (r <= 1.01 ? "met" : "MISSED")
}'
