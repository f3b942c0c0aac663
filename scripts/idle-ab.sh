#!/usr/bin/env bash
# Server CPU with N idle connections (CONNECT + PING, then nothing), jetcore
# against nats-server, measured from /proc over a quiet window.
# Usage: scripts/idle-ab.sh [connections=1000] [seconds=20]
set -euo pipefail
N=${1:-1000}
SECS=${2:-20}
JETCORE=${JETCORE:-target/release/jetcore}
NATS=${NATS:-$(command -v nats-server)}
measure() { # name port pid
  python3 - "$1" "$2" "$3" "$N" "$SECS" <<'PY'
import os, socket, sys, time
name, port, pid, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(4096)
    s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
    socks.append(s)
time.sleep(2)
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
c0, t0 = cpu(), time.time()
time.sleep(secs)
c1, t1 = cpu(), time.time()
print(f"{name}: {n} idle connections: {100 * (c1 - c0) / (t1 - t0):.2f}% of a core over {t1 - t0:.0f} s")
PY
}
dir=$(mktemp -d)
trap 'rm -rf "$dir"; kill $(jobs -p) 2>/dev/null || true' EXIT
ulimit -n 65536 2>/dev/null || true
"$JETCORE" -a 127.0.0.1 -p 14301 -js -sd "$dir/j" >/dev/null 2>&1 &
jp=$!
sleep 1
measure jetcore 14301 $jp
kill $jp; wait $jp 2>/dev/null || true
"$NATS" -a 127.0.0.1 -p 14302 -js -sd "$dir/n" >/dev/null 2>&1 &
np=$!
sleep 1
measure nats-server 14302 $np
