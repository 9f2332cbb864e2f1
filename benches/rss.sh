#!/usr/bin/env bash
# benches/rss.sh: cutover's resident memory (VmRSS, split into anonymous and
# file-backed pages) idle, with N idle keep-alive connections open (each
# after one proxied request), and then after they closed, until RSS is back
# within 20% of its idle value or 60 s passed (issue #11 item 7). Memory
# figures do not depend on what else the machine runs.
#
# Usage (needs nginx and python3):
#   bash benches/rss.sh                          # builds the release binary, N=1000 HTTP/1.1
#   PROTO=h2c N=200 bash benches/rss.sh          # h2c connections (prior knowledge)
#   CUTOVER_BIN=path/to/cutover bash benches/rss.sh
#   IDLE_WAIT=1 ...                              # read RSS 1 s after the connections (default 4)
# Everything stays on 127.0.0.1.

set -euo pipefail

N=${N:-1000}
# Seconds the connections stay idle before RSS is read: past cutover's 1 s
# park delay (idle HTTP/1.1 connections drop their buffers) and its next trim.
IDLE_WAIT=${IDLE_WAIT:-4}
PROTO=${PROTO:-h1}
BASE_PORT=${BASE_PORT:-27480}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/split_fixture.sh
. "$ROOT/benches/split_fixture.sh"
bench_work rss

case $PROTO in h1 | h2c) ;; *) die "PROTO must be h1 or h2c, not '$PROTO'" ;; esac
need nginx python3 curl
cutover_bin
ulimit -n $((2 * N + 1024)) 2>/dev/null || log "warning: cannot raise the open file limit for $N connections"

start_upstreams $((N + 512)) 100
"$BIN" run -c "$WORK/cutover.yaml" --workers 1 --no-admin >"$WORK/cutover.log" 2>&1 &
CUTOVER_PID=$!
up "$PROXY_PORT" 100
sleep 1

python3 - "$PROXY_PORT" "$N" "$CUTOVER_PID" "$PROTO" "$IDLE_WAIT" <<'EOF'
import socket, subprocess, sys, time

port, n, pid, proto = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
idle_wait = float(sys.argv[5])

def mem():
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                d[k] = int(v.split()[0])
    return d

def show(what, d):
    print(f"{what:<34} VmRSS {d['VmRSS'] / 1024:6.1f} MiB  (anon {d['RssAnon'] / 1024:5.1f}, "
          f"file {d['RssFile'] / 1024:5.1f})  VmHWM {d['VmHWM'] / 1024:6.1f} MiB")

if proto == "h1":
    first = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
else:
    # Preface, empty SETTINGS, then HEADERS (END_STREAM | END_HEADERS) on
    # stream 1: GET http://x/ in HPACK (static indices and one literal).
    block = bytes([0x82, 0x86, 0x84, 0x41, 0x01]) + b"x"
    first = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
             + len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block)

idle = mem()
show("idle", idle)
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(first)
    conns.append(s)
for s in conns:
    s.settimeout(10)
    if not s.recv(65536):
        sys.exit("a connection closed before its answer")
time.sleep(idle_wait)
show(f"{n} idle {proto} connections", mem())
# The burst's requests left idle upstream connections in the pool (capped
# per endpoint): part of the RSS above, a share that falls as N grows.
ss = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True).stdout
upstream = sum(1 for line in ss.splitlines() if f"pid={pid}," in line and not line.split()[2].endswith(f":{port}"))
print(f"upstream connections open: {upstream}")
for s in conns:
    s.close()
start = time.monotonic()
for _ in range(60):
    time.sleep(1)
    now = mem()
    if now["VmRSS"] <= idle["VmRSS"] * 1.2:
        break
show(f"closed, after {time.monotonic() - start:.0f} s", now)
back = "yes" if now["VmRSS"] <= idle["VmRSS"] * 1.2 else "no"
print(f"back within 20% of idle: {back}")
EOF
