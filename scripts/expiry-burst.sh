#!/usr/bin/env bash
# A mass expiry under load: loads N messages (128 B) whose per-message TTLs
# all run out within about one second, TTL seconds after the load began, then
# measures publish->ack latency of a paced publisher (RATE msgs/s, window 8)
# on another stream twice: in the seconds before the expiry, and across it.
# Usage: scripts/expiry-burst.sh <jetcore|nats-server> [N=1000000] [TTL=30] [RATE=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?jetcore or nats-server}
n=${2:-1000000}
ttl=${3:-30}
rate=${4:-2000}
port=$((20000 + RANDOM % 10000))
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
case $server in
  jetcore) target/release/jetcore --jetstream -p "$port" --store_dir "$dir" ${JETCORE_ARGS:-} >"$dir.log" 2>&1 & ;;
  nats-server) nats-server -js -p "$port" -sd "$dir" >"$dir.log" 2>&1 & ;;
  *) echo "unknown server: $server" >&2; exit 2 ;;
esac
pid=$!
sleep 1
bench=target/release/jetcore-bench
t0=$(date +%s.%N)
$bench js pub -s "127.0.0.1:$port" --msgs "$n" --ttl "$ttl" --ttl-align --stream EXP exp \
  | grep "Pub stats"
loaded=$(date +%s.%N)
echo "loaded $n in $(echo "$loaded - $t0" | bc) s; they expire about $ttl s after the start"
lat() { # <label> <seconds>
  $bench js pub -s "127.0.0.1:$port" --msgs $(($2 * rate)) --rate "$rate" --window 8 \
    --stream "LAT$1" "lat.$1" | grep "Latency" | sed "s/^/$1: /"
}
# Before: 6 s that end at least 3 s before the expiry starts.
lat before 6
now=$(date +%s.%N)
wait_s=$(echo "$t0 + $ttl - 2 - $now" | bc)
if (( $(echo "$wait_s < 0" | bc) )); then
  echo "the load took too long for TTL=$ttl; use a longer TTL" >&2
  exit 1
fi
sleep "$wait_s"
# Across: from 2 s before the first expiry to 4 s after it.
lat across 6
sleep 2
python3 - "$port" <<'PY' 2>/dev/null || true
import asyncio, json, sys, nats
async def main():
    nc = await nats.connect(f"nats://127.0.0.1:{sys.argv[1]}")
    r = await nc.request("$JS.API.STREAM.INFO.EXP", b"", timeout=5)
    print("EXP after:", json.loads(r.data)["state"]["messages"], "messages")
    await nc.close()
asyncio.run(main())
PY
echo "server CPU (user+sys s): $(awk '{print ($14+$15)/100}' /proc/$pid/stat)"
